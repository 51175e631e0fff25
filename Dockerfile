# syntax=docker/dockerfile:1
# RevBridge: one image for both long-running processes (docs/deploy.md).
#   docker build -t revbridge .
#   docker run revbridge worker                            # polls the task queue
#   docker run -p 8700:8700 revbridge webhooks --host 0.0.0.0 --port 8700
# Configuration is the environment only (README: Temporal env-config, vendor keys, secrets).
#
# The base is pinned to an exact tag; pin its digest too where you build
# (`docker buildx imagetools inspect python:3.11.14-slim-bookworm`), or pass your own mirror:
#   docker build --build-arg PYTHON_IMAGE=registry.example.com/python@sha256:… .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: the wheel, installed with its dependencies into a virtualenv ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY . .
RUN python3 -m venv /opt/revbridge \
 && /opt/revbridge/bin/python -m pip install --upgrade pip \
 && /opt/revbridge/bin/python -m pip wheel --no-deps -w /dist . \
 && /opt/revbridge/bin/python -m pip install /dist/revbridge-*.whl \
 && /opt/revbridge/bin/python -m pip uninstall -y pip

# --- run: the virtualenv only; no compiler, no pip, no source tree ------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 revbridge \
 && useradd --system --uid 10001 --gid revbridge --home-dir /home/revbridge --create-home \
      --shell /usr/sbin/nologin revbridge
COPY --from=build /opt/revbridge /opt/revbridge
ENV PATH=/opt/revbridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # the worker's /healthz (liveness) and /readyz (its pollers seen by Temporal): infra/health.py
    REVBRIDGE_HEALTH_PORT=8081
USER 10001:10001
WORKDIR /home/revbridge
# 8700: the webhook service (its /healthz and /readyz, Temporal reachable); 8081: worker probes
EXPOSE 8700 8081
# revbridge is PID 1 (exec form): SIGTERM stops the pollers and drains in-flight activities
# (worker), or finishes in-flight requests (webhooks); give it the grace period (docs/deploy.md)
STOPSIGNAL SIGTERM
# Liveness of whichever process runs: the worker's probe port, else the webhook service's port.
HEALTHCHECK --interval=15s --timeout=4s --start-period=30s --retries=3 CMD ["python3", "-c", "import os, sys, urllib.request as u\nfor port in (os.environ.get('REVBRIDGE_HEALTH_PORT', '8081'), '8700'):\n    try:\n        sys.exit(0 if u.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=3).status == 200 else 1)\n    except OSError:\n        pass\nsys.exit(1)"]
ENTRYPOINT ["revbridge"]
CMD ["worker"]
