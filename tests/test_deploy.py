"""The manifests under deploy/ parse, keep their promises and run real commands."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from provisioner.cli.flags import build_parser, check_combinations, resolve_env
from provisioner.emulator.cli import build_parser as emulator_parser
from provisioner.files.sources import JobFiles, scan
from provisioner.observe.lastrun import RunEnd, write_textfile
from provisioner.observe.metrics import Metrics
from provisioner.queue.streams import queue_keys
from provisioner.settings import MetricsSettings
from tests.helpers import missing

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"


def documents(name: str) -> list[dict[str, Any]]:
    with (DEPLOY / name).open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def of_kind(name: str, kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in documents(name) if doc.get("kind") == kind]
    return found


def parse(argv: list[str], env: dict[str, str]) -> argparse.Namespace:
    """Parse argv as provisioner would, with ``env`` as the environment."""
    args = build_parser().parse_args(argv)
    check_combinations(args, resolve_env(args, env))
    return args


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def pod_of(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def test_every_manifest_parses_as_yaml() -> None:
    """Every YAML document under deploy/ parses with a safe loader."""
    names = sorted(p.name for p in DEPLOY.glob("*.yaml"))
    assert names == [
        "compose.yaml",
        "cronjob.yaml",
        "keda-scaledobject.yaml",
        "monitoring.yaml",
        "worker-hpa.yaml",
        "worker.yaml",
    ]
    for name in names:
        assert documents(name), name


@pytest.mark.parametrize(
    ("name", "kind"), [("cronjob.yaml", "CronJob"), ("worker.yaml", "Deployment")]
)
def test_pods_run_locked_down_with_resources(name: str, kind: str) -> None:
    """Each pod runs non-root, read-only, without capabilities, with resources and a /tmp."""
    pod = pod_of(of_kind(name, kind))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert {"requests", "limits"} <= container["resources"].keys()
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]  # noqa: S108 - a mount point, not a file
    assert tmp, "a read-only root needs a writable /tmp"


@pytest.mark.parametrize(
    ("name", "kind"), [("cronjob.yaml", "CronJob"), ("worker.yaml", "Deployment")]
)
def test_the_token_comes_from_a_secret_file(name: str, kind: str) -> None:
    """The token is a Secret mounted as a file and read with --token-file, never an env value or argv."""
    pod = pod_of(of_kind(name, kind))
    (container,) = pod["containers"]
    args = parse(container["args"], container_env(container))
    secrets = {
        v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v
    }
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    folder = str(Path(args.token_file).parent)
    assert mounts[folder] in secrets
    names = {e["name"] for e in container.get("env", [])}
    assert "QODER_PAT" not in names


@pytest.mark.parametrize(
    ("name", "kind"), [("cronjob.yaml", "CronJob"), ("worker.yaml", "Deployment")]
)
def test_termination_grace_outlasts_the_drain(name: str, kind: str) -> None:
    """The kubelet waits longer than --grace before SIGKILL, so a drain can finish."""
    pod = pod_of(of_kind(name, kind))
    (container,) = pod["containers"]
    args = parse(container["args"], container_env(container))
    assert pod["terminationGracePeriodSeconds"] > args.grace


def test_the_cronjob_never_overlaps_and_keeps_its_log_on_a_volume() -> None:
    """The scheduled run is Forbid, writes its result log to a PVC and reads jobs from a ConfigMap."""
    cronjob = of_kind("cronjob.yaml", "CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    pod = pod_of(cronjob)
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    args = parse(container["args"], container_env(container))
    assert args.command == "run"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claim = volumes[mounts[str(Path(args.results).parent)]]["persistentVolumeClaim"]
    assert (
        claim["claimName"]
        == of_kind("cronjob.yaml", "PersistentVolumeClaim")["metadata"]["name"]
    )
    jobs_volume = volumes[mounts[str(Path(args.jobs[0]).parent)]]
    assert (
        jobs_volume["configMap"]["name"]
        == of_kind("cronjob.yaml", "ConfigMap")["metadata"]["name"]
    )
    # A usage error or failed specs wait for the next schedule; retrying at once cannot help.
    (fail,) = [r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    assert sorted(fail["onExitCodes"]["values"]) == [1, 2]


def test_the_cronjob_job_files_validate(tmp_path: Path) -> None:
    """Every job file of the CronJob's ConfigMap is valid, as `provisioner validate` sees it."""
    data = of_kind("cronjob.yaml", "ConfigMap")["data"]
    for filename, text in data.items():
        path = tmp_path / filename
        path.write_text(text)
        with JobFiles([str(path)]) as files:
            report = scan(files)
        assert report.errors == [], filename
        assert report.total > 0


