"""The SIM forward model and its exact adjoint (DESIGN section 1).

``A x = ( D_s[ h (*) (I_k . x) ] )_k``: multiply by each pattern, convolve with the PSF, average over
s x s blocks. The convolution and the block mean are one transfer function ``T = OTF . BOX`` in
Fourier space, and the block decimation is a FOLD of the fine spectrum into the camera spectrum, so
the forward model runs its inverse FFTs on the small camera grid and the adjoint UNFOLDs.

The arithmetic lives in four primitives (pattern-multiply-pad, fold, unfold, pattern-multiply-sum)
with one NumPy implementation (:mod:`cusim._twins`) and one CUDA implementation (:mod:`cusim._kernels`);
this module owns the precomputed state and the FFTs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import scipy.fft

from . import _twins
from .backend import get_xp, resolve_device, xp_for
from .optics import Widefield, psf_to_otf

_DTYPES = {"float32": (np.float32, np.complex64), "float64": (np.float64, np.complex128)}
# A pattern value below -tol * max|pattern| is an error; above it, rounding noise of 1 + cos at its zero.
_NEGATIVE_PATTERN_TOL = 1e-6


@dataclass(frozen=True)
class Geometry:
    """Grid sizes of one operator. ``off`` is the zero margin (fine pixels, a multiple of ``s``);
    ``margin`` the camera pixels by which the object grid (H, W) extends past the frames' field on each
    side (the field is the central ``fh`` x ``fw`` camera window)."""

    K: int
    H: int
    W: int
    s: int
    off: int
    Hp: int
    Wp: int
    margin: int = 0

    @property
    def h(self) -> int:
        return self.H // self.s

    @property
    def w(self) -> int:
        return self.W // self.s

    @property
    def fh(self) -> int:
        return self.h - 2 * self.margin

    @property
    def fw(self) -> int:
        return self.w - 2 * self.margin

    @property
    def hp(self) -> int:
        return self.Hp // self.s

    @property
    def wp(self) -> int:
        return self.Wp // self.s

    @property
    def offc(self) -> int:
        return self.off // self.s


def _geometry(K: int, H: int, W: int, s: int, pad: int, margin: int = 0) -> Geometry:
    if pad == 0:
        return Geometry(K, H, W, s, 0, H, W, margin)
    offc = -(-pad // s)  # the margin in camera pixels, rounded up so that crops commute with binning
    hp = scipy.fft.next_fast_len(H // s + 2 * offc, real=True)
    wp = scipy.fft.next_fast_len(W // s + 2 * offc, real=True)
    return Geometry(K, H, W, s, offc * s, hp * s, wp * s, margin)


def _box_factor(n: int, s: int) -> np.ndarray:
    """Fourier factor of the s-pixel block mean anchored at 0: ``(1/s) sum_a exp(2 pi i f a / n)``."""
    f = np.fft.fftfreq(n) * n
    a = np.arange(s)
    return np.exp(2j * np.pi * np.outer(f, a) / n).mean(axis=1)


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}: expected an integer {rng}, got {value}")
    return int(value)


def _validate_patterns(patterns, s: int) -> np.ndarray:
    xp = get_xp(patterns)
    shape = tuple(getattr(patterns, "shape", ()))
    if len(shape) != 3 or 0 in shape:
        raise ValueError(f"patterns: expected a non-empty array of shape (K, H, W), got shape {shape}")
    K, H, W = shape
    if H % s or W % s:
        raise ValueError(
            f"patterns: expected H and W divisible by upsample={s} (H = upsample * h), got shape {shape}"
        )
    if not np.issubdtype(patterns.dtype, np.number) or np.iscomplexobj(patterns):
        raise ValueError(f"patterns: expected real numbers, got dtype {patterns.dtype}")
    if not bool(xp.isfinite(patterns).all()):
        raise ValueError("patterns: contains NaN or Inf")
    lo, hi = float(patterns.min()), float(abs(patterns).max())
    if lo < -_NEGATIVE_PATTERN_TOL * max(hi, 1e-30):
        raise ValueError(f"patterns: illumination must be non-negative, minimum is {lo:.3g}")
    return patterns


class SIMOperator:
    """Linear SIM forward model ``A`` on NumPy (CPU) or CuPy (GPU) arrays, with its exact adjoint.

    Parameters
    ----------
    patterns : array (K, H, W)
        Illumination of each frame on the fine grid of the object, non-negative.
    psf : array (p, q) with odd sides, or :class:`cusim.optics.Widefield`
        PSF on the fine grid (normalised to unit sum here) or ideal optics (analytic OTF).
    upsample : int
        Fine-to-camera factor ``s`` (1..8): the camera grid is (H / s, W / s).
    pad : int
        Zero margin in fine pixels against wrap-around of non-periodic fields (rounded up to a
        multiple of ``upsample``, and the padded grid to an FFT-friendly size); 0 = periodic model.
    margin : int
        Camera pixels by which the object (and the patterns) extend past the frames' field on each
        side: the frames are the central ``(H / s - 2 margin, W / s - 2 margin)`` window of the model's
        output, so light that structure just outside the field blurs into it is modelled (a crop of a
        larger field; real data, where the sample goes on). 0: the object fills the field.
    device : "auto" | "cpu" | "cuda"
    dtype : "float32" | "float64"

    ``forward`` maps (H, W) or (B, H, W) to (K, h, w) or (B, K, h, w), ``(h, w) = camera_shape`` (the
    field); ``adjoint`` the reverse.
    The operator is immutable: new patterns mean a new operator (construction is cheap).
    """

    def __init__(self, patterns, psf, upsample: int, *, pad: int = 0, margin: int = 0, device: str = "auto",
                 dtype: str = "float32"):
        s = _check_int("upsample", upsample, 1, 8)
        pad = _check_int("pad", pad, 0)
        margin = _check_int("margin", margin, 0)
        if str(dtype) not in _DTYPES:
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
        self.dtype = np.dtype(str(dtype))
        rdt, cdt = _DTYPES[str(dtype)]
        _validate_patterns(patterns, s)
        K, H, W = patterns.shape
        if 2 * margin >= min(H, W) // s:
            raise ValueError(f"margin: {margin} camera pixels on each side leaves no field of the {H // s}x{W // s} "
                             f"camera grid of patterns of shape {patterns.shape}")
        geo = _geometry(K, H, W, s, pad, margin)
        if isinstance(psf, Widefield):
            otf = psf.otf((geo.Hp, geo.Wp), s)
        else:
            psf_host = psf.get() if get_xp(psf) is not np else psf
            otf = psf_to_otf(psf_host, (geo.Hp, geo.Wp))
        self.device = resolve_device(device)  # after validating everything else, so errors come first
        xp = xp_for(self.device)
        box = np.outer(_box_factor(geo.Hp, s), _box_factor(geo.Wp, s))
        transfer = (otf * box)[:, : geo.Wp // 2 + 1]
        self.geometry = geo
        self.upsample = s
        self.pad = geo.off
        self.margin = margin
        self.K = K
        self.shape = (H, W)
        self.camera_shape = (geo.fh, geo.fw)
        self._xp = xp
        self._rdt, self._cdt = rdt, cdt
        self.patterns = xp.ascontiguousarray(xp.asarray(patterns, dtype=rdt))
        # Forward: fold with T / s^2 (the decimation); adjoint: unfold with s^2 conj(T) / s^2.
        self._T = xp.asarray(transfer / s**2, dtype=cdt)
        self._Tadj = xp.asarray(np.conj(transfer), dtype=cdt)
        self._norm = None
        self._ops = _cpu_engine() if xp is np else _gpu_engine()

    # -- shapes -------------------------------------------------------------------------------
    def _check_input(self, a, name: str, tail: tuple[int, ...]):
        if get_xp(a) is not self._xp:
            have = "a CuPy" if get_xp(a) is not np else "a NumPy"
            want = "cupy arrays (cupy.asarray)" if self.device == "cuda" else "NumPy arrays (.get())"
            raise ValueError(f"{name}: is {have} array but the operator lives on {self.device}; pass {want}")
        shape = tuple(a.shape)
        if shape[-len(tail):] != tail or a.ndim not in (len(tail), len(tail) + 1):
            raise ValueError(f"{name}: expected shape {tail} or (B, *{tail}), got {shape}")
        a = self._xp.ascontiguousarray(a, dtype=self._rdt)
        return a if a.ndim == len(tail) + 1 else a[None], a.ndim == len(tail)

    # -- the operator -------------------------------------------------------------------------
    def forward(self, x):
        """Noise-free camera frames ``A x``: (H, W) -> (K, h, w), or (B, H, W) -> (B, K, h, w)."""
        g = self.geometry
        x3, single = self._check_input(x, "x", self.shape)
        ops = self._ops
        B = x3.shape[0]
        u = ops.pattern_multiply_pad(x3, self.patterns, (g.Hp, g.Wp), g.off)
        U = ops.rfft2(u.reshape(B * g.K, g.Hp, g.Wp))
        Y = ops.fold_transfer(U, self._T, g.s, (g.Hp, g.Wp))
        z = ops.irfft2(Y, (g.hp, g.wp))
        r0 = g.offc + g.margin
        y = z.reshape(B, g.K, g.hp, g.wp)[:, :, r0 : r0 + g.fh, r0 : r0 + g.fw]
        y = self._xp.ascontiguousarray(y)
        return y[0] if single else y

    def adjoint(self, y):
        """``A^T y``: (K, h, w) -> (H, W), or (B, K, h, w) -> (B, H, W)."""
        g = self.geometry
        y4, single = self._check_input(y, "y", (g.K, g.fh, g.fw))
        ops, xp = self._ops, self._xp
        B = y4.shape[0]
        if g.off or g.margin:
            r0 = g.offc + g.margin
            yp = xp.zeros((B, g.K, g.hp, g.wp), dtype=self._rdt)
            yp[:, :, r0 : r0 + g.fh, r0 : r0 + g.fw] = y4
        else:
            yp = y4
        R = ops.rfft2(yp.reshape(B * g.K, g.hp, g.wp))
        V = ops.unfold_transfer(R, self._Tadj, g.s, (g.Hp, g.Wp))
        w = ops.irfft2(V, (g.Hp, g.Wp)).reshape(B, g.K, g.Hp, g.Wp)
        x = ops.pattern_multiply_sum(w, self.patterns, g.off)
        return x[0] if single else x

    def normal(self, x):
        """``A^T A x``."""
        return self.adjoint(self.forward(x))

    __call__ = forward

    @property
    def field(self) -> tuple[slice, slice]:
        """Slices of the object grid ``shape`` that the frames' field covers (all of it without a margin)."""
        e = self.margin * self.upsample
        return slice(e, self.shape[0] - e), slice(e, self.shape[1] - e)

    def passband(self, rel: float = 1e-3) -> np.ndarray:
        """Boolean ``camera_shape`` mask in ``fft2`` layout of the camera frequencies the model can reach.

        A camera frequency is in the passband when the transfer function, summed in magnitude over
        the fine-grid tiles that fold onto it, exceeds ``rel`` times its maximum. Outside it, raw
        frames hold nothing but noise (used to estimate the noise level).
        """
        g = self.geometry
        T = self._T.get() if self._xp is not np else self._T
        mag = np.abs(T)[None].astype(np.complex128)  # fold magnitudes: no cancellation between tiles
        folded = np.abs(_twins.fold_transfer(mag, np.ones_like(mag[0]), g.s, (g.Hp, g.Wp))[0])
        full = np.zeros((g.hp, g.wp))
        full[:, : folded.shape[1]] = folded
        cols = np.arange(g.wp // 2 + 1, g.wp)  # Hermitian mirror of the half spectrum
        full[:, cols] = folded[(-np.arange(g.hp)) % g.hp][:, g.wp - cols]
        # sample on the field's camera grid by frequency
        ri = np.rint(np.fft.fftfreq(g.fh) * g.hp).astype(int) % g.hp
        ci = np.rint(np.fft.fftfreq(g.fw) * g.wp).astype(int) % g.wp
        band = full[np.ix_(ri, ci)]
        return band > rel * band.max()

    def norm_estimate(self, n_iter: int = 50, seed: int = 0, rtol: float = 1e-6) -> float:
        """Spectral norm ``||A||_2`` by power iteration on ``A^T A`` (cached; seeded, deterministic).

        ``norm_estimate() ** 2`` is the Lipschitz constant of the gradient of ``||A x - y||^2 / 2``.
        """
        if self._norm is None:
            xp = self._xp
            rng = np.random.default_rng(seed)
            v = xp.asarray(rng.random(self.shape), dtype=self._rdt)
            v /= xp.linalg.norm(v)
            lam = 0.0
            for _ in range(n_iter):
                u = self.normal(v)
                lam_new = float(xp.linalg.norm(u))
                v = u / lam_new
                if abs(lam_new - lam) <= rtol * lam_new:
                    lam = lam_new
                    break
                lam = lam_new
            self._norm = math.sqrt(lam)
        return self._norm

    def __repr__(self) -> str:
        g = self.geometry
        field = f", margin={g.margin}" if g.margin else ""
        return (f"SIMOperator(K={g.K}, fine={g.H}x{g.W}, camera={g.fh}x{g.fw}, upsample={g.s}, "
                f"pad={g.off}{field}, device={self.device!r}, dtype={self.dtype.name!r})")


def dottest(op, *, batch: int | None = None, seed: int = 0) -> float:
    """Scale-free adjoint test of any operator with ``forward``/``adjoint`` and ``shape``/``K``.

    Returns ``|<A x, r> - <x, A^T r>| / (||A x|| ||r||)`` for random ``x`` and ``r``; below ~1e-12 in
    float64 and ~1e-5 in float32 for an exact adjoint.
    """
    xp = op._xp if hasattr(op, "_xp") else np
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    x = xp.asarray(rng.standard_normal(lead + tuple(op.shape)), dtype=op.dtype)
    Ax = op.forward(x)
    r = xp.asarray(rng.standard_normal(Ax.shape), dtype=op.dtype)
    ATr = op.adjoint(r)
    lhs = float(xp.vdot(Ax.astype(np.float64).ravel(), r.astype(np.float64).ravel()))
    rhs = float(xp.vdot(x.astype(np.float64).ravel(), ATr.astype(np.float64).ravel()))
    scale = float(xp.linalg.norm(Ax.astype(np.float64))) * float(xp.linalg.norm(r.astype(np.float64)))
    return abs(lhs - rhs) / scale


_WORKERS = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _cpu_engine() -> SimpleNamespace:
    return SimpleNamespace(
        pattern_multiply_pad=_twins.pattern_multiply_pad,
        pattern_multiply_sum=_twins.pattern_multiply_sum,
        fold_transfer=_twins.fold_transfer,
        unfold_transfer=_twins.unfold_transfer,
        rfft2=lambda a: scipy.fft.rfft2(a, workers=_WORKERS),
        irfft2=lambda a, s: scipy.fft.irfft2(a, s=s, workers=_WORKERS),
    )


def _gpu_engine() -> SimpleNamespace:
    import cupy  # noqa: PLC0415

    from . import _kernels  # noqa: PLC0415

    return SimpleNamespace(
        pattern_multiply_pad=_kernels.pattern_multiply_pad,
        pattern_multiply_sum=_kernels.pattern_multiply_sum,
        fold_transfer=_kernels.fold_transfer,
        unfold_transfer=_kernels.unfold_transfer,
        rfft2=cupy.fft.rfft2,
        irfft2=lambda a, s: cupy.fft.irfft2(a, s=s),
    )
