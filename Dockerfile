# framepool agent server image. Build: docker build -t framepool .
# Run:  docker run --rm --network host --stop-timeout 100 -e LIVEKIT_URL=... -e LIVEKIT_API_KEY=... \
#         -e LIVEKIT_API_SECRET=... -v $PWD/framepool.toml:/etc/framepool/framepool.toml framepool
# --stop-timeout (or compose's stop_grace_period, see docker-compose.yml) must exceed the stop budget, which
# `framepool config --stop-budget` prints: Docker's default of 10 s would SIGKILL jobs still draining.
# stop budget with the defaults: 86.5 s (drain 60 + end jobs 11 + disconnect 3 + stop workers 12.5)
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY daemon daemon
COPY processors processors
COPY native native
RUN python -m venv /opt/framepool && /opt/framepool/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --no-create-home framepool
COPY --from=build /opt/framepool /opt/framepool
ENV PATH=/opt/framepool/bin:$PATH FRAMEPOOL_LOG_FORMAT=json
USER framepool
STOPSIGNAL SIGTERM
ENTRYPOINT ["framepool"]
CMD ["start", "--config", "/etc/framepool/framepool.toml"]
