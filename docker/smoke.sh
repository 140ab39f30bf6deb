#!/usr/bin/env bash
# Builds the provisioner image and runs real jobs in it:
#   1. the image builds, on the base pinned by digest, with its OCI labels and Python 3.11;
#   2. --help / --version as the non-root user `app`;
#   3. a bulk run against the CLI's embedded emulator (--sandbox);
#   4. a bulk run against an emulator on the host (token given as QODER_PAT);
#   5. queue mode: enqueue + a worker (--exit-when-empty) against the host's Redis;
#   6. the image's size.
# Usage: docker/smoke.sh            (from anywhere; builds from the repo root)
# Env:   IMAGE (default provisioner), SMOKE_TOKEN (default pt-smoke-token),
#        HOST_PROVISIONER (default .venv/bin/provisioner: runs the host emulator),
#        BASE (default: the local python:3.11-slim, by its digest).
# Needs podman + buildah and a local python:3.11-slim: on a machine without a registry,
# ../shared/tools/python-base-image makes a stand-in. `podman run` does not work on such a
# machine, so commands run in a buildah working container (`buildah run --isolation
# chroot`, which shares the host network, so the host emulator on loopback is reachable).
# buildah run does not apply ENTRYPOINT, so the commands name `provisioner`; the image's
# ENTRYPOINT and USER are checked with `podman image inspect` instead.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-provisioner}
TOKEN=${SMOKE_TOKEN:-pt-smoke-token}
HOST_PROVISIONER=${HOST_PROVISIONER:-.venv/bin/provisioner}

