"""A supervisor stand-in that appends to a spool until killed (its own process, for the kill -9 test).

argv: spool directory. Prints the seq of every message as soon as `append` returned True, so the test
knows a lower bound of what was appended before it killed this process with SIGKILL.
"""

from __future__ import annotations

import sys
from pathlib import Path

from framepool.ipc.spool import SpoolWriter
from framepool.processors.messages import DataMessage, new_event_id


def main() -> None:
    spool = SpoolWriter(Path(sys.argv[1]), max_bytes=1 << 30, commit_interval=0.02, segment_bytes=64 << 10)
    seq = 0
    while True:
        seq += 1
        room = f"room-{seq % 3}"
        event = DataMessage(
            event_id=new_event_id(), seq=seq, job="J", room=room, kind="packet", topic="t", sender="s",
            sender_kind="standard", received_us=seq, payload=b"p" * (seq % 200),
        )  # fmt: skip
        if spool.append(event):
            print(seq, flush=True)


if __name__ == "__main__":
    main()
