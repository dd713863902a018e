"""PyTorch bridge: the SIM operator as an autograd function whose gradient is the hand-written adjoint.

Autograd never traces the FFTs: ``sim_forward(x, op)`` calls :meth:`SIMOperator.forward` on a zero-copy
DLPack view of ``x`` (NumPy on the CPU, CuPy on the GPU, on torch's current CUDA stream) and its
backward calls :meth:`SIMOperator.adjoint`. Because the operator is linear, the backward is itself an
autograd function whose backward is the forward, so double backward (Hessian-vector products) works.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch

__all__ = ["sim_forward", "sim_adjoint", "as_array", "as_tensor"]

_TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def as_array(t: torch.Tensor):
    """Zero-copy NumPy (CPU tensor) or CuPy (CUDA tensor) view of a contiguous tensor, via DLPack."""
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.is_cuda:
        import cupy  # noqa: PLC0415

        return cupy.from_dlpack(t)
    return np.from_dlpack(t)


def as_tensor(a) -> torch.Tensor:
    """Zero-copy tensor view of a NumPy or CuPy array, via DLPack."""
    return torch.from_dlpack(a)


def _torch_malloc(size: int):
    """CuPy memory taken from torch's caching allocator (on torch's current stream): the operator's
    temporaries share one pool with the network's, and inside a CUDA-graph capture they come from the
    graph's private pool, as torch's own do (CuPy's pool would hand the graph's memory to others)."""
    import cupy  # noqa: PLC0415

    t = torch.empty((size,), dtype=torch.uint8, device=torch.device("cuda", cupy.cuda.Device().id))
    return cupy.cuda.MemoryPointer(cupy.cuda.UnownedMemory(t.data_ptr(), size, t, t.device.index), 0)


@contextlib.contextmanager
def _torch_stream(t: torch.Tensor):
    """Run CuPy work on torch's current CUDA stream, its memory from torch's allocator (no-op for CPU
    tensors). Nothing here synchronises, so the operator can be captured in a CUDA graph."""
    if not t.is_cuda:
        yield
        return
    import cupy  # noqa: PLC0415

    dev = t.device.index or 0
    stream = torch.cuda.current_stream(t.device)
    with warnings.catch_warnings():  # CuPy 14 deprecates ExternalStream for Stream.from_external, which
        warnings.simplefilter("ignore", DeprecationWarning)  # older CuPy lacks
        external = cupy.cuda.ExternalStream(stream.cuda_stream, dev)
    with cupy.cuda.Device(dev), external, cupy.cuda.using_allocator(_torch_malloc):
        yield


def _check(t: torch.Tensor, op, name: str) -> None:
    if not isinstance(t, torch.Tensor):  # the NumPy array's message was a dtype "mismatch" of float32 and float32
        raise ValueError(f"{name}: expected a torch tensor, got {type(t).__name__} (torch.from_numpy makes one; "
                         "NumPy arrays go to op.forward and op.adjoint)")
    want = _TORCH_DTYPE[op.dtype]
    if t.dtype != want:
        other = f" or build the operator with dtype='{t.dtype}'" if t.dtype in _TORCH_DTYPE.values() else ""
        raise ValueError(f"{name}: dtype {t.dtype} does not match the operator's {op.dtype.name}; "
                         f"cast with .to({want}){other}".replace("torch.", ""))
    on_gpu = op.device == "cuda"
    if t.is_cuda != on_gpu:
        raise ValueError(f"{name}: tensor is on {t.device} but the operator lives on {op.device}")


def _apply(t: torch.Tensor, fn, op, name: str) -> torch.Tensor:
    _check(t, op, name)
    with _torch_stream(t):  # both DLPack hand-overs on torch's stream: no event, no synchronisation
        return as_tensor(fn(as_array(t)))


class _Apply(torch.autograd.Function):
    """``A v`` (``adjoint=False``) or ``A^T v`` (``adjoint=True``): the gradient of each is the other."""

    @staticmethod
    def forward(ctx, v, op, adjoint: bool):
        ctx.op, ctx.adjoint = op, adjoint
        return _apply(v, op.adjoint if adjoint else op.forward, op, "y" if adjoint else "x")

    @staticmethod
    def backward(ctx, grad):
        return _Apply.apply(grad, ctx.op, not ctx.adjoint), None, None


def sim_forward(x: torch.Tensor, op) -> torch.Tensor:
    """``A x`` for a tensor (H, W) or (B, H, W) on the operator's device; differentiable through the adjoint."""
    return _Apply.apply(x, op, False)


def sim_adjoint(y: torch.Tensor, op) -> torch.Tensor:
    """``A^T y`` for a tensor (K, h, w) or (B, K, h, w); differentiable through the forward."""
    return _Apply.apply(y, op, True)

