"""Operations: what an operator sees of a running daemon over HTTP (supervisor process).

`health` decides liveness and readiness from the Supervisor's state, `status` builds the /status document
from the same objects, `metrics` turns them into Prometheus text at scrape time, `dashboard` serves the status
page, `http` serves all of them on the supervisor's event loop, and `probe` is the `framepool health` command
a container's HEALTHCHECK runs. Nothing here runs in a worker: a worker's figures reach the supervisor
through the pool.
"""
