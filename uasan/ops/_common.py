"""Shared plumbing of the op dispatchers: input conversion, argument checks, impl resolution.

Every public op accepts NumPy arrays or CPU tensors and returns the kind it was given. Checks raise
``ValueError`` naming the op and the argument, the expected shape/dtype and what was given.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from uasan import _ext

Array = Any  # np.ndarray | torch.Tensor: every op takes either and returns the kind it was given


def is_tensor(x: Any) -> bool:
    """True for a ``torch.Tensor``; never imports torch (a tensor cannot exist before torch is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any, op: str, name: str) -> np.ndarray:
    """Returns ``x`` as a NumPy array (no copy for a contiguous CPU tensor or array)."""
    if is_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(f"{op}: expected {name} on the CPU, but got a tensor on {x.device}")
        x = x.detach()
        if x.dtype.is_floating_point and x.element_size() < 4:  # float16 / bfloat16 have no exact NumPy twin
            x = x.float()
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{op}: expected {name} to be an array, but got {type(x).__name__} ({exc})") from None


def like(out: np.ndarray, as_tensor: bool) -> Any:
    """Returns ``out`` as a tensor when the op was given tensors, else as it is."""
    if as_tensor:
        import torch

        return torch.from_numpy(np.ascontiguousarray(out))
    return out


def float_array(x: Any, op: str, name: str) -> np.ndarray:
    """Float32 stays float32; any other real dtype becomes float64."""
    arr = to_numpy(x, op, name)
    if arr.dtype == np.float32 or arr.dtype == np.float64:
        return arr
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{op}: expected {name} to hold real numbers, but got dtype {arr.dtype}")
    return arr.astype(np.float64)


def int_array(x: Any, op: str, name: str) -> np.ndarray:
    """Integer array as int64; floats are accepted only when they hold whole numbers."""
    arr = to_numpy(x, op, name)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    if arr.size == 0 and arr.dtype.kind in "fb":
        return arr.astype(np.int64)
    raise ValueError(f"{op}: expected {name} to hold integers, but got dtype {arr.dtype}")


def bool_array(x: Any, op: str, name: str) -> np.ndarray:
    arr = to_numpy(x, op, name)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iuf" and np.all((arr == 0) | (arr == 1)):
        return arr.astype(np.bool_)
    raise ValueError(f"{op}: expected {name} to be a boolean mask, but got dtype {arr.dtype}")


def shape_str(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def check_shape(arr: np.ndarray, op: str, name: str, dims: tuple[int | None, ...], expected: str) -> None:
    """``dims`` entries of ``None`` match any size."""
    if arr.ndim != len(dims) or any(d is not None and s != d for s, d in zip(arr.shape, dims, strict=True)):
        raise ValueError(f"{op}: expected {name} of shape {expected}, but got {shape_str(arr.shape)}")


def check_boxes(boxes: np.ndarray, op: str, name: str) -> None:
    """Boxes (..., 4): finite, x2 >= x1 and y2 >= y1. Names the first offending box."""
    flat = boxes.reshape(-1, 4)
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(f"{op}: expected {name} to hold finite coordinates, but box {i} is {flat[i].tolist()}")
    bad = (flat[:, 2] < flat[:, 0]) | (flat[:, 3] < flat[:, 1])
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{op}: expected {name} boxes with x2 >= x1 and y2 >= y1, but box {i} is {flat[i].tolist()}")


def resolve_impl(impl: str, op: str, allowed: tuple[str, ...], fallback: str) -> str:
    """Maps ``impl`` to a concrete path; ``"auto"`` is ``"cpp"`` when the extension loaded, else ``fallback``."""
    if impl not in ("auto", *allowed):
        raise ValueError(f"{op}: expected impl to be one of {('auto', *allowed)}, but got {impl!r}")
    if impl == "auto":
        if _ext.HAS_EXT:
            return "cpp"
        _ext.warn_fallback()
        return fallback
    return impl


def resolve_impl_for_inputs(impl: str, op: str, allowed: tuple[str, ...], *inputs: Any) -> str:
    """``resolve_impl`` (fallback ``"torch"``) for an op with a C++ path, which is host-only: ``"auto"`` sends
    tensors that live off the CPU to the PyTorch path."""
    if impl == "auto" and any(is_tensor(x) and x.device.type != "cpu" for x in inputs):
        return "torch"
    return resolve_impl(impl, op, allowed, fallback="torch")
