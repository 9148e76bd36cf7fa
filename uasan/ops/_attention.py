"""Checks and dispatch shared by the attention ops (:mod:`uasan.ops.pair_self_attention`,
:mod:`uasan.ops.shared_query_attention`, :mod:`uasan.ops.pair_cross_attention`; the family is described in
:mod:`uasan.ops.attention`)."""

from __future__ import annotations

import importlib.util
import math
import numbers
import os
from typing import Any

import torch

_IMPLS = ("auto", "triton", "torch")
_FLOATS = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
_INTERPRETER_FLOATS = (torch.float32, torch.float16)  # its tl.dot computes garbage for bfloat16
_CUDA_TRITON_FLOATS = (torch.float16, torch.bfloat16)


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, t.shape)) + ("," if t.dim() == 1 else "") + ")"


def _float_tensor(op: str, name: str, x: Any, rank: int, expected: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{op}: expected {name} to be a torch.Tensor of shape {expected}, but got {type(x).__name__}")
    if x.dim() != rank:
        raise ValueError(f"{op}: expected {name} of shape {expected}, but got {_shape(x)}")
    if x.dtype not in _FLOATS:
        raise ValueError(f"{op}: expected {name} to be float64/32/16 or bfloat16, but got {x.dtype}")
    return x


def _same(op: str, name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor, dims: dict[int, str]) -> None:
    """``x`` matches ``ref`` in dtype, device and the listed dims (index → letter)."""
    for i, letter in dims.items():
        if x.shape[i] != ref.shape[i]:
            raise ValueError(
                f"{op}: expected {name} to have {letter} = {ref.shape[i]} like {ref_name} {_shape(ref)}, "
                f"but got shape {_shape(x)}"
            )
    if x.dtype != ref.dtype:
        raise ValueError(f"{op}: expected {name} of dtype {ref.dtype} like {ref_name}, but got {x.dtype}")
    if x.device != ref.device:
        raise ValueError(f"{op}: expected {name} on {ref.device} like {ref_name}, but got {x.device}")


def _check_keys_values(op: str, q: torch.Tensor, k: Any, v: Any, dims: tuple[str, ...], like_q: dict[int, int]) -> None:
    """k and v of shape ``dims`` (four letters), each dim ``i`` of ``like_q`` equal to dim ``like_q[i]`` of q, with q's
    dtype and device, and v's first two dims equal to k's."""
    expected = "(" + ", ".join(dims) + ")"
    want = "(" + ", ".join(f"{d} = {q.shape[like_q[i]]}" if i in like_q else d for i, d in enumerate(dims)) + ")"
    for name, x in (("k", k), ("v", v)):
        x = _float_tensor(op, name, x, 4, expected)
        if any(x.shape[i] != q.shape[j] for i, j in like_q.items()):
            raise ValueError(f"{op}: expected {name} of shape {want} like q {_shape(q)}, but got {_shape(x)}")
        if x.dtype != q.dtype or x.device != q.device:
            raise ValueError(
                f"{op}: expected {name} of dtype {q.dtype} on {q.device} like q, but got {x.dtype} on {x.device}"
            )
    if v.shape[:2] != k.shape[:2]:
        raise ValueError(f"{op}: expected v of shape {expected} = {_shape(k)} like k, but got {_shape(v)}")


def _scale(op: str, scale: Any, dh: int) -> float:
    if scale is None:
        if dh == 0:
            raise ValueError(f"{op}: expected a head dim Dh >= 1 (or an explicit scale), but got Dh = 0")
        return dh**-0.5
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(float(scale)):
        raise ValueError(f"{op}: expected scale to be None or a finite real number, but got {scale!r}")
    return float(scale)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _check_indices_on_host() -> bool:
    return os.environ.get("UASAN_CHECK_INDICES") == "1"


def _resolve_sdpa(op: str, impl: Any, device: torch.device, dtype: torch.dtype) -> str:
    """``_resolve`` for an op whose ``"triton"`` path is PyTorch's SDPA (any device; float32 / float16 / bfloat16)."""
    if not isinstance(impl, str) or impl not in _IMPLS:
        raise ValueError(f"{op}: expected impl to be one of {_IMPLS}, but got {impl!r}")
    if impl == "auto":
        return "triton" if device.type == "cuda" and dtype != torch.float64 else "torch"
    if impl == "triton" and dtype == torch.float64:
        raise ValueError(f"{op}: impl='triton' (SDPA) takes float32, float16 or bfloat16 tensors, but got {dtype}")
    return impl


def _resolve(op: str, impl: Any, device: torch.device, dtype: torch.dtype) -> str:
    """The path an ``impl`` takes for tensors on ``device`` of ``dtype``: ``"triton"`` or ``"torch"``."""
    if not isinstance(impl, str) or impl not in _IMPLS:
        raise ValueError(f"{op}: expected impl to be one of {_IMPLS}, but got {impl!r}")
    if impl == "auto":
        cuda_half = device.type == "cuda" and dtype in _CUDA_TRITON_FLOATS
        return "triton" if cuda_half and importlib.util.find_spec("triton") is not None else "torch"
    if impl == "torch":
        return impl
    if dtype == torch.float64:
        raise ValueError(f"{op}: impl='triton' takes bfloat16 / float16 (CUDA) or float32 / float16 (interpreter) "
                         f"tensors, but got {dtype}")  # fmt: skip
    if importlib.util.find_spec("triton") is None:
        raise ValueError(f"{op}: impl='triton' needs the triton package; use impl='torch' (or 'auto')")
    if device.type == "cuda":
        if dtype not in _CUDA_TRITON_FLOATS:
            raise ValueError(
                f"{op}: impl='triton' takes bfloat16 or float16 CUDA tensors, but got {dtype} (float32 runs on the "
                "reference, impl='torch' or 'auto', which honours torch.get_float32_matmul_precision())"
            )
        return impl
    if device.type != "cpu" or not _interpreting():
        raise ValueError(
            f"{op}: impl='triton' on {device.type} tensors needs the Triton interpreter (TRITON_INTERPRET=1, set "
            "before the first kernel import); use CUDA tensors, or impl='torch' / 'auto'"
        )
    if dtype not in _INTERPRETER_FLOATS:
        raise ValueError(
            f"{op}: impl='triton' under the Triton interpreter takes float32 or float16 tensors, but got {dtype} "
            "(the interpreter's bfloat16 dots are wrong)"
        )
    return impl


def _math_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v over (..., Lq, D), (..., Lk, D), (..., Lk, D); an empty key set gives 0."""
    return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v
