"""The CUDA kernels of kernels/sim_ops.cu (DESIGN section 4).

Without a GPU: every kernel compiles for sm_80 and sm_90 (nvcc), and every kernel RUNS on the CPU as
host C++ through tests/host_shim/cuda_host_shim.h, called once per (block, thread) of several grids,
and matches its NumPy twin in cusim._twins. With a GPU (`gpu` tests): the CuPy wrappers of
cusim._kernels match the twins at realistic sizes, and SIMOperator on CUDA matches it on the CPU.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cusim import _kernels, _twins

KERNELS = _kernels.kernel_source_dir()
SOURCE = KERNELS / "sim_ops.cu"
SHIM = Path(__file__).resolve().parent / "host_shim" / "cuda_host_shim.h"

B, K = 2, 3
# (H, W, s, off, Hp, Wp): odd and even camera grids (hp, wp), non-square, s = 1..4, margins off > 0.
CASES = [
    (5, 7, 1, 1, 7, 10),
    (6, 8, 2, 2, 10, 14),  # hp, wp = 5, 7: odd camera grid
    (6, 9, 3, 3, 12, 18),  # hp, wp = 4, 6: even, with a Nyquist row and column
    (8, 12, 4, 4, 12, 24),  # hp, wp = 3, 6
]
# (grid, block), each (x, y, z): every grid here has far fewer threads than output elements along some
# axis, so threads run several turns of the grid-stride loops; ((1, 1, 1), (1, 1, 1)) runs every loop in one
# thread; the others split columns, rows and planes (x, y, z) among blocks and threads in different ways.
LAUNCHES = [((1, 1, 1), (1, 1, 1)), ((2, 1, 3), (5, 2, 1)), ((1, 3, 1), (32, 1, 2)), ((3, 2, 2), (4, 3, 2))]
PRECISIONS = {"f32": (np.float32, np.complex64, 1e-5), "f64": (np.float64, np.complex128, 1e-12)}

host_cases = pytest.mark.parametrize("case", CASES, ids=lambda c: "H{}W{}s{}off{}Hp{}Wp{}".format(*c))
host_launches = pytest.mark.parametrize(
    "launch", LAUNCHES, ids=lambda gb: "grid{}xblock{}".format(*("x".join(map(str, d)) for d in gb)))
precisions = pytest.mark.parametrize("precision", list(PRECISIONS))


def _run(cmd) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode:
        pytest.fail(f"{' '.join(map(str, cmd))} failed:\n{r.stdout}\n{r.stderr}")
    return r


def assert_matches_twin(got, want, rtol: float) -> None:
    """Elementwise to ``rtol`` relative to the largest value (NaN, i.e. an unwritten element, fails)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))


# ---- compilation ---------------------------------------------------------------------------------


def test_kernel_names_list_every_extern_c_kernel_in_the_source():
    defined = re.findall(r'extern\s+"C"\s+__global__\s+void\s+(\w+)', SOURCE.read_text())
    assert sorted(defined) == sorted(_kernels.KERNEL_NAMES)


