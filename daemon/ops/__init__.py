"""What an operator sees of a running daemon: health, status and metrics over HTTP (supervisor process).

`metrics` turns the Supervisor's state into Prometheus text at scrape time.
"""