def test_the_worker_deployment_has_probes_on_its_metrics_port() -> None:
    """Liveness asks /healthz and readiness /readyz on the port --metrics-port serves."""
    (container,) = pod_of(of_kind("worker.yaml", "Deployment"))["containers"]
    assert parse(container["args"], container_env(container)).command == "worker"
    assert "--metrics-port=9100" in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "metrics",
    }
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "metrics",
    }
    assert ports["metrics"] == 9100


def compose() -> dict[str, Any]:
    (doc,) = documents("compose.yaml")
    return doc


def test_compose_has_redis_the_emulator_an_enqueue_and_workers() -> None:
    """The compose file runs Redis, the emulator, a one-shot enqueue and several workers with real commands."""
    services = compose()["services"]
    assert {"redis", "emulator", "enqueue", "worker"} <= services.keys()
    emulator = emulator_parser().parse_args(services["emulator"]["command"][1:])
    assert emulator.host == "0.0.0.0"  # noqa: S104 - reachable by the workers
    enqueue = parse(services["enqueue"]["command"], {})
    worker = parse(services["worker"]["command"], {})
    assert (enqueue.command, worker.command) == ("enqueue", "worker")
    assert enqueue.stream == worker.stream
    for job in enqueue.jobs:
        assert (ROOT / job).exists(), job
    assert worker.api_url == f"http://emulator:{emulator.port}"
    assert services["worker"]["deploy"]["replicas"] > 1
    for name in ("redis", "emulator", "worker"):
        assert "healthcheck" in services[name], name


def test_compose_workers_get_longer_than_grace_to_stop() -> None:
    """`docker compose stop` waits longer than the workers' --grace before SIGKILL."""
    worker = compose()["services"]["worker"]
    grace = parse(worker["command"], {}).grace
    assert int(worker["stop_grace_period"].removesuffix("s")) > grace


def _compose_tool() -> list[str] | None:
    for tool in (["docker", "compose"], ["podman-compose"]):
        if shutil.which(tool[0]) is None:
            continue
        probe = subprocess.run(  # noqa: PLW1510 - the exit code is the answer
            [*tool, "version"], capture_output=True, timeout=30
        )
        if probe.returncode == 0:
            return tool
    return None