def _function_symbols(cubin: Path) -> set[str] | None:
    """Function names in a cubin (an ELF file), from cuobjdump or readelf; None if neither exists."""
    for tool, flag in (("cuobjdump", "-symbols"), ("readelf", "-Ws")):
        if exe := shutil.which(tool):
            out = _run([exe, flag, cubin]).stdout
            return {line.split()[-1] for line in out.splitlines() if "FUNC" in line}
    return None


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_kernel_compiles_for_sm80_and_sm90(arch, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found on PATH: cannot compile the CUDA kernels here (CI has it)")
    cubin = tmp_path / f"sim_ops_{arch}.cubin"
    _run([nvcc, "-cubin", f"-arch={arch}", "-I", KERNELS, SOURCE, "-o", cubin])
    symbols = _function_symbols(cubin)
    if symbols is None:  # no ELF tool: read the entry points of the PTX instead
        ptx = tmp_path / f"sim_ops_{arch}.ptx"
        _run([nvcc, "-ptx", f"-arch={arch}", "-I", KERNELS, SOURCE, "-o", ptx])
        symbols = set(re.findall(r"\.entry\s+(\w+)", ptx.read_text()))
    assert set(_kernels.KERNEL_NAMES) <= symbols, f"missing from the {arch} cubin"


# ---- the kernels run on the CPU through the host shim -------------------------------------------


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """kernels/sim_ops.cu compiled as host C++ with the shim, loaded with ctypes (once per module)."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found on PATH: cannot build the host-shim kernels")
    so = tmp_path_factory.mktemp("host_kernels") / "sim_ops_host.so"
    # -ffp-contract=off: no fused multiply-add, so the host arithmetic is NumPy's, operation by operation
    _run([gxx, "-x", "c++", "-std=c++17", "-include", SHIM, "-shared", "-fPIC", "-O1", "-ffp-contract=off",
          "-I", KERNELS, SOURCE, "-o", so])
    lib = ctypes.CDLL(str(so))
    lib.cusim_shim_set_thread.argtypes = [ctypes.c_uint] * 12
    lib.cusim_shim_set_thread.restype = None
    return lib


def launch_on_host(lib, name: str, launch: tuple[tuple[int, int, int], tuple[int, int, int]], *args) -> None:
    """Call kernel ``name`` once for every (blockIdx, threadIdx) of a launch of grid and block shapes
    ``launch`` (each (x, y, z)), in shuffled order.

    Arrays pass as pointers (complex64/128 are interleaved re/im, the layout of float2/double2),
    integers as long long. The output (the third argument of every kernel) is reset to NaN before
    each thread, to check that every element is written by exactly one thread.
    """
    grid, block = launch
    kernel = getattr(lib, name)
    kernel.restype = None
    out = args[2]
    assert all(a.flags.c_contiguous for a in args if isinstance(a, np.ndarray))
    cargs = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray) else ctypes.c_longlong(a) for a in args]
    result, writers = np.full_like(out, np.nan), np.zeros(out.shape, dtype=int)
    n_blocks, n_threads = int(np.prod(grid)), int(np.prod(block))
    for t in np.random.default_rng(0).permutation(n_blocks * n_threads):  # threads are independent: any order
        out.fill(np.nan)
        block_idx = np.unravel_index(t // n_threads, grid[::-1])[::-1]  # x varies fastest, as on the GPU
        thread_idx = np.unravel_index(t % n_threads, block[::-1])[::-1]
        lib.cusim_shim_set_thread(*grid, *block, *map(int, block_idx), *map(int, thread_idx))
        kernel(*cargs)
        written = ~np.isnan(out)
        writers += written
        result[written] = out[written]
    assert writers.min() == 1 and writers.max() == 1, "an output element is written by no thread or by several"
    out[...] = result


def _complex(rng, shape, dtype):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


def _kernel_inputs(name: str, case: tuple, precision: str, seed: int):
    """Kernel ``name`` on ``case``: its array inputs, its output buffer (NaN: "uninitialised", so every element,
    the zero margin included, must be written), its integer arguments and its NumPy twin's result. The inputs are
    arbitrary (the transfers need not be Hermitian): the kernel must equal its twin on any input."""
    H, W, s, off, Hp, Wp = case
    real, cplx, _ = PRECISIONS[precision]
    rng = np.random.default_rng(seed)
    N, hp, wp = B * K, Hp // s, Wp // s
    if name == "pattern_multiply_pad":
        x, pat = rng.standard_normal((B, H, W)).astype(real), rng.random((K, H, W)).astype(real)
        want = _twins.pattern_multiply_pad(x, pat, (Hp, Wp), off)
        return (x, pat), (B, K, Hp, Wp), real, (B, K, H, W, Hp, Wp, off), want
    if name == "pattern_multiply_sum":
        w, pat = rng.standard_normal((B, K, Hp, Wp)).astype(real), rng.random((K, H, W)).astype(real)
        return (w, pat), (B, H, W), real, (B, K, H, W, Hp, Wp, off), _twins.pattern_multiply_sum(w, pat, off)
    if name == "fold_transfer":
        U, T = _complex(rng, (N, Hp, Wp // 2 + 1), cplx), _complex(rng, (Hp, Wp // 2 + 1), cplx)
        return (U, T), (N, hp, wp // 2 + 1), cplx, (N, Hp, Wp, s), _twins.fold_transfer(U, T, s, (Hp, Wp))
    R, Tc = _complex(rng, (N, hp, wp // 2 + 1), cplx), _complex(rng, (Hp, Wp // 2 + 1), cplx)
    return (R, Tc), (N, Hp, Wp // 2 + 1), cplx, (N, Hp, Wp, s), _twins.unfold_transfer(R, Tc, s, (Hp, Wp))


def _check_on_host(lib, name: str, case: tuple, launch, precision: str, seed: int) -> None:
    inputs, shape, dtype, sizes, want = _kernel_inputs(name, case, precision, seed)
    out = np.full(shape, np.nan, dtype=dtype)
    launch_on_host(lib, f"{name}_{precision}", launch, *inputs, out, *sizes)
    assert_matches_twin(out, want, PRECISIONS[precision][2])


@host_cases
@host_launches
@precisions
def test_pattern_multiply_pad_on_host_matches_twin_including_zero_margin(host_kernels, case, launch, precision):
    _check_on_host(host_kernels, "pattern_multiply_pad", case, launch, precision, seed=1)


@host_cases
@host_launches
@precisions
def test_pattern_multiply_sum_on_host_matches_twin(host_kernels, case, launch, precision):
    _check_on_host(host_kernels, "pattern_multiply_sum", case, launch, precision, seed=2)


@host_cases
@host_launches
@precisions
def test_fold_transfer_on_host_matches_twin_with_hermitian_mirror(host_kernels, case, launch, precision):
    _check_on_host(host_kernels, "fold_transfer", case, launch, precision, seed=3)


@host_cases
@host_launches
@precisions
def test_unfold_transfer_on_host_matches_twin_with_hermitian_mirror(host_kernels, case, launch, precision):
    _check_on_host(host_kernels, "unfold_transfer", case, launch, precision, seed=4)


@pytest.mark.parametrize("name", ["pattern_multiply_pad", "pattern_multiply_sum", "fold_transfer", "unfold_transfer"])
def test_kernels_on_host_match_twins_under_the_wrappers_own_launch_shape(host_kernels, name):
    """The block and grid shapes cusim._kernels launches on a GPU (there with the cap of 8 blocks per SM;
    here a cap of 3 blocks, so the loops of the 256-thread blocks must still cover every plane and row)."""
    _, shape, _, _, _ = _kernel_inputs(name, CASES[2], "f32", seed=7)
    grid = _kernels.launch_grid((int(np.prod(shape[:-2])), *shape[-2:]), cap=3)
    assert np.prod(grid) <= 3
    _check_on_host(host_kernels, name, CASES[2], (grid, _kernels._BLOCK), "f32", seed=7)


@pytest.mark.parametrize("shape", [(1, 1, 1), (9, 120, 61), (18, 544, 273), (9, 2080, 2080), (70000, 3, 3),
                                   (1, 100000, 40)])
@pytest.mark.parametrize("cap", [1, 7, 1056])
def test_launch_grid_stays_within_the_cap_and_cudas_limits_and_never_exceeds_the_work(shape, cap):
    planes, rows, cols = shape
    bx, by, bz = _kernels._BLOCK
    gx, gy, gz = _kernels.launch_grid(shape, cap)
    assert 1 <= gx * gy * gz <= cap and gy <= 65535 and gz <= 65535
    # no block is wholly idle: each axis has at most as many blocks as it needs to cover its extent once
    assert gx <= -(-cols // bx) and gy <= -(-rows // by) and gz <= -(-planes // bz)
    # the grid fills the cap where the work allows it (one wave of blocks, as the 1-D launch did)
    assert gx * gy * gz >= min(cap, -(-cols // bx) * -(-rows // by) * planes) // 2


# ---- the Python loader, without a GPU ----------------------------------------------------------


def test_kernels_module_imports_without_cupy():
    code = "import sys; sys.modules['cupy'] = None; import cusim._kernels as k; print(len(k.KERNEL_NAMES))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "8", r.stderr


def test_kernel_wrappers_reject_unsupported_or_mixed_dtypes_before_touching_the_gpu():
    x = np.zeros((1, 4, 4), np.int32)
    with pytest.raises(ValueError, match="dtype"):
        _kernels.pattern_multiply_pad(x, x, (4, 4), 0)
    with pytest.raises(ValueError, match="dtype"):
        _kernels.fold_transfer(np.zeros((1, 4, 3), np.complex64), np.zeros((4, 3), np.complex128), 1, (4, 4))


def test_kernel_source_dir_holds_the_kernel_and_its_header():
    assert (KERNELS / "sim_ops.cu").is_file() and (KERNELS / "cusim_complex.cuh").is_file()


# ---- on a GPU -------------------------------------------------------------------------------------


@pytest.mark.gpu
@precisions
@pytest.mark.parametrize("cap", [None, 5], ids=["one-wave", "cap5"])
def test_gpu_kernels_match_twins_at_480x480_upsample4_nine_frames(precision, cap, monkeypatch):
    """At the launch shape of the wrappers (one wave of blocks), and with 5 blocks in all, so every thread
    runs many turns of all three grid-stride loops on the GPU too."""
    import cupy  # noqa: PLC0415

    if cap is not None:
        monkeypatch.setattr(_kernels, "_grid_cap", lambda device_id: cap)

    real, cplx, rtol = PRECISIONS[precision]
    H = W = 480
    s, off, Hp, Wp, Kr = 4, 32, 544, 544, 9
    N, hp, wp = B * Kr, Hp // s, Wp // s
    rng = np.random.default_rng(5)
    x = rng.standard_normal((B, H, W)).astype(real)
    pat = rng.random((Kr, H, W)).astype(real)
    w = rng.standard_normal((B, Kr, Hp, Wp)).astype(real)
    U = _complex(rng, (N, Hp, Wp // 2 + 1), cplx)
    T = _complex(rng, (Hp, Wp // 2 + 1), cplx)
    R = _complex(rng, (N, hp, wp // 2 + 1), cplx)
    g = cupy.asarray
    assert_matches_twin(_kernels.pattern_multiply_pad(g(x), g(pat), (Hp, Wp), off).get(),
                        _twins.pattern_multiply_pad(x, pat, (Hp, Wp), off), rtol)
    assert_matches_twin(_kernels.pattern_multiply_sum(g(w), g(pat), off).get(),
                        _twins.pattern_multiply_sum(w, pat, off), rtol)
    assert_matches_twin(_kernels.fold_transfer(g(U), g(T), s, (Hp, Wp)).get(),
                        _twins.fold_transfer(U, T, s, (Hp, Wp)), rtol)
    assert_matches_twin(_kernels.unfold_transfer(g(R), g(T), s, (Hp, Wp)).get(),
                        _twins.unfold_transfer(R, T, s, (Hp, Wp)), rtol)


def _sim_patterns(H: int, W: int) -> np.ndarray:
    """Nine 1 + cos stripe patterns: three angles times three phases."""
    yy, xx = np.mgrid[:H, :W]
    return np.stack([1 + np.cos(2 * np.pi * 0.18 * (xx * np.cos(a) + yy * np.sin(a)) + p)
                     for a in np.pi * np.arange(3) / 3 for p in 2 * np.pi * np.arange(3) / 3])


@pytest.mark.gpu
@pytest.mark.parametrize("pad,margin", [(0, 0), (24, 0), (24, 6)])
@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-5), ("float64", 1e-10)])
def test_gpu_operator_forward_and_adjoint_match_cpu_operator(pad, margin, dtype, rtol):
    import cupy  # noqa: PLC0415

    from cusim import SIMOperator  # noqa: PLC0415
    from cusim.optics import gaussian_psf  # noqa: PLC0415

    patterns, psf = _sim_patterns(480, 480), gaussian_psf(2.5)
    cpu = SIMOperator(patterns, psf, 4, pad_fine=pad, margin_camera=margin, device="cpu", dtype=dtype)
    gpu = SIMOperator(patterns, psf, 4, pad_fine=pad, margin_camera=margin, device="cuda", dtype=dtype)
    rng = np.random.default_rng(6)
    x = rng.random((2, 480, 480)).astype(dtype)
    y = rng.random((2, 9, 120 - 2 * margin, 120 - 2 * margin)).astype(dtype)
    for got, want in ((gpu.forward(cupy.asarray(x)).get(), cpu.forward(x)),
                      (gpu.adjoint(cupy.asarray(y)).get(), cpu.adjoint(y))):
        assert got.shape == want.shape
        assert np.linalg.norm(got - want) <= rtol * np.linalg.norm(want)
