# One-shot container runs of provisioner:
#   podman build -t provisioner .   (or docker build)
#   ... run -e QODER_PAT -v "$PWD/jobs:/work/jobs" provisioner run jobs/teams.jsonl
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# Pinned runtime dependencies first, so code changes reuse this layer.
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -r /tmp/requirements.lock

COPY pyproject.toml README.md /src/
COPY provisioner /src/provisioner
RUN /opt/venv/bin/pip install --no-deps /src \
 && rm -rf /src /tmp/requirements.lock

COPY jobs /work/jobs
RUN useradd --create-home --uid 10001 app && chown app /work
USER app
WORKDIR /work

ENTRYPOINT ["provisioner"]
CMD ["--help"]