def test_compose_services_start(tmp_path: Path) -> None:
    """Where a compose tool works, `compose up` starts Redis, the emulator and the workers."""
    tool = _compose_tool()
    if tool is None:
        pytest.skip(
            "no working `docker compose` or `podman-compose` here "
            "(and `podman run` does not work on this machine)"
        )
    token = DEPLOY / "qoder_pat.txt"
    created = not token.exists()
    if created:
        token.write_text("pt-compose-try")
    base = [
        *tool,
        "-f",
        str(DEPLOY / "compose.yaml"),
        "-p",
        f"prov-test-{tmp_path.name}",
    ]
    try:
        up = subprocess.run(  # noqa: PLW1510 - asserted below
            [*base, "up", "--build", "--wait", "-d"], capture_output=True, timeout=600
        )
        assert up.returncode == 0, up.stderr.decode()[-2000:]
        ps = subprocess.run(
            [*base, "ps", "--services", "--status", "running"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert {"redis", "emulator", "worker"} <= set(ps.stdout.split())
    finally:
        subprocess.run([*base, "down", "-v"], capture_output=True, timeout=300)  # noqa: PLW1510 - best-effort cleanup
        if created:
            token.unlink()


# Autoscaling: deploy/keda-scaledobject.yaml (KEDA) and deploy/worker-hpa.yaml (an HPA).

KEDA = "keda-scaledobject.yaml"
HPA = "worker-hpa.yaml"


def worker() -> tuple[dict[str, Any], dict[str, Any], argparse.Namespace]:
    """worker.yaml's Deployment, its pod and the worker's parsed command line."""
    deployment = of_kind("worker.yaml", "Deployment")
    pod = pod_of(deployment)
    (container,) = pod["containers"]
    return deployment, pod, parse(container["args"], container_env(container))


def triggers() -> dict[str, dict[str, Any]]:
    """The ScaledObject's triggers by name."""
    spec = of_kind(KEDA, "ScaledObject")["spec"]
    return {t["name"]: t for t in spec["triggers"]}


def test_keda_scales_the_worker_deployment_on_its_real_stream_and_group() -> None:
    """The ScaledObject targets worker.yaml's Deployment and reads the key provisioner writes, in the workers' group."""
    deployment, _, args = worker()
    scaled = of_kind(KEDA, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert target == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    found = triggers()
    assert set(found) == {"specs-waiting", "specs-in-flight"}
    for trigger in found.values():
        assert trigger["type"] == "redis-streams"
        meta = trigger["metadata"]
        assert meta["stream"] == queue_keys(args.stream)["specs"]
        assert meta["stream"] == "provisioner:{onboarding}:specs"
        assert meta["consumerGroup"] == args.group
        # KEDA's trigger metadata is a map of strings: a bare number fails the CRD.
        assert all(isinstance(v, str) for v in meta.values()), meta


def test_keda_wakes_on_the_lag_and_keeps_the_workers_in_flight() -> None:
    """The lag trigger uses lagCount (one waiting spec wakes the pool); pending entries keep busy workers."""
    _, _, args = worker()
    found = triggers()
    waiting = found["specs-waiting"]["metadata"]
    assert "lagCount" in waiting
    assert "pendingEntriesCount" not in waiting  # KEDA would read the lag, not this
    assert int(waiting["lagCount"]) > 0
    assert waiting["activationLagCount"] == "0"
    in_flight = found["specs-in-flight"]["metadata"]
    assert "lagCount" not in in_flight
    assert int(in_flight["pendingEntriesCount"]) == args.concurrency


def test_keda_reads_the_redis_the_workers_use() -> None:
    """Address, database and TLS are worker.yaml's REDIS_URL; the password is the Secret the workers mount."""
    _, pod, args = worker()
    url = urlsplit(args.redis)
    assert url.scheme in {"redis", "rediss"}
    database = url.path.strip("/") or "0"
    secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    password_file = Path(args.redis_password_file)
    secret = secrets[mounts[str(password_file.parent)]]
    items = {i["path"]: i["key"] for i in secret.get("items", [])}
    key = items.get(password_file.name, password_file.name)
    auth = of_kind(KEDA, "TriggerAuthentication")
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": secret["secretName"], "key": key}
    ]
    for trigger in triggers().values():
        meta = trigger["metadata"]
        assert meta["address"] == f"{url.hostname}:{url.port or 6379}"
        assert meta["databaseIndex"] == database
        assert meta["enableTLS"] == str(url.scheme == "rediss").lower()
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        assert "password" not in meta
        assert "passwordFromEnv" not in meta


def test_keda_scales_to_zero_and_gives_each_worker_its_drain() -> None:
    """minReplicaCount 0; the last worker and each scaled-down one get longer than the kubelet's grace."""
    deployment, pod, args = worker()
    spec = of_kind(KEDA, "ScaledObject")["spec"]
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] >= deployment["spec"]["replicas"]
    assert 0 < spec["pollingInterval"] <= 60
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > args.grace
    assert spec["cooldownPeriod"] > grace
    assert spec["fallback"]["replicas"] >= 1
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"][
        "scaleDown"
    ]
    assert scale_down["stabilizationWindowSeconds"] > grace
    (policy,) = scale_down["policies"]
    assert policy["type"] == "Pods"
    assert policy["periodSeconds"] >= grace


