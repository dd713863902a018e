"""CUDA implementation of the four primitives: loads ``kernels/sim_ops.cu`` and launches it on CuPy arrays.

The one module that creates ``cupy.RawModule`` objects (DESIGN section 4). Each wrapper has the
signature and return value of its NumPy twin in :mod:`cusim._twins`, which defines what it computes.
The source is compiled by NVRTC at first use; CuPy caches the binary on disk. CuPy is imported
inside the functions, so importing this module needs no GPU.
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np

KERNEL_NAMES = [
    f"{op}_{p}"
    for op in ("pattern_multiply_pad", "pattern_multiply_sum", "fold_transfer", "unfold_transfer")
    for p in ("f32", "f64")
]

_BLOCK = (32, 8, 1)  # (x: columns, y: rows, z: planes); a warp covers 32 consecutive columns of one row
_BLOCKS_PER_SM = 8  # with 256 threads, one full wave on the SMs; the grid-stride loops do the rest
_GRID_YZ_MAX = 65535  # CUDA's limit on gridDim.y and gridDim.z
_REAL = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_COMPLEX = {np.dtype(np.complex64): "f32", np.dtype(np.complex128): "f64"}


def kernel_source_dir() -> Path:
    """The folder of ``sim_ops.cu``: ``cusim/kernels`` in a wheel, else the top-level ``kernels/``."""
    package = Path(__file__).resolve().parent
    inside = package / "kernels"
    return inside if inside.is_dir() else package.parent / "kernels"


@functools.lru_cache(maxsize=1)
def _module():
    import cupy  # noqa: PLC0415

    folder = kernel_source_dir()
    source = (folder / "sim_ops.cu").read_text()
    # CuPy's compile cache is keyed on the source and the options, not on included headers: put the
    # header's hash in the options so that editing it recompiles.
    header = hashlib.sha256((folder / "cusim_complex.cuh").read_bytes()).hexdigest()[:16]
    options = (f"-I{folder}", f"-DCUSIM_COMPLEX_CUH_SHA={header}")
    return cupy.RawModule(code=source, options=options, backend="nvrtc")


@functools.lru_cache(maxsize=None)
def _grid_cap(device_id: int) -> int:
    import cupy  # noqa: PLC0415

    return _BLOCKS_PER_SM * cupy.cuda.Device(device_id).attributes["MultiProcessorCount"]


def launch_grid(shape: tuple[int, int, int], cap: int) -> tuple[int, int, int]:
    """The grid (x, y, z) for an output of ``shape`` (planes, rows, columns) in blocks of ``_BLOCK``: enough
    blocks to cover the columns, then the rows, then the planes, at most ``cap`` blocks in all (the kernels'
    grid-stride loops cover the rest). Every kernel maps x to columns, y to rows and z to planes."""
    planes, rows, cols = shape
    bx, by, bz = _BLOCK
    gx = max(1, min(-(-cols // bx), cap))
    gy = max(1, min(-(-rows // by), cap // gx, _GRID_YZ_MAX))
    gz = max(1, min(-(-planes // bz), cap // (gx * gy), _GRID_YZ_MAX))
    return gx, gy, gz


def _launch(name: str, shape: tuple[int, ...], *args) -> None:
    """Run kernel ``name`` over an output of ``shape`` (its last three axes: planes, rows, columns; leading
    axes fold into the planes); integers go in as ``long long``."""
    if math.prod(shape) == 0:
        return
    import cupy  # noqa: PLC0415

    planes, rows, cols = math.prod(shape[:-2]), shape[-2], shape[-1]
    grid = launch_grid((planes, rows, cols), _grid_cap(cupy.cuda.Device().id))
    args = tuple(np.int64(a) if isinstance(a, (int, np.integer)) else a for a in args)
    _module().get_function(name)(grid, _BLOCK, args)  # CuPy's order: grid, block, arguments


def _precision(table: dict, *arrays) -> str:
    """The kernel suffix for the arrays' dtype, which must be one of ``table`` and the same for all."""
    dtypes = {np.dtype(a.dtype) for a in arrays}
    if len(dtypes) != 1 or next(iter(dtypes)) not in table:
        allowed = " or ".join(str(d) for d in table)
        got = ", ".join(str(a.dtype) for a in arrays)
        raise ValueError(f"expected arrays of one dtype, {allowed}; got {got}")
    return table[next(iter(dtypes))]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _on_device(*arrays) -> list:
    """The arrays as C-contiguous CuPy arrays; NumPy input is an error (no hidden host-device copies)."""
    import cupy  # noqa: PLC0415

    for a in arrays:
        _require(isinstance(a, cupy.ndarray), f"expected CuPy arrays, got {type(a).__module__}.{type(a).__name__}")
    return [cupy.ascontiguousarray(a) for a in arrays]


