"""A supervisor stand-in that runs a BridgeHost (its own process, for the parent-death test).

stdin: a BridgeStart JSON document. Prints the bridge's pid once it is ready, then waits to be killed.
"""

from __future__ import annotations

import asyncio
import os
import sys

import msgspec

from framepool.bridge.process import BridgeStart
from framepool.bridgehost import BridgeHost


async def main() -> None:
    document = msgspec.json.decode(sys.stdin.buffer.read(), type=BridgeStart)
    host = BridgeHost(msgspec.structs.replace(document, parent_pid=os.getpid()))
    host.start()
    await host.ready.wait()
    print(host.pid, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
