# provisioner in a container: a one-shot run, or a long-running queue worker.
#   docker build -t provisioner .        (or podman build; docker/smoke.sh builds and checks it)
#   docker run --rm -e QODER_PAT -v "$PWD/myjobs:/work/myjobs" provisioner run myjobs/onboarding.jsonl
#   docker run --rm provisioner run jobs/demo-onboarding.jsonl --sandbox --results -
#   docker run -d -e QODER_PAT -e REDIS_URL=redis://redis:6379/0 provisioner worker --stream onboarding
# A worker drains on SIGTERM (docker stop): give it longer than --grace (docker stop -t 60).
#
# The base is the Python the project is developed and measured on (3.11). Pin it by digest
# for a build you can repeat (docs/operations.md, "Supply chain"):
#   docker pull python:3.11-slim
#   docker image inspect --format '{{index .RepoDigests 0}}' python:3.11-slim
#   docker build --build-arg BASE=python:3.11-slim@sha256:... -t provisioner .
# The labels take the commit and its time from the build (docker/smoke.sh passes them):
#   --build-arg REVISION="$(git rev-parse HEAD)" --build-arg CREATED="$(git log -1 --format=%cI)"
ARG BASE=python:3.11-slim

# Stage 1: the wheel, built offline by the hash-locked build backend (requirements-build.lock),
# so no unpinned build tool is fetched and none ships in the image.
FROM ${BASE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements-build.lock /tmp/requirements-build.lock
RUN python -m venv /build \
 && /build/bin/pip install --require-hashes -r /tmp/requirements-build.lock
COPY pyproject.toml README.md LICENSE /src/
COPY provisioner /src/provisioner
RUN /build/bin/pip wheel --no-deps --no-build-isolation --no-index --wheel-dir /dist /src

# Stage 2: the runtime image.
FROM ${BASE}
ARG BASE
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="provisioner" \
      org.opencontainers.image.description="Create Qoder Cloud Agents Environments in bulk: validated, rate-limited, retried, never twice." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${BASE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# The runtime user first: this layer never changes.
RUN useradd --create-home --uid 10001 --user-group app

# The venv holds no pip or setuptools: the base image's pip installs into it
# (`pip --python`), so no installer or build tool ships in the venv.
# Pinned runtime dependencies first, each file checked against the lock's hashes,
# so code changes reuse this layer.
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --require-hashes -r /tmp/requirements.lock \
 && rm /tmp/requirements.lock

# The package itself, the wheel of stage 1, without dependencies (all in the lock above).
COPY --from=wheel /dist /tmp/dist
RUN pip --python /opt/venv/bin/python install --no-deps --no-index /tmp/dist/provisioner-*.whl \
 && pip --python /opt/venv/bin/python check \
 && rm -rf /tmp/dist

WORKDIR /work
COPY jobs /work/jobs
RUN chown app:app /work
USER app

ENTRYPOINT ["provisioner"]
CMD ["--help"]
