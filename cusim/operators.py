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

import dataclasses
import math
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import scipy.fft

from . import _twins
from ._syserrors import check_allocation
from ._threads import threads
from ._validate import check_choice, check_int, check_number, check_positive
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
    # derived camera-grid sizes: object (h, w), field (fh, fw), padded (hp, wp), pad in camera px (offc)
    h: int = dataclasses.field(init=False)
    w: int = dataclasses.field(init=False)
    fh: int = dataclasses.field(init=False)
    fw: int = dataclasses.field(init=False)
    hp: int = dataclasses.field(init=False)
    wp: int = dataclasses.field(init=False)
    offc: int = dataclasses.field(init=False)

    def __post_init__(self):
        s, m = self.s, self.margin
        derived = {"h": self.H // s, "w": self.W // s, "fh": self.H // s - 2 * m, "fw": self.W // s - 2 * m,
                   "hp": self.Hp // s, "wp": self.Wp // s, "offc": self.off // s}
        for name, value in derived.items():
            object.__setattr__(self, name, value)


def _geometry(K: int, H: int, W: int, s: int, pad_fine: int, margin_camera: int = 0) -> Geometry:
    if pad_fine == 0:
        return Geometry(K, H, W, s, 0, H, W, margin_camera)
    offc = -(-pad_fine // s)  # the zero margin in camera pixels, rounded up so that crops commute with binning
    hp = scipy.fft.next_fast_len(H // s + 2 * offc, real=True)
    wp = scipy.fft.next_fast_len(W // s + 2 * offc, real=True)
    return Geometry(K, H, W, s, offc * s, hp * s, wp * s, margin_camera)


def _box_factor(n: int, s: int) -> np.ndarray:
    """Fourier factor of the s-pixel block mean anchored at 0: ``(1/s) sum_a exp(2 pi i f a / n)``."""
    f = np.fft.fftfreq(n) * n
    a = np.arange(s)
    return np.exp(2j * np.pi * np.outer(f, a) / n).mean(axis=1)


def _validate_patterns(patterns, s: int) -> np.ndarray:
    xp = get_xp(patterns)
    if xp is np and not isinstance(patterns, np.ndarray):  # a nested list, as the PSF may be
        patterns = np.asarray(patterns)
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
    pad_fine : int
        Zero margin in FINE pixels against wrap-around of non-periodic fields (rounded up to a
        multiple of ``upsample``, and the padded grid to an FFT-friendly size); 0 = periodic model.
        ``pad=`` is its deprecated old name (one release; DeprecationWarning).
    margin_camera : int
        CAMERA pixels by which the object (and the patterns) extend past the frames' field on each
        side: the frames are the central ``(H / s - 2 m, W / s - 2 m)`` window of the model's
        output, so light that structure just outside the field blurs into it is modelled (a crop of a
        larger field; real data, where the sample goes on). 0: the object fills the field.
    device : "auto" | "cpu" | "cuda"
    dtype : "float32" | "float64"

    Shapes as SciPy and PyLops give them: ``forward`` maps ``input_shape`` (H, W) to ``output_shape``
    (K, h, w), ``(h, w) = camera_shape`` (the field), with an optional batch axis in front;
    ``adjoint`` the reverse. ``pad_fine`` (the zero margin used, a multiple of ``upsample``) and
    ``margin_camera`` are attributes too.
    The operator is immutable: new patterns mean a new operator (construction is cheap).
    """

    def __init__(self, patterns, psf, upsample: int, *, pad_fine: int = 0, margin_camera: int = 0,
                 device: str = "auto", dtype: str = "float32", pad: int | None = None):
        if pad is not None:
            warnings.warn("pad= is deprecated; use pad_fine=", DeprecationWarning, stacklevel=2)
            if pad_fine:
                raise ValueError(f"pad: deprecated name of pad_fine; give pad_fine only (got pad={pad!r}, "
                                 f"pad_fine={pad_fine!r})")
            pad_fine = pad
        s = check_int("upsample", upsample, 1, 8)
        pad_fine = check_int("pad_fine", pad_fine, 0)
        margin = check_int("margin_camera", margin_camera, 0)
        try:  # "float32", np.float32 or np.dtype("float32"); None is no dtype (np.dtype(None) is float64)
            name = np.dtype(dtype).name if dtype is not None else "None"
        except TypeError:
            name = str(dtype)
        rdt, cdt = _DTYPES[check_choice("dtype", name, tuple(_DTYPES))]
        self.dtype = np.dtype(rdt)
        patterns = _validate_patterns(patterns, s)
        K, H, W = patterns.shape
        if 2 * margin >= min(H, W) // s:
            raise ValueError(f"margin_camera: {margin} camera pixels on each side leaves no field of the "
                             f"{H // s}x{W // s} camera grid of patterns of shape {patterns.shape}")
        geo = _geometry(K, H, W, s, pad_fine, margin)
        grid = f"SIMOperator: the padded {geo.Hp}x{geo.Wp} fine grid"
        check_allocation(64 * geo.Hp * geo.Wp, f"{grid} (its transfer function)")  # complex128 planes on the host
        if isinstance(psf, Widefield):
            otf = psf.otf((geo.Hp, geo.Wp), s)
        else:
            psf_host = psf.get() if get_xp(psf) is not np else psf
            otf = psf_to_otf(psf_host, (geo.Hp, geo.Wp))
        self.device = resolve_device(device)  # after validating everything else, so errors come first
        if self.device == "cpu":  # a forward pass holds K padded real planes and their complex spectra
            check_allocation(2 * K * geo.Hp * geo.Wp * self.dtype.itemsize, f"{grid} with {K} frames")
        xp = xp_for(self.device)
        box = np.outer(_box_factor(geo.Hp, s), _box_factor(geo.Wp, s))
        transfer = (otf * box)[:, : geo.Wp // 2 + 1]
        self.geometry = geo
        self.upsample = s
        self.pad_fine = geo.off
        self.margin_camera = margin
        self.K = K
        self.input_shape = (H, W)
        self.camera_shape = (geo.fh, geo.fw)
        self.output_shape = (K, geo.fh, geo.fw)
        self._xp = xp
        self._rdt, self._cdt = rdt, cdt
        # its own copy: the operator is immutable, and a view of the caller's array followed the caller's edits
        # (its cached norm_estimate going stale)
        self.patterns = xp.array(patterns, dtype=rdt, order="C", copy=True)
        # Forward: fold with T / s^2 (the decimation); adjoint: unfold with s^2 conj(T) / s^2.
        self._T = xp.asarray(transfer / s**2, dtype=cdt)
        self._Tadj = xp.asarray(np.conj(transfer), dtype=cdt)
        self._norms = {}
        self._ops = _cpu_engine() if xp is np else _gpu_engine()

    # -- shapes -------------------------------------------------------------------------------
    def _check_input(self, a, name: str, tail: tuple[int, ...]):
        if get_xp(a) is not self._xp:
            have = "a CuPy" if get_xp(a) is not np else "a NumPy"
            want = "cupy arrays (cupy.asarray)" if self.device == "cuda" else "NumPy arrays (.get())"
            raise ValueError(f"{name}: is {have} array but the operator lives on {self.device}; pass {want}")
        if self._xp is np and not isinstance(a, np.ndarray):  # a list or a number
            a = np.asarray(a)
        shape = tuple(a.shape)
        if shape[-len(tail):] != tail or a.ndim not in (len(tail), len(tail) + 1):
            raise ValueError(f"{name}: expected shape {tail} or (B, *{tail}), got {shape}")
        if a.ndim == len(tail) + 1 and shape[0] == 0:
            raise ValueError(f"{name}: an empty batch (B = 0, shape {shape}); expected at least one")
        if self._xp.iscomplexobj(a) or not (self._xp.issubdtype(a.dtype, self._xp.number) or a.dtype == bool):
            raise ValueError(f"{name}: expected real numbers, got dtype {a.dtype}")
        a = self._xp.ascontiguousarray(a, dtype=self._rdt)
        return a if a.ndim == len(tail) + 1 else a[None], a.ndim == len(tail)

    # -- the operator -------------------------------------------------------------------------
    def passes(self, which: str, batch: int = 1) -> list[tuple[str, object]]:
        """The forward (``which="forward"``) or adjoint operator as its passes over memory, in order: pairs
        (name, function of the previous pass's output) for ``batch`` images. The first takes a contiguous
        (batch, H, W) object (forward) or (batch, K, fh, fw) stack (adjoint) in the operator's dtype; the last
        returns (batch, K, fh, fw) frames or (batch, H, W) images. :meth:`forward` and :meth:`adjoint` run
        them; ``benchmarks/bench_operators.py`` times each one against the bytes it moves."""
        g, ops, xp, B = self.geometry, self._ops, self._xp, batch
        r0, cropped = g.offc + g.margin, bool(g.off or g.margin)
        if which == "forward":
            run = [("fwd pattern_multiply_pad", lambda x3: ops.pattern_multiply_pad(x3, self.patterns, (g.Hp, g.Wp),
                                                                                    g.off)),
                   ("fwd rfft2 (fine)", lambda u: ops.rfft2(u.reshape(B * g.K, g.Hp, g.Wp))),
                   ("fwd fold_transfer", lambda U: ops.fold_transfer(U, self._T, g.s, (g.Hp, g.Wp))),
                   ("fwd irfft2 (camera)", lambda Y: ops.irfft2(Y, (g.hp, g.wp)).reshape(B, g.K, g.hp, g.wp))]
            if cropped:
                run.append(("fwd crop", lambda z: xp.ascontiguousarray(z[:, :, r0 : r0 + g.fh, r0 : r0 + g.fw])))
            return run
        if which != "adjoint":
            raise ValueError(f"passes: which must be 'forward' or 'adjoint', got {which!r}")

        def zero_pad(y4):
            yp = xp.zeros((B, g.K, g.hp, g.wp), dtype=self._rdt)
            yp[:, :, r0 : r0 + g.fh, r0 : r0 + g.fw] = y4
            return yp

        return [*([("adj zero-pad", zero_pad)] if cropped else []),
                ("adj rfft2 (camera)", lambda yp: ops.rfft2(yp.reshape(B * g.K, g.hp, g.wp))),
                ("adj unfold_transfer", lambda R: ops.unfold_transfer(R, self._Tadj, g.s, (g.Hp, g.Wp))),
                ("adj irfft2 (fine)", lambda V: ops.irfft2(V, (g.Hp, g.Wp)).reshape(B, g.K, g.Hp, g.Wp)),
                ("adj pattern_multiply_sum", lambda w: ops.pattern_multiply_sum(w, self.patterns, g.off))]

    def forward(self, x):
        """Noise-free camera frames ``A x``: (H, W) -> (K, h, w), or (B, H, W) -> (B, K, h, w)."""
        y, single = self._check_input(x, "x", self.input_shape)
        for _, run in self.passes("forward", y.shape[0]):
            y = run(y)
        return y[0] if single else y

    def adjoint(self, y):
        """``A^T y``: (K, h, w) -> (H, W), or (B, K, h, w) -> (B, H, W)."""
        x, single = self._check_input(y, "y", self.output_shape)
        for _, run in self.passes("adjoint", x.shape[0]):
            x = run(x)
        return x[0] if single else x

    def normal(self, x):
        """``A^T A x``."""
        return self.adjoint(self.forward(x))

    __call__ = forward

    @property
    def field(self) -> tuple[slice, slice]:
        """Slices of the object grid ``input_shape`` that the frames' field covers (all of it without a margin)."""
        e = self.margin_camera * self.upsample
        return slice(e, self.input_shape[0] - e), slice(e, self.input_shape[1] - e)

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
        """Spectral norm ``||A||_2`` by :func:`power_norm` (cached per setting; seeded, deterministic).

        ``norm_estimate() ** 2`` is the Lipschitz constant of the gradient of ``||A x - y||^2 / 2``.
        """
        key = (n_iter, seed, rtol)
        if key not in self._norms:
            self._norms[key] = power_norm(self, self.input_shape, n_iter=n_iter, rtol=rtol, seed=seed)
        return self._norms[key]

    def __repr__(self) -> str:
        g = self.geometry
        field = f", margin_camera={g.margin}" if g.margin else ""
        return (f"SIMOperator(K={g.K}, fine={g.H}x{g.W}, camera={g.fh}x{g.fw}, upsample={g.s}, "
                f"pad_fine={g.off}{field}, device={self.device!r}, dtype={self.dtype.name!r})")


def _array_module(op):
    """NumPy, or CuPy for an operator whose ``device`` is ``"cuda"`` (public attributes only)."""
    return xp_for("cuda") if getattr(op, "device", "cpu") == "cuda" else np


def _random(xp, rng, shape, dtype, kind: str):
    a = rng.standard_normal(shape) if kind == "normal" else rng.random(shape)
    return xp.asarray(a, dtype=dtype)


def dottest(op, *, rtol: float | None = None, raise_error: bool = False, batch: int | None = None, seed: int = 0,
            dtype=None) -> float:
    """Scale-free adjoint test of any linear operator: ``|<A x, r> - <x, A^T r>| / (||A x|| ||r||)``.

    Parameters
    ----------
    op : operator
        Anything with ``forward``, ``adjoint`` and ``input_shape``. Arrays are CuPy when ``op.device``
        is ``"cuda"``, else NumPy.
    rtol : float, optional
        Tolerance of ``raise_error``; default that of DESIGN section 1, 1e-12 in float64 and 1e-5 otherwise, for
        the lower of the vectors' and the operator's precisions (a float32 operator computes in float32
        whatever the vectors).
    raise_error : bool
        Raise :class:`AssertionError` (naming the error and ``rtol``) when the error exceeds ``rtol``.
    batch : int, optional
        Test with a batch axis of this length in front of ``input_shape``.
    seed : int
        Seed of the standard normal ``x`` and ``r``.
    dtype : optional
        Precision of ``x`` and ``r``; default ``op.dtype``, or float64 for an operator without one.

    Returns
    -------
    float
        The relative error (inner products in float64); 0 for an exact adjoint up to rounding.
    """
    seed = check_int("seed", seed, 0)
    lead = () if batch is None else (check_int("batch", batch, 1),)
    dt = np.dtype(dtype if dtype is not None else getattr(op, "dtype", np.float64))
    exact = dt == np.float64 and np.dtype(getattr(op, "dtype", np.float64)) == np.float64
    rtol = (1e-12 if exact else 1e-5) if rtol is None else check_positive("rtol", rtol)
    xp, rng = _array_module(op), np.random.default_rng(seed)
    x = _random(xp, rng, lead + tuple(op.input_shape), dt, "normal")
    Ax = op.forward(x)
    r = _random(xp, rng, Ax.shape, dt, "normal")
    ATr = op.adjoint(r)
    Ax, r, x, ATr = (a.astype(np.float64).ravel() for a in (Ax, r, x, ATr))
    diff = abs(float(xp.vdot(Ax, r)) - float(xp.vdot(x, ATr)))
    scale = float(xp.linalg.norm(Ax)) * float(xp.linalg.norm(r))
    err = diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)
    if raise_error and not err <= rtol:
        raise AssertionError(f"dottest: relative error {err:.3g} of <A x, r> against <x, A^T r> exceeds "
                             f"rtol {rtol:g} ({dt.name}); the adjoint does not match the forward model")
    return err


def power_norm(op, like, *, n_iter: int = 50, rtol: float = 1e-6, seed: int = 0) -> float:
    """Spectral norm ``||A||_2`` of any linear operator by a seeded power iteration on ``A^T A``.

    ``like`` is an array on the input grid (its shape, array module and dtype are used) or the input
    shape (array module as in :func:`dottest`, dtype ``op.dtype`` or float64). From a seeded uniform
    random unit ``v``, ``v <- A^T A v / ||A^T A v||`` until ``||A^T A v||`` changes by at most ``rtol``
    (relative) or ``n_iter`` steps ran; returns its square root, which approaches ``||A||_2`` from below.
    """
    n_iter, seed = check_int("n_iter", n_iter, 1), check_int("seed", seed, 0)
    rtol = check_number("rtol", rtol, lo=0.0)
    if isinstance(like, (tuple, list)):
        xp, shape, dt = _array_module(op), tuple(like), np.dtype(getattr(op, "dtype", np.float64))
    else:
        xp, shape, dt = get_xp(like), like.shape, like.dtype
    v = _random(xp, np.random.default_rng(seed), shape, dt, "uniform")
    v /= xp.linalg.norm(v)
    lam = 0.0
    for _ in range(n_iter):
        u = op.adjoint(op.forward(v))
        lam_new = float(xp.linalg.norm(u))
        if lam_new == 0.0:
            return 0.0
        v = u / lam_new
        done = abs(lam_new - lam) <= rtol * lam_new
        lam = lam_new
        if done:
            break
    return math.sqrt(lam)


_PRIMITIVES = ("pattern_multiply_pad", "pattern_multiply_sum", "fold_transfer", "unfold_transfer")


def _engine(primitives, rfft2, irfft2) -> SimpleNamespace:
    """The four fused primitives of ``primitives`` (the NumPy twins or the CUDA kernels) and the FFTs."""
    return SimpleNamespace(**{name: getattr(primitives, name) for name in _PRIMITIVES}, rfft2=rfft2, irfft2=irfft2)


def _cpu_engine() -> SimpleNamespace:
    # scipy.fft's workers follow cusim's thread setting (cusim._threads), read at every call
    return _engine(_twins, lambda a: scipy.fft.rfft2(a, workers=threads()),
                   lambda a, s: scipy.fft.irfft2(a, s=s, workers=threads()))


def _gpu_engine() -> SimpleNamespace:
    import cupy  # noqa: PLC0415

    from . import _kernels  # noqa: PLC0415

    return _engine(_kernels, cupy.fft.rfft2, lambda a, s: cupy.fft.irfft2(a, s=s))
