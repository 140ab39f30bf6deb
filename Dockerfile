# provisioner in a container: a one-shot run, or a long-running queue worker.
#   docker build -t provisioner .        (or podman build; docker/smoke.sh builds and checks it)
#   docker run --rm -e QODER_PAT -v "$PWD/myjobs:/work/myjobs" provisioner run myjobs/onboarding.jsonl
#   docker run --rm provisioner run jobs/demo-onboarding.jsonl --sandbox --results -
#   docker run -d -e QODER_PAT -e REDIS_URL=redis://redis:6379/0 provisioner worker --stream onboarding
# A worker drains on SIGTERM (docker stop): give it longer than --grace (docker stop -t 60).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# The runtime user first: this layer never changes.
RUN useradd --create-home --uid 10001 --user-group app

# The venv holds no pip or setuptools: the base image's pip installs into it
# (`pip --python`), so no installer or build tool ships in the venv.
# Pinned runtime dependencies first, so code changes reuse this layer.
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install -r /tmp/requirements.lock \
 && rm /tmp/requirements.lock

# The package itself, without dependencies (they are all in the lock above);
# its build backend lives only in pip's throwaway build environment.
COPY pyproject.toml README.md /src/
COPY provisioner /src/provisioner
RUN pip --python /opt/venv/bin/python install --no-deps /src \
 && pip --python /opt/venv/bin/python check \
 && rm -rf /src

WORKDIR /work
COPY jobs /work/jobs
RUN chown app:app /work
USER app

ENTRYPOINT ["provisioner"]
CMD ["--help"]
