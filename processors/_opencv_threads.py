"""OpenCV's thread pool, set to one thread once per worker (worker process; the supervisor imports this
module with the processors that declare it, and only the import happens there).

Workers are pinned to one CPU each. OpenCV would otherwise start a pool of one thread per core of the
machine on its first parallel call (cvtColor, Laplacian, resize split large images into stripes), and
those threads would contend for the worker's one CPU with each other and with the streams the worker
serves. The setting is process-wide, so it is made the way a model is loaded: a `WorkerResource`, run in
the worker when the first stream of a class declaring it attaches there, never at import (the supervisor
imports processor modules to validate parameters, and must keep its own OpenCV defaults).
"""

from __future__ import annotations

import cv2

from framepool.processors.resource import WorkerResource


def _one_thread() -> int:
    cv2.setNumThreads(1)
    return int(cv2.getNumThreads())


# Declared as a class attribute (`opencv_threads = OPENCV_ONE_THREAD`) by every built-in processor that
# calls OpenCV per frame; loaded once per worker whichever of them attaches first.
OPENCV_ONE_THREAD: WorkerResource[int] = WorkerResource(_one_thread)