def pattern_multiply_pad(x, pat, hp_wp: tuple[int, int], off: int):
    """``u[b, k, i + off, j + off] = pat[k, i, j] * x[b, i, j]``, zero elsewhere: (B, K, Hp, Wp)."""
    p = _precision(_REAL, x, pat)
    _require(x.ndim == 3 and pat.ndim == 3,
             f"expected x (B, H, W) and pat (K, H, W), got {x.shape}, {pat.shape}")
    B, H, W = x.shape
    K = pat.shape[0]
    Hp, Wp = (int(v) for v in hp_wp)
    _require(pat.shape[1:] == (H, W), f"pat: expected shape (K, {H}, {W}), got {pat.shape}")
    _require(off >= 0 and Hp >= H + off and Wp >= W + off,
             f"hp_wp {hp_wp} cannot hold ({H}, {W}) at offset {off}")
    import cupy  # noqa: PLC0415

    x, pat = _on_device(x, pat)
    u = cupy.empty((B, K, Hp, Wp), dtype=x.dtype)  # the kernel writes the zero margin too
    _launch(f"pattern_multiply_pad_{p}", u.shape, x, pat, u, B, K, H, W, Hp, Wp, off)
    return u


def pattern_multiply_sum(w, pat, off: int):
    """``out[b, i, j] = sum_k pat[k, i, j] * w[b, k, i + off, j + off]``: (B, H, W)."""
    p = _precision(_REAL, w, pat)
    _require(w.ndim == 4 and pat.ndim == 3,
             f"expected w (B, K, Hp, Wp) and pat (K, H, W), got {w.shape}, {pat.shape}")
    B, K, Hp, Wp = w.shape
    _, H, W = pat.shape
    _require(pat.shape[0] == K, f"pat: expected {K} frames, got {pat.shape[0]}")
    _require(off >= 0 and Hp >= H + off and Wp >= W + off,
             f"w {w.shape} cannot hold ({H}, {W}) at offset {off}")
    import cupy  # noqa: PLC0415

    w, pat = _on_device(w, pat)
    out = cupy.empty((B, H, W), dtype=w.dtype)
    _launch(f"pattern_multiply_sum_{p}", out.shape, w, pat, out, B, K, H, W, Hp, Wp, off)
    return out


def _check_tiles(s: int, Hp: int, Wp: int) -> None:
    _require(s >= 1 and Hp % s == 0 and Wp % s == 0, f"hp_wp ({Hp}, {Wp}) is not divisible by s={s}")


def fold_transfer(U, T, s: int, hp_wp: tuple[int, int]):
    """``Y[n, r, c] = sum_{a, b < s} T[R, C] U[n, R, C]`` over the full fine spectrum: (N, hp, wp//2+1)."""
    p = _precision(_COMPLEX, U, T)
    Hp, Wp = (int(v) for v in hp_wp)
    s = int(s)
    _check_tiles(s, Hp, Wp)
    _require(U.ndim == 3 and U.shape[1:] == (Hp, Wp // 2 + 1),
             f"U: expected (N, {Hp}, {Wp // 2 + 1}), got {U.shape}")
    _require(T.shape == (Hp, Wp // 2 + 1), f"T: expected ({Hp}, {Wp // 2 + 1}), got {T.shape}")
    import cupy  # noqa: PLC0415

    U, T = _on_device(U, T)
    N, hp, wp = U.shape[0], Hp // s, Wp // s
    Y = cupy.empty((N, hp, wp // 2 + 1), dtype=U.dtype)
    _launch(f"fold_transfer_{p}", Y.shape, U, T, Y, N, Hp, Wp, s)
    return Y


def unfold_transfer(R, Tc, s: int, hp_wp: tuple[int, int]):
    """``V[n, R, C] = Tc[R, C] * Rfull[n, R % hp, C % wp]``: (N, Hp, Wp//2+1)."""
    p = _precision(_COMPLEX, R, Tc)
    Hp, Wp = (int(v) for v in hp_wp)
    s = int(s)
    _check_tiles(s, Hp, Wp)
    hp, wp = Hp // s, Wp // s
    _require(R.ndim == 3 and R.shape[1:] == (hp, wp // 2 + 1),
             f"R: expected (N, {hp}, {wp // 2 + 1}), got {R.shape}")
    _require(Tc.shape == (Hp, Wp // 2 + 1), f"Tc: expected ({Hp}, {Wp // 2 + 1}), got {Tc.shape}")
    import cupy  # noqa: PLC0415

    R, Tc = _on_device(R, Tc)
    V = cupy.empty((R.shape[0], Hp, Wp // 2 + 1), dtype=R.dtype)
    _launch(f"unfold_transfer_{p}", V.shape, R, Tc, V, R.shape[0], Hp, Wp, s)
    return V