def exported_series() -> set[str]:
    """The metric names a worker's /metrics really serves (queue gauges included)."""
    metrics = Metrics()
    metrics.show_queue(SimpleNamespace(length=5, pending=2, dead_letters=0))
    text = metrics.render().decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_the_hpa_scales_the_worker_deployment_on_series_provisioner_exports() -> None:
    """The HPA alternative targets the Deployment on external metrics that are real series, as KEDA would."""
    deployment, _, args = worker()
    hpa = of_kind(HPA, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert spec["minReplicas"] >= 1  # an HPA does not scale to zero
    keda = of_kind(KEDA, "ScaledObject")["spec"]
    assert spec["maxReplicas"] == keda["maxReplicaCount"]
    targets = {
        m["external"]["metric"]["name"]: m["external"]["target"]
        for m in spec["metrics"]
        if m["type"] == "External"
    }
    assert set(targets) == {
        "provisioner_queue_lag_messages",
        "provisioner_queue_pending_messages",
    }
    assert set(targets) <= exported_series()
    found = triggers()
    lag = targets["provisioner_queue_lag_messages"]
    assert lag == {
        "type": "AverageValue",
        "averageValue": found["specs-waiting"]["metadata"]["lagCount"],
    }
    pending = targets["provisioner_queue_pending_messages"]
    assert pending["averageValue"] == str(args.concurrency)
    grace = pod_of(deployment)["terminationGracePeriodSeconds"]
    assert spec["behavior"]["scaleDown"]["policies"][0]["periodSeconds"] >= grace


# Scraping: deploy/monitoring.yaml (a Service and a PodMonitor) and the CronJob's push.

MONITORING = "monitoring.yaml"


def test_the_podmonitor_scrapes_the_workers_metrics_port() -> None:
    """The PodMonitor selects worker.yaml's pods and scrapes /metrics on the port --metrics-port serves."""
    deployment, pod, _ = worker()
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    monitor = of_kind(MONITORING, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in ports
    assert f"--metrics-port={ports[endpoint['port']]}" in container["args"]
    timeout = float(endpoint["scrapeTimeout"].removesuffix("s"))
    assert timeout < float(endpoint["interval"].removesuffix("s"))
    assert timeout > MetricsSettings(port=0).probe_timeout_s


def test_the_metrics_service_selects_the_workers_and_their_metrics_port() -> None:
    """The headless Service selects exactly the worker pods and targets their named metrics port."""
    deployment, pod, _ = worker()
    (container,) = pod["containers"]
    names = {p["name"] for p in container["ports"]}
    service = of_kind(MONITORING, "Service")
    assert service["spec"]["clusterIP"] == "None"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == pod_labels
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in names
    assert port["port"] == 9100


def test_the_cronjob_pushes_each_run_to_a_pushgateway_without_a_secret() -> None:
    """The CronJob's run pushes its series by PROVISIONER_PUSHGATEWAY: an http(s) URL with no credentials."""
    (container,) = pod_of(of_kind("cronjob.yaml", "CronJob"))["containers"]
    args = parse(container["args"], container_env(container))
    url = urlsplit(args.pushgateway)
    assert url.scheme in {"http", "https"}
    assert url.username is None
    assert url.password is None
    assert args.pushgateway_job == "provisioner-run"


def test_the_podmonitor_series_include_the_histogram_process_and_build_info() -> None:
    """What the dashboards and alerts of the manual query is served: histogram, process series, build_info."""
    served = exported_series()
    assert {
        "provisioner_request_duration_seconds",
        "provisioner_requests_total",
        "provisioner_request_errors_total",
        "provisioner_records_total",
        "provisioner_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_info",
    } <= served


def _kubernetes_validate() -> tuple[str, Any] | None:
    """kubernetes-validate as a module, else as a CLI on PATH, else None."""
    if importlib.util.find_spec("kubernetes_validate") is not None:
        return "module", importlib.import_module("kubernetes_validate")
    tool = shutil.which("kubernetes-validate")
    return ("cli", tool) if tool else None


def left_series(tmp_path: Path) -> set[str]:
    """The metric names a run's --metrics-textfile really holds (histogram samples by suffix)."""
    path = tmp_path / "run.prom"
    metrics = Metrics()
    metrics.request_started()
    metrics.request_ended("create", 201, 0.1)
    write_textfile(str(path), metrics, RunEnd(started_s=1.0, ended_s=2.0, exit_code=0))
    return {
        sample.name
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


def test_the_alerts_query_series_provisioner_exports(tmp_path: Path) -> None:
    """Every series the PrometheusRule's alerts name is one a worker serves or a run pushes, under the CronJob's job."""
    rule = of_kind(MONITORING, "PrometheusRule")
    assert (
        rule["metadata"]["labels"]["release"]
        == (of_kind(MONITORING, "PodMonitor")["metadata"]["labels"]["release"])
    )
    served = exported_series() | {
        f"{name}{suffix}"
        for name in exported_series()
        for suffix in ("_bucket", "_count", "_sum")
    }
    known = served | left_series(tmp_path)
    (container,) = pod_of(of_kind("cronjob.yaml", "CronJob"))["containers"]
    job = parse(container["args"], container_env(container)).pushgateway_job
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(rules) >= 5
    for found in rules:
        expr = found["expr"]
        assert expr.count("(") == expr.count(")"), found["alert"]
        names = set(re.findall(r"\bprovisioner_\w+", expr))
        assert names, found["alert"]
        assert names <= known, (found["alert"], names - known)
        if "provisioner_run_" in expr:
            assert f'job="{job}"' in expr
        assert found["labels"]["severity"] in {"warning", "critical"}
        assert found["annotations"]["summary"]


#: API groups of custom resources (KEDA, the Prometheus Operator): not in Kubernetes' schemas.
CUSTOM_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


def test_the_custom_resources_have_the_fields_their_crds_require() -> None:
    """KEDA's and the Prometheus Operator's documents name their kind, a name and a spec."""
    custom = [
        doc
        for path in sorted(DEPLOY.glob("*.yaml"))
        if path.name != "compose.yaml"
        for doc in documents(path.name)
        if doc["apiVersion"].startswith(CUSTOM_GROUPS)
    ]
    assert {doc["kind"] for doc in custom} == {
        "ScaledObject",
        "TriggerAuthentication",
        "PodMonitor",
        "PrometheusRule",
    }
    for doc in custom:
        assert doc["metadata"]["name"]
        assert isinstance(doc["spec"], dict)


def test_the_core_manifests_validate_strictly(tmp_path: Path) -> None:
    """Where kubernetes-validate is installed, every core-kind document of deploy/ passes --strict.

    Its schemas are Kubernetes' own: KEDA's ScaledObject and TriggerAuthentication and
    the Prometheus Operator's PodMonitor (CRDs) are left out, and so is compose.yaml
    (not a Kubernetes manifest).
    """
    found = _kubernetes_validate()
    if found is None:
        missing(
            "kubernetes-validate is neither importable nor on PATH "
            "(a dev dependency: make install)"
        )
    how, tool = found
    core = [
        (path.name, doc)
        for path in sorted(DEPLOY.glob("*.yaml"))
        if path.name != "compose.yaml"
        for doc in documents(path.name)
        if not doc["apiVersion"].startswith(CUSTOM_GROUPS)
    ]
    kinds = {doc["kind"] for _, doc in core}
    assert {"Deployment", "CronJob", "HorizontalPodAutoscaler", "Service"} <= kinds
    for at, (name, doc) in enumerate(core):
        label = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
        if how == "module":
            tool.validate(doc, tool.latest_version(), strict=True)
            continue
        single = tmp_path / f"{at}.yaml"
        single.write_text(yaml.safe_dump(doc))
        checked = subprocess.run(  # noqa: PLW1510 - asserted below
            [tool, "--strict", "--quiet", str(single)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert checked.returncode == 0, f"{label}: {checked.stdout}{checked.stderr}"
