"""Operations: what an operator and the orchestrator see of a running daemon over HTTP (supervisor process).

`dashboard` is the status page at /dashboard, drawn in the browser from /status.
"""