tmp=$(mktemp -d)
ctr=""
emulator_pid=""
cleanup() {
  if [[ -n $ctr ]]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi
  if [[ -n $emulator_pid ]]; then
    kill "$emulator_pid" 2>/dev/null || true
    wait "$emulator_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'SMOKE FAILED: %s\n' "$*" >&2; exit 1; }
in_ctr() { buildah run --isolation chroot --user app "$ctr" -- "$@"; }

step "1. build"
# The base by digest, as a repeatable build should name it (docs/operations.md, "Supply chain").
if [[ -z ${BASE:-} ]]; then
  BASE=$(podman image inspect --format '{{index .RepoDigests 0}}' python:3.11-slim 2>/dev/null) \
    || fail "no local python:3.11-slim (see ../shared/tools/python-base-image)"
  BASE=python:3.11-slim@${BASE#*@}
fi
echo "base: $BASE"
build_args=(--build-arg "BASE=$BASE")
if git rev-parse --git-dir >/dev/null 2>&1; then
  build_args+=(--build-arg "REVISION=$(git rev-parse HEAD)" \
    --build-arg "CREATED=$(git log -1 --format=%cI)")
  if source_url=$(git remote get-url origin 2>/dev/null); then
    build_args+=(--build-arg "SOURCE=$source_url")
  fi
fi
old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
podman build --isolation chroot --pull=never "${build_args[@]}" -t "$IMAGE" . >"$tmp/build.log" 2>&1 \
  || { tail -30 "$tmp/build.log" >&2; fail "podman build"; }
grep -q -- '--require-hashes' "$tmp/build.log" || fail "the build log shows no --require-hashes install"
new_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
echo "built $IMAGE (${new_id:0:12})"
# The image this build replaced is now untagged: remove it unless something still uses it.
if [[ -n $old_id && $old_id != "$new_id" ]]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi

entrypoint=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$IMAGE")
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[[ $entrypoint == '["provisioner"]' ]] || fail "ENTRYPOINT is $entrypoint"
[[ $user == app ]] || fail "USER is '$user'"
echo "ENTRYPOINT $entrypoint, USER $user"
label() { podman image inspect --format "{{index .Labels \"org.opencontainers.image.$1\"}}" "$IMAGE"; }
project_version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
[[ $(label title) == provisioner ]] || fail "label title is '$(label title)'"
[[ $(label version) == "$project_version" ]] || fail "label version '$(label version)' is not pyproject's $project_version"
[[ $(label licenses) == MIT ]] || fail "label licenses is '$(label licenses)'"
[[ $(label base.name) == "$BASE" ]] || fail "label base.name is '$(label base.name)'"
if git rev-parse --git-dir >/dev/null 2>&1; then
  [[ $(label revision) == "$(git rev-parse HEAD)" ]] || fail "label revision is '$(label revision)'"
  [[ -n $(label created) ]] || fail "label created is empty"
fi
echo "labels: version $(label version), licenses $(label licenses), revision $(label revision | cut -c1-12), created $(label created)"

ctr=$(buildah from --pull-never --name "provisioner-smoke-$$" "$IMAGE")

step "2. --help and --version as a non-root user"
uid=$(in_ctr id -u)
[[ $uid != 0 ]] || fail "the container runs as root"
echo "uid: $uid ($(in_ctr id -un))"
in_ctr provisioner --help >"$tmp/help.txt"
for command in run validate enqueue worker queue-status emulator; do
  grep -qE "^ +$command( |$)" "$tmp/help.txt" || fail "--help lists no '$command'"
done
head -1 "$tmp/help.txt"
version=$(in_ctr provisioner --version)
[[ $version =~ ^provisioner\ [0-9] ]] || fail "--version printed '$version'"
echo "$version"
python_version=$(in_ctr python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ $python_version == 3.11 ]] || fail "the image runs Python $python_version, not 3.11"
in_ctr /opt/venv/bin/python -c 'import importlib.util as u, sys; sys.exit(u.find_spec("pip") is not None)' \
  || fail "the image's venv holds pip"
echo "Python $python_version, no pip in the venv"

check_results() {  # FILE EXPECTED_LINES: every line a JSON result with status "created"
  python3 - "$1" "$2" <<'PY'
import json, sys
path, expected = sys.argv[1], int(sys.argv[2])
lines = [line for line in open(path, encoding="utf-8") if line.strip()]
statuses = [json.loads(line)["status"] for line in lines]
bad = [s for s in statuses if s != "created"]
if len(lines) != expected or bad:
    sys.exit(f"{path}: {len(lines)} lines (expected {expected}), statuses not created: {bad[:5]}")
print(f"{len(lines)} JSON result lines, all status \"created\"")
PY
}

step "3. bulk run against the embedded emulator (--sandbox)"
rc=0
in_ctr provisioner run jobs/demo-onboarding.jsonl --sandbox --results - \
  >"$tmp/sandbox.jsonl" 2>"$tmp/sandbox.err" || rc=$?
[[ $rc == 0 ]] || { cat "$tmp/sandbox.err" >&2; fail "sandbox run exited $rc"; }
check_results "$tmp/sandbox.jsonl" 40
grep '^provisioner:' "$tmp/sandbox.err" || true

step "4. bulk run against an emulator on the host"
[[ -x $HOST_PROVISIONER ]] || fail "$HOST_PROVISIONER not found (make a venv: see README)"
# The emulator takes its token from QODER_PAT, so it shows on no command line (ps).
QODER_PAT=$TOKEN "$HOST_PROVISIONER" emulator --port 0 >"$tmp/emulator.out" 2>"$tmp/emulator.err" &
emulator_pid=$!
url=""
for _ in $(seq 100); do
  url=$(awk '/listening on/ {print $NF; exit}' "$tmp/emulator.out")
  [[ -n $url ]] && break
  kill -0 "$emulator_pid" 2>/dev/null || { cat "$tmp/emulator.err" >&2; fail "host emulator exited"; }
  sleep 0.1
done
[[ -n $url ]] || fail "host emulator printed no URL"
echo "host emulator: $url"
# buildah 1.28 drops `--env NAME` (no value) instead of passing the caller's value, and
# `--env NAME=VALUE` puts the token on buildah's command line; so the token goes in on
# stdin and the shell in the container exports it as QODER_PAT for provisioner.
run_with_token() {  # TOKEN URL RESULTS [SUMMARY]
  local token=$1; shift
  in_ctr sh -c 'IFS= read -r QODER_PAT && export QODER_PAT && url=$1 && shift \
    && exec provisioner run jobs/platform-teams.json --api-url "$url" "$@"' sh "$@" <<<"$token"
}
rc=0
run_with_token "$TOKEN" "$url" --results /tmp/r.jsonl --summary /tmp/s.json \
  2>"$tmp/host.err" || rc=$?
grep '^provisioner:' "$tmp/host.err" || true
[[ $rc == 0 ]] || { cat "$tmp/host.err" >&2; fail "host-emulator run exited $rc"; }
in_ctr cat /tmp/r.jsonl >"$tmp/host.jsonl"
in_ctr cat /tmp/s.json >"$tmp/host-summary.json"
check_results "$tmp/host.jsonl" 10
python3 - "$tmp/host-summary.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1], encoding="utf-8"))
counts = summary["counts"]
if counts["created"] != summary["total"] or counts["failed"] or counts["invalid"]:
    sys.exit(f"summary: {summary}")
print(f"summary: {counts['created']}/{summary['total']} created, {summary['requests']} requests")
PY
if grep -qF "$TOKEN" "$tmp/host.jsonl" "$tmp/host-summary.json" "$tmp/host.err"; then
  fail "the token appears in the results, the summary or the log"
fi
# A wrong token must fail: so the run above passed because the token reached provisioner.
rc=0
run_with_token "wrong-$TOKEN" "$url" --results /tmp/r-wrong.jsonl 2>"$tmp/wrong.err" || rc=$?
[[ $rc != 0 ]] || fail "a run with a wrong token exited 0"
echo "wrong token: exit $rc ($(grep -o 'authentication failed (HTTP [0-9]*)' "$tmp/wrong.err" | head -1))"

step "5. queue mode: enqueue and a worker against the host's Redis and emulator"
REDIS_URL=${SMOKE_REDIS_URL:-redis://127.0.0.1:6379/0}
stream="smoke-$$"
in_ctr provisioner enqueue jobs/platform-teams.json --redis "$REDIS_URL" --stream "$stream" \
  || fail "enqueue exited non-zero"
worker_in_ctr() {  # TOKEN, then worker flags
  local token=$1; shift
  in_ctr sh -c 'IFS= read -r QODER_PAT && export QODER_PAT && exec provisioner worker "$@"' \
    sh "$@" <<<"$token"
}
rc=0
worker_in_ctr "$TOKEN" --redis "$REDIS_URL" --stream "$stream" --api-url "$url" \
  --exit-when-empty --results /tmp/w.jsonl --on-conflict exists 2>"$tmp/worker.err" || rc=$?
grep 'worker .*specs:' "$tmp/worker.err" || true
[[ $rc == 0 ]] || { cat "$tmp/worker.err" >&2; fail "worker exited $rc"; }
in_ctr provisioner queue-status --redis "$REDIS_URL" --stream "$stream" --format json >"$tmp/status.json"
python3 - "$tmp/status.json" <<'PY'
import json, sys
status = json.load(open(sys.argv[1], encoding="utf-8"))
if status["length"] or status["pending"] or status["results"] != 10 or status["dead_letters"]:
    sys.exit(f"queue not drained as expected: {status}")
print(f"queue drained: {status['results']} results, nothing pending")
PY
redis-cli -u "$REDIS_URL" DEL "provisioner:{$stream}:specs" "provisioner:{$stream}:results" \
  "provisioner:{$stream}:outcomes" "provisioner:{$stream}:dead" "provisioner:{$stream}:rate" >/dev/null

step "6. image size"
podman images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "$IMAGE"

printf '\nsmoke: all checks passed\n'
