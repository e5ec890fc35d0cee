"""Operations: health, readiness and status of a running daemon over HTTP (supervisor process).

`health` decides liveness and readiness from the Supervisor's state, `status` builds the /status document
from the same objects (the metrics exporter reads them through the same functions), `http` serves both on the
supervisor's event loop, and `probe` is the `framepool health` command a container's HEALTHCHECK runs.
Nothing here runs in a worker: a worker's figures reach the supervisor through the pool.
"""
