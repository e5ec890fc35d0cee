"""The bridge process: delivers room data to external systems (bridge process).

Sink I/O, TLS, retries and fsync never run on the supervisor's loop, which holds the rooms: the supervisor
appends each event to an on-disk spool per sink, and this separate process reads the spools, delivers to
the sinks and checkpoints. `sink` is the API every sink implements (webhook, Redis Streams, PostgreSQL, or
a user's own).
"""
