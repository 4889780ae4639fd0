# syntax=docker/dockerfile:1
# queue-service: `docker build -t queue-service .` (docs/deployment.md).
# Two stages: the build stage installs the project and its locked
# dependencies into a virtual environment; the runtime stage copies only that
# environment and runs it as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/queue-service
# Dependencies first (their layer is reused while only the code changes),
# pinned by the same lock file the tests run with.
COPY requirements.lock pyproject.toml README.md ./
COPY src ./src
RUN /opt/queue-service/bin/pip install -c requirements.lock .

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/queue-service/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    QUEUE_SERVICE_ENV=production \
    QUEUE_SERVICE_HOST=0.0.0.0 \
    QUEUE_SERVICE_PORT=8080 \
    QUEUE_SERVICE_DATA_DIR=/var/lib/queue-service
RUN groupadd --system --gid 10001 queue \
    && useradd --system --uid 10001 --gid queue --home-dir /var/lib/queue-service \
       --shell /usr/sbin/nologin queue \
    && install -d -o queue -g queue -m 0750 /var/lib/queue-service
COPY --from=build /opt/queue-service /opt/queue-service
USER queue:queue
WORKDIR /var/lib/queue-service
EXPOSE 8080
# Liveness only: the process answers. Readiness (database, providers) is
# /health/ready, for the orchestrator's routing, not for restarts.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('QUEUE_SERVICE_PORT', '8080')}/health/live\", timeout=2)"]
# SIGTERM drains (QUEUE_SERVICE_SHUTDOWN_GRACE_SECONDS, default 25 s): give
# the container a longer stop timeout (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["queue-service"]
CMD ["serve"]
