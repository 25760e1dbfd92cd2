# syntax=docker/dockerfile:1
# vigil's daemon image: `docker build -t vigil .`, then `docker run vigil` runs
# `vigil daemon run` (see deploy/compose.yaml for PostgreSQL and Prometheus around it).
# Pipelines: build your own image FROM this one and `pip install` your code locations.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: vigil and every dependency as wheels, versions pinned by constraints.txt -----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY vigil ./vigil
RUN pip wheel --wheel-dir /wheels --constraint constraints.txt .

# --- runtime: a venv with those wheels, no compiler, no sources, not root ---------------
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/vigil/bin:$PATH \
    VIGIL_HOME=/var/lib/vigil \
    VIGIL_HTTP__HOST=0.0.0.0
# tini is PID 1: it forwards SIGTERM/SIGINT/SIGHUP to vigil and reaps orphans. The daemon's
# tree has orphans by design (a step process whose worker died is re-parented to PID 1), and
# vigil cannot reap them itself: a waitpid(-1) reaper would steal the exit statuses the
# launcher waits for on its own workers. Bundled rather than `docker run --init`, which
# every runtime (compose, Kubernetes) would have to remember.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 vigil \
    && useradd --system --uid 10001 --gid vigil --home-dir /var/lib/vigil \
        --shell /usr/sbin/nologin vigil \
    && install --directory --owner vigil --group vigil --mode 0750 /var/lib/vigil
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/vigil \
    && /opt/vigil/bin/pip install --no-index --find-links /wheels vigil

# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /var/lib/vigil
# The instance: vigil.yaml, the SQLite store (when not PostgreSQL), logs, step outputs.
VOLUME ["/var/lib/vigil"]
# /metrics, /healthz, /readyz (VIGIL_HTTP__HOST=0.0.0.0 above: reachable from the
# container network; publish it with -p 127.0.0.1:9464:9464 or keep it internal).
EXPOSE 9464
# SIGTERM starts the daemon's shutdown (drain within shutdown_grace, 30 s by default):
# give it `docker stop --time 45` / `stop_grace_period: 45s`, more than the grace.
STOPSIGNAL SIGTERM
# One GET of the daemon's own /healthz (liveness: no loop hung), by a stdlib-only module:
# not the full CLI, which cost about 1 s of CPU and 70 MB every 30 s. It reads the port from
# VIGIL_HTTP__PORT (default 9464): set it there, not only in vigil.yaml, to move the port.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "vigil.healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "vigil"]
CMD ["daemon", "run"]
