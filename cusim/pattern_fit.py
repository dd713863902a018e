"""Sinusoidal parameters fitted to KNOWN pattern arrays (K, H, W) on the fine grid.

A stored pattern stack (e.g. the PNGs of the PINN paper, min-max scaled) is described by the
parameters of DESIGN section 2 when it is sinusoidal. Per angle (frames angle-major, counts from
:func:`cusim.patterns.angle_phase_counts`) one carrier ``k`` is the peak of the summed periodogram of
its frames, refined by Newton ascent; per frame ``a + sum_j A_j cos(j theta + psi_j)``,
``theta = 2 pi k . r``, is fitted by least squares, which gives phase, modulation and harmonics.

Whether the stack is sinusoidal at all is the relative residual of that fit
(:func:`fit_residual`): near 0 for sinusoids, large for lattices or speckle. :func:`fit_sinusoids`
fits and refuses stacks whose worst frame leaves more than :data:`MAX_FIT_RESIDUAL` of its variation.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import windows

from .optics import _mm
from .patterns import ANGLE_PHASE_DEFAULTS, SinusoidParams, angle_phase_counts

__all__ = ["MAX_FIT_RESIDUAL", "EstimationError", "fit_residual", "fit_sinusoids", "params_from_patterns"]

MAX_FIT_RESIDUAL = 0.25  # relative rms fit residual above which patterns are not "n_angles sinusoids"


class EstimationError(ValueError):
    """The illumination could not be estimated; the message says what was wrong and what was expected."""


def _stack(frames, name: str = "frames") -> np.ndarray:
    """A real, finite (K, h, w) array as float64, or :class:`EstimationError` naming ``name``."""
    a = np.asarray(frames)
    if a.ndim != 3 or min(a.shape) < 1:
        raise EstimationError(f"{name}: expected an array (K, h, w), got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise EstimationError(f"{name}: expected real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise EstimationError(f"{name}: contains NaN or Inf")
    return a


def _groups(K: int, n_angles, n_phases) -> tuple[int, int]:
    """Counts from K as :func:`~cusim.patterns.angle_phase_counts`, but each frame on its own (K x 1)
    for a K without a default."""
    if n_angles is None and n_phases is None and K not in ANGLE_PHASE_DEFAULTS:
        return K, 1
    return angle_phase_counts(K, n_angles, n_phases, error=EstimationError)


def _periodogram_peak(q: np.ndarray, k0, n_iter: int = 30) -> np.ndarray:
    """Newton ascent of ``sum_n |sum_r q_n(r) exp(-2 pi i k.r)|^2`` from ``k0`` (r the integer pixel index)."""
    n, H, W = q.shape
    y, x = np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64)
    ay, ax = -2j * np.pi * y, -2j * np.pi * x
    k = np.asarray(k0, dtype=np.float64).copy()
    max_step = 0.5 / max(H, W)
    for _ in range(n_iter):
        ey, ex = np.exp(ay * k[0]), np.exp(ax * k[1])
        Ey, Ex = np.stack([ey, ay * ey, ay * ay * ey]), np.stack([ex, ax * ex, ax * ax * ex])
        qx = _mm(q.reshape(n * H, W), Ex.T).reshape(n, H, 3)
        m = np.einsum("ah,nhb->nab", Ey, qx)  # m[:, a, b] = d^a/dky^a d^b/dkx^b of the sum
        F, G = m[:, 0, 0], np.stack([m[:, 1, 0], m[:, 0, 1]], 1)
        Hf = np.stack([np.stack([m[:, 2, 0], m[:, 1, 1]], 1), np.stack([m[:, 1, 1], m[:, 0, 2]], 1)], 1)
        g = 2 * np.real(np.conj(F)[:, None] * G).sum(0)
        hess = 2 * np.real(np.conj(G)[:, :, None] * G[:, None, :] + np.conj(F)[:, None, None] * Hf).sum(0)
        ev = np.linalg.eigvalsh(hess)
        step = -np.linalg.solve(hess, g) if ev.max() < 0 else g / max(np.abs(ev).max(), 1e-300)
        size = np.hypot(*step)
        if size > max_step:
            step *= max_step / size
        k += step
        if size < 1e-12:
            break
    return k


def _fit_orders(p: np.ndarray, k, J: int) -> np.ndarray:
    """Least squares ``p = sum_{j=-J..J} z_j exp(i j 2 pi k.r)`` (separable sums); returns z_0..z_J."""
    H, W = p.shape
    y, x = np.arange(H), np.arange(W)
    js = np.arange(-J, J + 1)
    ey = np.exp(2j * np.pi * k[0] * np.outer(js, y))  # (2J+1, H)
    ex = np.exp(2j * np.pi * k[1] * np.outer(js, x))
    rhs = np.einsum("jh,hw,jw->j", np.conj(ey), p, np.conj(ex))
    d = js[None, :] - js[:, None]  # Gram <e_j, e_l> = sum exp(i (l - j) theta)
    gy = np.exp(2j * np.pi * k[0] * np.multiply.outer(d, y)).sum(-1)
    gx = np.exp(2j * np.pi * k[1] * np.multiply.outer(d, x)).sum(-1)
    z = np.linalg.solve(gy * gx, rhs)
    return z[J:]


def params_from_patterns(patterns, *, n_angles: int | None = None, n_phases: int | None = None,
                         max_harmonics: int = 8, harmonic_tol: float = 0.01) -> SinusoidParams:
    """Fit the sinusoidal parameters (DESIGN section 2) to known patterns on the fine grid.

    Parameters
    ----------
    patterns : array (K, H, W)
        Illumination patterns, any offset and scale (e.g. 8-bit PNGs, min-max scaled).
    n_angles, n_phases : int, optional
        Frames of one angle (angle-major) share one carrier, fitted to all of them; defaults from K as in
        :func:`cusim.patterns.angle_phase_counts`, and each frame on its own for other K.
    max_harmonics : int
        Highest harmonic order fitted is ``max_harmonics + 1`` (and below the Nyquist limit).
    harmonic_tol : float
        Harmonics are reported up to the highest order whose relative amplitude exceeds this in any frame;
        ``harmonics`` is None when none does.

    Returns
    -------
    SinusoidParams
        Normalised (kx > 0, or ky > 0 if kx = 0). Per frame ``a + sum_j A_j cos(j theta + psi_j)`` gives
        ``modulation = A_1 / a`` clipped to 1 and ``harmonics[:, j-2] = A_j cos(psi_j - j phi) / A_1``.

    Raises
    ------
    EstimationError
        Bad array, counts that do not fit K, or a flat frame.
    """
    p = _stack(patterns, "patterns")
    K, H, W = p.shape
    if min(H, W) < 8:
        raise EstimationError(f"patterns: {H} x {W} pixels is too small; expected at least 8 x 8")
    nA, nP = _groups(K, n_angles, n_phases)
    win = np.outer(windows.blackmanharris(H, sym=False), windows.blackmanharris(W, sym=False))
    q = (p - p.mean(axis=(1, 2), keepdims=True)) * win
    ks = []
    for a in range(nA):
        group = q[a * nP:(a + 1) * nP]
        spec = np.abs(np.fft.rfft2(group[0]))
        spec[0, 0] = 0
        i, j = np.unravel_index(np.argmax(spec), spec.shape)
        if spec[i, j] <= 1e-6 * max(np.abs(group[0]).sum(), 1e-300):
            raise EstimationError(f"patterns: frame {a * nP + 1} is flat; expected a sinusoidal pattern")
        ks.append(_periodogram_peak(group, [np.fft.fftfreq(H)[i], j / W]))
    k = np.repeat(ks, nP, axis=0)
    J = int(np.clip(np.floor(0.49 / np.abs(k).max()), 1, max_harmonics + 1))  # orders below Nyquist
    z = np.array([_fit_orders(p[i], k[i], J) for i in range(K)])  # (K, J+1)
    phase = np.angle(z[:, 1])
    mod = 2 * np.abs(z[:, 1]) / np.abs(z[:, 0].real)
    rel = np.real(z[:, 2:] * np.exp(-1j * np.arange(2, J + 1) * phase[:, None])) / np.abs(z[:, 1])[:, None]
    big = np.nonzero((np.abs(rel) > harmonic_tol).any(axis=0))[0]
    harm = rel[:, :big.max() + 1] if big.size else None
    return SinusoidParams(k, phase, np.minimum(mod, 1.0), harm).normalised()


def fit_residual(patterns, params: SinusoidParams) -> np.ndarray:
    """Per frame, the rms of ``pattern - (scale * render + offset)`` (least squares) over the rms of the
    pattern's variation: near 0 for sinusoids, large for lattices or speckle. Unitless, (K,)."""
    pats = np.asarray(patterns, dtype=np.float64)
    model = params.render(pats.shape[1:], dtype=np.float64)
    out = np.empty(pats.shape[0])
    for i, (p, r) in enumerate(zip(pats, model, strict=True)):
        A = np.stack([r.ravel(), np.ones(r.size)], axis=1)
        coef, *_ = np.linalg.lstsq(A, p.ravel(), rcond=None)
        out[i] = np.std(p.ravel() - A @ coef) / max(np.std(p), 1e-30)
    return out


def fit_sinusoids(patterns, *, n_angles: int | None = None, n_phases: int | None = None,
                  max_residual: float = MAX_FIT_RESIDUAL) -> tuple[SinusoidParams, float]:
    """:func:`params_from_patterns` checked to describe the patterns: the parameters and the worst
    per-frame :func:`fit_residual`.

    Raises :class:`EstimationError` (a ValueError) ``patterns: not <n_angles> angles x <n_phases> phases
    of sinusoids (<why>)`` when the fit fails or its worst residual exceeds ``max_residual``; callers
    add what needed sinusoids.
    """
    pats = _stack(patterns, "patterns")
    nA, nP = _groups(pats.shape[0], n_angles, n_phases)
    what = f"patterns: not {nA} angles x {nP} phases of sinusoids" if nP > 1 else \
        f"patterns: not {nA} sinusoids"
    try:
        params = params_from_patterns(pats, n_angles=nA, n_phases=nP)
    except EstimationError as e:
        raise EstimationError(f"{what} ({e})") from None
    worst = float(fit_residual(pats, params).max())
    if worst > max_residual:
        raise EstimationError(f"{what} (worst relative fit residual {worst:.2f} > {max_residual:g}, "
                              "e.g. a lattice or speckle)")
    return params, worst
