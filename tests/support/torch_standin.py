"""A numpy stand-in for the few torch functions silero-vad's own `utils_vad.py` uses, so the tests run the
wheel's reference code (OnnxWrapper, get_speech_timestamps, VADIterator) without torch (test process).

torch is a 2 GB dependency the package does not need (it loads the ONNX file with onnxruntime), so it is not
installed; the reference code only needs tensors that behave like numpy arrays with torch's method names,
and this module provides exactly that surface. `silero_utils()` imports the wheel's `silero_vad/utils_vad.py`
by path (its package `__init__` imports `model.py`, which would want the real torch for the JIT model) with
this module standing in as `torch` while it loads.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class Tensor(np.ndarray):
    """A float array with the torch methods utils_vad.py calls."""

    def __new__(cls, data: Any = ()) -> Tensor:
        return np.asarray(data, dtype=np.float32).view(cls)

    def dim(self) -> int:
        return self.ndim

    def unsqueeze(self, axis: int) -> Tensor:
        return np.expand_dims(self, axis).view(Tensor)

    def numpy(self) -> np.ndarray:
        return np.asarray(self)

    def float(self) -> Tensor:
        return self.astype(np.float32).view(Tensor)

    def cpu(self) -> Tensor:
        return self

    def size(self, axis: int) -> int:
        return int(self.shape[axis])


def _zeros(*shape: Any) -> Tensor:
    dims = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape
    return np.zeros(dims, dtype=np.float32).view(Tensor)


def _cat(tensors: Sequence[np.ndarray], dim: int = 0) -> Tensor:
    return np.concatenate([np.asarray(t) for t in tensors], axis=dim).view(Tensor)


def _pad(x: np.ndarray, pad: tuple[int, int], mode: str = "constant", value: float = 0.0) -> Tensor:
    widths = [(0, 0)] * (x.ndim - 1) + [(pad[0], pad[1])]
    return np.pad(np.asarray(x), widths, mode="constant", constant_values=value).view(Tensor)


def _no_grad() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        return functools.wraps(function)(lambda *args, **kwargs: function(*args, **kwargs))

    return decorate


def _module() -> types.ModuleType:
    torch = types.ModuleType("torch")
    functional = types.ModuleType("torch.nn.functional")
    functional.pad = _pad  # type: ignore[attr-defined]
    nn = types.ModuleType("torch.nn")
    nn.functional = functional  # type: ignore[attr-defined]
    members: dict[str, Any] = {
        "Tensor": Tensor,
        "zeros": _zeros,
        "cat": _cat,
        "from_numpy": lambda array: np.asarray(array).view(Tensor),
        "is_tensor": lambda value: isinstance(value, Tensor),
        "no_grad": _no_grad,
        "device": lambda name: name,
        "nn": nn,
    }
    for name, value in members.items():
        setattr(torch, name, value)
    return torch


def silero_package_dir() -> Path:
    spec = importlib.util.find_spec("silero_vad")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps silero-vad"
    return Path(spec.submodule_search_locations[0])


@functools.cache
def silero_utils() -> types.ModuleType:
    """The wheel's `utils_vad` module, loaded with the stand-in as `torch`."""
    path = silero_package_dir() / "utils_vad.py"
    spec = importlib.util.spec_from_file_location("silero_reference_utils_vad", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = {name: sys.modules.get(name) for name in ("torch", "torch.nn", "torch.nn.functional")}
    torch = _module()
    sys.modules.update({"torch": torch, "torch.nn": torch.nn, "torch.nn.functional": torch.nn.functional})
    try:
        spec.loader.exec_module(module)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module
