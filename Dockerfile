# framepool agent server image. Build: docker build -t framepool .
# Run:  docker run --rm --init --network host --stop-timeout 100 -e LIVEKIT_URL=... -e LIVEKIT_API_KEY=... \
#         -e LIVEKIT_API_SECRET=... -v $PWD/framepool.toml:/etc/framepool/framepool.toml:ro framepool
# --stop-timeout (or compose's stop_grace_period, see docker-compose.yml) must exceed the stop budget, which
# `framepool config --stop-budget` prints: Docker's default of 10 s would SIGKILL jobs still draining.
# stop budget with the defaults: 86.5 s (drain 60 + end jobs 11 + disconnect 3 + stop workers 12.5)
#
# BASE is any Debian-family image whose `python3` is 3.11+ with its headers (python:3.11-slim; tests/image
# builds FROM a Debian bookworm root filesystem made with mmdebstrap, where no registry can be reached).
# A build host that reaches PyPI through a mirror or a TLS-intercepting proxy passes its pip configuration
# and CA bundle as build secrets, which never land in a layer:
#   docker build --secret id=pip.conf,src=$HOME/.config/pip/pip.conf --secret id=pip-ca.crt,src=ca.crt .
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# The compiler builds the ring extension (native/ring.c); it stays in this stage. Unpinned: the base's own
# Debian release fixes their versions.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY daemon daemon
COPY processors processors
COPY native native
# silero-vad without its dependencies: only its model file is used (torch is not needed; see the Makefile).
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-ca.crt \
    if [ -f /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi \
    && if [ -f /run/secrets/pip-ca.crt ]; then export PIP_CERT=/run/secrets/pip-ca.crt; fi \
    && python3 -m venv /opt/framepool \
    && /opt/framepool/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && /opt/framepool/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps "silero-vad==6.2.3"

FROM ${BASE}
# A fixed numeric UID, so Kubernetes' runAsNonRoot can verify it (deploy/k8s/deployment.yaml).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /var/lib/framepool framepool \
    && install -d -o framepool -g framepool /var/lib/framepool /var/lib/framepool/spool
COPY --from=build /opt/framepool /opt/framepool
ENV PATH=/opt/framepool/bin:$PATH \
    FRAMEPOOL_LOG_FORMAT=json \
    FRAMEPOOL_SPOOL_DIR=/var/lib/framepool/spool
WORKDIR /var/lib/framepool
USER 10001:10001
# /livez and /readyz, /status, /metrics and /dashboard (the supervisor's HTTP server).
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["framepool", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["framepool"]
CMD ["start", "--config", "/etc/framepool/framepool.toml"]
