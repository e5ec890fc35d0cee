"""Per-worker resources: a model loaded once per worker, shared by every stream of the processor class that
declares it (worker process).

    class Vad(AudioProcessor[VadParams]):
        model = WorkerResource(load_silero, release=Silero.close)

        def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
            speech = self.model.predict(frame.samples)   # `self.model` is what load_silero() returned

When it loads: in the worker, when the first stream of a class that declares it attaches there, before
that stream's processors are constructed (a load that raises fails that attach, reported to the
supervisor like a constructor that raises). A prewarm hook may load it earlier, at worker start, by
calling `Vad.model.get()`. Never in the supervisor: it learns formats from the `input_format` classmethod
and never constructs processors, and nothing else touches a resource.

When it is released: when the worker exits (shutdown, or the runtime failing), in reverse load order,
through `release(value)` if one was given. Not when the last stream using it detaches: the next job would
pay the load again, and that cost is what a per-worker resource exists to avoid. A worker killed by a
signal releases nothing; the operating system reclaims its memory.

One value per process: a value is never used by a process other than the one that loaded it (a forked
child loads its own), so a parent's threads or file handles inside a model cannot leak into a worker.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

log = logging.getLogger("framepool.processors.resource")
T = TypeVar("T")

_loaded: list[WorkerResource[Any]] = []  # in load order, in this process


class WorkerResource(Generic[T]):
    """A class attribute of a processor: the value `load()` returns, loaded once per worker (see module)."""

    def __init__(self, load: Callable[[], T], release: Callable[[T], None] | None = None) -> None:
        self._load = load
        self._release = release
        self._value: T | None = None
        self._pid = 0  # the process `_value` belongs to; 0: not loaded
        self.name = getattr(load, "__qualname__", repr(load))

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = f"{owner.__module__}.{owner.__qualname__}.{name}"

    @overload
    def __get__(self, instance: None, owner: type) -> WorkerResource[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object | None, owner: type) -> WorkerResource[T] | T:
        return self if instance is None else self.get()

    @property
    def loaded(self) -> bool:
        """Whether this process holds the value."""
        return self._pid == os.getpid()

    def get(self) -> T:
        """The value, loading it first if this process does not hold it yet."""
        if self._pid != os.getpid():
            started = time.perf_counter()
            self._value = self._load()
            self._pid = os.getpid()
            _loaded.append(self)
            log.info("loaded %s in %.3f s", self.name, time.perf_counter() - started)
        return self._value  # type: ignore[return-value]  # loaded above; T itself may include None

    def release(self) -> None:
        """Release the value if this process holds it (its `release` hook runs once)."""
        if self._pid != os.getpid():
            return
        value, self._value, self._pid = self._value, None, 0
        if self in _loaded:
            _loaded.remove(self)
        if self._release is not None:
            self._release(value)  # type: ignore[arg-type]


def resources_of(cls: type) -> list[WorkerResource[Any]]:
    """The WorkerResources `cls` declares or inherits, in attribute order, each once."""
    found: dict[int, WorkerResource[Any]] = {}
    for klass in reversed(cls.__mro__):
        for value in vars(klass).values():
            if isinstance(value, WorkerResource):
                found.setdefault(id(value), value)
    return list(found.values())


def release_all() -> None:
    """Release every resource this process loaded, newest first; a release that raises is logged and the
    others still run."""
    while _loaded:
        resource = _loaded.pop()
        try:
            resource.release()
        except Exception:
            log.exception("releasing %s failed", resource.name)
