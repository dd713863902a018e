"""Generalised Wiener reconstruction of sinusoidal SIM (Gustafsson 2000; Gustafsson et al. 2008; the
practical recipe of fairSIM, Mueller et al. 2016).

Frame k of angle group a sees ``Y_k(f) = T(f) sum_m c_km X(f - m k_a)``: T is the OTF times the camera's
s x s block mean, and ``c_km`` the order coefficients of its pattern (``c_k0 = 1``,
``c_k(+-1) = m_k / 2 exp(+-i phi_k)``, harmonics ``m_k h_kj / 2 exp(+-i j phi_k)`` for nonlinear SIM; or
measured from the pattern arrays when a dataset has them). The steps, all in fine-grid coordinates
where the pattern phases of :class:`~cusim.patterns.SinusoidParams` are exact:

1. the raw frames are mirror-padded and tapered (non-periodic fields), then put on the fine grid by
   Fourier zero-padding with the half-pixel shift of the camera pixel centres (fine coordinate
   ``s i + (s - 1) / 2``);
2. per angle the orders ``m = -M..M`` are separated by the pseudo-inverse of the mixing matrix
   ``c_km`` (any distinct phases, 3 or more; ``M <= (n_phases - 1) / 2``, unseparable higher orders leak);
3. band m is moved to its true place by ``exp(-2 pi i m k . r)`` in real space (sub-pixel exact);
4. the bands are combined by ``S = sum conj(O_m) D_m / (sum |O_m|^2 + w^2) . A`` with
   ``O_m(f) = a_m T(f + m k)``; ``a_m`` is the band's amplitude, scaled so that every weighted band
   carries the same noise, and A the apodisation (cosine bell or triangle over the extended support).

Hexagonal SIM (:class:`~cusim.patterns.HexagonalParams`) is one group of 7 frames whose 7 bands sit at 0 and
``+-k_j`` of its three carriers, with coefficients ``(m_j / 3) exp(+-i phi_nj)``: steps 2-4 with those shifts
(coefficients from the parameters; pattern arrays are not measured for it).

The result is the real part, NOT clipped at zero, in arbitrary units with an arbitrary offset (the
camera offset); compare it after a least-squares scale and offset (``metrics`` ``norm="lstsq"``).
Per-frame gains are modelled only through pattern arrays; with parameters alone all frames are
assumed equally bright.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import scipy.fft

from .._validate import check_int
from ..backend import resolve_device, to_numpy, xp_for
from ..optics import Widefield, shifted_transfer, transfer_cutoff, validate_psf
from ..pattern_fit import fit_sinusoids
from ..patterns import HEX_AMPLITUDE, HexagonalParams, SinusoidParams, angle_phase_counts
from .config import APODISATIONS, MIN_PHASES, W_DEFAULT, WienerConfig  # noqa: F401  (re-exported)

__all__ = ["APODISATIONS", "W_DEFAULT", "WienerConfig", "bands", "params_for", "reconstruct", "wiener"]

@dataclass(frozen=True)
class _Plan:
    """Everything that does not depend on the frames: grids, unmixing, shifted OTFs, filter."""

    shape: tuple[int, int]       # fine grid (H, W) of the result
    s: int
    pad_camera: int              # margin in camera pixels on every side
    padded: tuple[int, int]      # padded camera grid (hp, wp)
    unmix: list                  # per angle: (2M+1, n_phases) complex, unit bands from frames
    carriers: np.ndarray         # (n_angles, 2) group carriers (hexagonal: the 3 carriers), cycles per fine pixel
    orders: int                  # M
    shifts: list                 # per group: (n_bands, 2) where each band sits (m k_a; hexagonal 0, +-k_j)
    weights: list                # per angle: (2M+1,) band amplitudes a_m
    numer: list                  # per angle: (2M+1, Hp, Wp) complex, a_m conj(O_m), O_m = a_m T(f + m k)
    filt: object                 # A / (sum |O|^2 + w^2), (Hp, Wp)
    taper: object                # (hp, wp) edge taper on the padded camera grid


def _freqs(n: int) -> np.ndarray:
    return np.fft.fftfreq(n)


def _apodisation(kind, shape, f_ext: float, bend: float) -> np.ndarray:
    f = np.hypot(_freqs(shape[0])[:, None], _freqs(shape[1])[None, :]) / f_ext
    if kind is None:
        return np.ones(shape)
    if kind == "triangle":
        return np.clip(1.0 - f, 0.0, None) ** bend
    return np.where(f < 1.0, np.cos(0.5 * np.pi * np.minimum(f, 1.0)), 0.0) ** bend


# -- the plan ----------------------------------------------------------------------------------------
def _check_optics(psf):
    if isinstance(psf, Widefield):
        return psf
    try:
        return validate_psf(psf, "psf")
    except (TypeError, ValueError) as e:
        raise ValueError(f"{e} (give a PSF array on the fine grid or a cusim.optics.Widefield)") from None


def _order_coefficients(params: SinusoidParams, n_angles: int, n_phases: int, shape, patterns=None):
    """Group carriers (n_angles, 2) and the complex order coefficients (n_angles, n_phases, M + 1): the
    pattern of frame k is ``sum_j c_kj exp(2 pi i j k_a . r) + conj.`` (j = 0 counted once).

    From ``params``: ``c_k0 = 1``, ``c_k1 = m_k / 2 exp(i phi_k)``, ``c_kj = m_k h_kj / 2 exp(i j phi_k)``.
    From pattern arrays (``patterns`` (K, H, W)): measured at the carriers of ``params`` (Hann-windowed
    Fourier coefficients over the mean of all frames), which keeps per-frame intensity, depths above 1
    and harmonic phases that ``SinusoidParams`` cannot hold; orders below 1 % of the first are dropped.
    """
    k = params.k.reshape(n_angles, n_phases, 2)
    phase = params.phase.reshape(n_angles, n_phases)
    # a frame may report (-k, -phi) for (k, phi): align every frame with the first of its group
    flip = np.einsum("apj,aj->ap", k, k[:, 0]) < 0
    k = np.where(flip[..., None], -k, k)
    phase = np.where(flip, -phase, phase)
    carriers = k.mean(axis=1)
    spread = np.abs(k - carriers[:, None]).max(axis=(1, 2)) * max(shape)
    if spread.max() > 0.25:
        raise ValueError(f"params: carriers within an angle group differ by {spread.max():.3g} cycles over the "
                         f"field; frames must be angle-major ({n_angles} angles x {n_phases} phases)")
    if patterns is None:
        harm = params.harmonics if params.harmonics is not None else np.zeros((params.K, 0))
        amps = np.concatenate([np.ones((params.K, 1)), 0.5 * params.modulation[:, None],
                               0.5 * params.modulation[:, None] * harm], axis=1).reshape(n_angles, n_phases, -1)
        return carriers, amps * np.exp(1j * phase[..., None] * np.arange(amps.shape[-1]))
    pats = np.asarray(patterns)
    if pats.shape != (params.K, *shape):
        raise ValueError(f"patterns: expected shape {(params.K, *shape)} (K frames on the fine grid), got {pats.shape}")
    win = np.outer(np.hanning(shape[0]), np.hanning(shape[1]))
    pw = pats.reshape(n_angles, n_phases, *shape).astype(np.float64) * win
    c0 = pw.sum(axis=(-2, -1))
    M = (n_phases - 1) // 2
    coef = np.empty((n_angles, n_phases, M + 1), dtype=np.complex128)
    coef[..., 0] = c0 / c0.mean()
    for a in range(n_angles):
        for j in range(1, M + 1):
            coef[a, :, j] = _coefficients(pw[a], c0.mean(), carriers[a], j)
    rel = np.abs(coef[..., 1:]).max(axis=(0, 1)) / max(np.abs(coef[..., 1]).max(), 1e-30)
    return carriers, coef[..., :1 + int(np.sum(np.cumprod(rel > 1e-2)))]


def _hex_groups(params: HexagonalParams):
    """Hexagonal SIM as one group of 7 frames and 7 bands 0, +k_j, -k_j: the carriers (3, 2), the mixing matrix
    (7, 7) (band +j in frame n has ``(m_j / 3) exp(i phi_nj)``) and the band shifts (7, 2)."""
    c = HEX_AMPLITUDE / 2 * params.modulation[None, :] * np.exp(1j * params.phase)
    mix = np.concatenate([np.ones((params.K, 1)), c, np.conj(c)], axis=1)
    shifts = np.concatenate([np.zeros((1, 2)), params.k, -params.k])
    return params.k, [mix], [shifts], 1


def _sinusoid_groups(params: SinusoidParams, cfg: WienerConfig, shape, patterns):
    """Per angle: the mixing matrix (n_phases, 2M+1) of orders -M..M and their shifts m k_a; the carriers."""
    n_angles, n_phases = angle_phase_counts(params.K, cfg.n_angles, cfg.n_phases, min_phases=MIN_PHASES)
    carriers, coef = _order_coefficients(params, n_angles, n_phases, shape, patterns)
    M_have = coef.shape[-1] - 1
    M_max = (n_phases - 1) // 2  # what n_phases phases can separate
    M = min(M_have, M_max if cfg.orders is None else check_int(f"orders ({n_phases} phases)", cfg.orders, 1, M_max))
    if M < 1:
        raise ValueError("patterns: no first order at the carriers of params (all below 1 % of the mean); "
                         "expected sinusoidal patterns with non-zero modulation")
    ms = np.arange(-M, M + 1)
    mixes = [np.where(ms < 0, np.conj(coef[a][:, np.abs(ms)]), coef[a][:, np.abs(ms)]) for a in range(n_angles)]
    return carriers, mixes, [ms[:, None] * carriers[a] for a in range(n_angles)], M


def _plan(params: SinusoidParams | HexagonalParams, psf, s: int, cam_shape, cfg: WienerConfig, *,
          pad_camera: int | None = None, patterns=None, xp=np) -> _Plan:
    optics = _check_optics(psf)
    s = check_int("upsample", s, 1, 8)
    h, w_cam = cam_shape
    H, W = h * s, w_cam * s
    if pad_camera is None:  # about two PSF widths, at least 8 camera pixels
        psf_half = 4 * s if isinstance(optics, Widefield) else optics.shape[0] // 2
        pad = max(8, -(-2 * psf_half // s))
    else:
        pad = check_int("pad_camera", pad_camera, 0)
    hp = scipy.fft.next_fast_len(h + 2 * pad, real=True)
    wp = scipy.fft.next_fast_len(w_cam + 2 * pad, real=True)
    Hp, Wp = hp * s, wp * s
    off = pad * s  # fine index rp = r + off

    if isinstance(params, HexagonalParams):  # the pattern arrays are not measured: one group, 7 bands
        carriers, mixes, shifts, M = _hex_groups(params)
    else:
        carriers, mixes, shifts, M = _sinusoid_groups(params, cfg, (H, W), patterns)
    unmix, weights, numer = [], [], []
    denom = np.zeros((Hp, Wp))
    for a, (mix, shift) in enumerate(zip(mixes, shifts)):
        n_phases = mix.shape[0]
        # in padded coordinates the origin moves by -off fine pixels
        mix = mix * np.exp(-2j * np.pi * off * shift.sum(axis=1))
        # every band needs its own singular value: with fewer frames than bands (a hexagonal stack of 5 frames)
        # np.linalg.cond would see only the frames' and pass, and the pseudo-inverse would unmix a wrong image
        sv = np.linalg.svd(mix, compute_uv=False)
        if len(sv) < len(shift) or not sv[-1] > 1e-6 * sv[0]:
            group = "hexagonal pattern" if isinstance(params, HexagonalParams) else f"angle {a}"
            raise ValueError(f"params: the {n_phases} frames of the {group} cannot separate its {len(shift)} "
                             f"bands; need at least {len(shift)} frames with distinct phases and non-zero "
                             "modulation")
        pinv = np.linalg.pinv(mix)
        amp = 1.0 / (np.sqrt(n_phases) * np.linalg.norm(pinv, axis=1))  # equal noise in every a_m band
        o = np.stack([amp[i] * shifted_transfer(optics, s, (Hp, Wp), q, camera_band=True)
                      for i, q in enumerate(shift)])
        denom += (np.abs(o) ** 2).sum(axis=0)
        unmix.append(xp.asarray(pinv))
        weights.append(amp)
        numer.append(xp.asarray(amp[:, None, None] * np.conj(o)))
    f_c = transfer_cutoff(optics, s, (Hp, Wp))
    f_ext = cfg.apo_cutoff * (f_c + max(np.hypot(*q.T).max() for q in shifts))
    filt = _apodisation(cfg.apodisation, (Hp, Wp), f_ext, cfg.apo_bend) / (denom + cfg.w**2)
    taper = np.outer(_taper(h, hp, pad), _taper(w_cam, wp, pad))
    return _Plan((H, W), s, pad, (hp, wp), unmix, carriers, M, shifts, weights, numer, xp.asarray(filt),
                 xp.asarray(taper))


def _taper(n: int, n_pad: int, pad: int) -> np.ndarray:
    """1 over the field, a cosine fade to 0 over the margins (which meet across the periodic wrap)."""
    t = np.ones(n_pad)
    m_lo, m_hi = pad, n_pad - n - pad
    t[:m_lo] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m_lo) + 0.5) / m_lo)
    t[n_pad - m_hi:] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(m_hi) + 0.5) / m_hi)
    return t


# -- applying it -------------------------------------------------------------------------------------
def _to_fine(frames, plan: _Plan, xp):
    """(K, h, w) camera frames -> (K, Hp, Wp) on the padded fine grid: mirror pad, taper towards the
    mean, Fourier zero-padding with the camera pixel centres at fine coordinates s i + (s - 1) / 2."""
    fft = _fft(xp)
    s, pad, (hp, wp) = plan.s, plan.pad_camera, plan.padded
    h, w = frames.shape[-2:]
    mean = frames.mean(axis=(-2, -1), keepdims=True)
    y = xp.pad(frames - mean, ((0, 0), (pad, hp - h - pad), (pad, wp - w - pad)), mode="symmetric")
    if s == 1:  # the fine grid is the camera's: nothing to interpolate (the Nyquist split below would damp it)
        return y * plan.taper + mean
    Y = fft.rfft2(y * plan.taper + mean)
    Hp, Wp = hp * s, wp * s
    Y[..., :, wp // 2] *= 0.5 if wp % 2 == 0 else 1.0  # Nyquist column: half here, half implied at -wp/2
    big = xp.zeros((y.shape[0], Hp, Wp // 2 + 1), dtype=Y.dtype)
    lo, hi = (hp + 1) // 2, hp // 2  # rows 0..lo-1 are frequencies >= 0, the last hi rows negative
    big[:, :lo, :wp // 2 + 1] = Y[:, :lo]
    big[:, Hp - hi:, :wp // 2 + 1] = Y[:, hp - hi:]
    if hp % 2 == 0:  # Nyquist row: split between +hp/2 and -hp/2
        big[:, hp // 2, :wp // 2 + 1] = 0.5 * Y[:, hp // 2]
        big[:, Hp - hp // 2, :wp // 2 + 1] *= 0.5
    d = (s - 1) / 2
    ramp = np.exp(-2j * np.pi * d * (_freqs(Hp)[:, None] + np.fft.rfftfreq(Wp)[None, :]))
    return fft.irfft2(big * xp.asarray(ramp), s=(Hp, Wp)) * (s * s)


def _fft(xp):
    return scipy.fft if xp is np else importlib.import_module("cupyx.scipy.fft")


def _shifted_bands(fine, plan: _Plan, a: int, xp):
    """Unit bands of group ``a`` moved to their true place: (n_bands, Hp, Wp) complex, real space. Band i
    equals x convolved with the PSF (and block mean) modulated by exp(-2 pi i q_i . r), ``q_i`` its shift
    (``m k`` for order m of a sinusoid)."""
    n_p = plan.unmix[a].shape[1]
    y = fine[a * n_p:(a + 1) * n_p]
    Hp, Wp = y.shape[-2:]
    out = xp.tensordot(plan.unmix[a], y, axes=(1, 0))
    for i, q in enumerate(plan.shifts[a]):
        out[i] *= xp.asarray(np.outer(np.exp(-2j * np.pi * q[0] * np.arange(Hp)),
                                      np.exp(-2j * np.pi * q[1] * np.arange(Wp))))
    return out


def _apply(frames, plan: _Plan, xp) -> np.ndarray:
    fft = _fft(xp)
    fine = _to_fine(xp.asarray(frames, dtype=xp.float64), plan, xp)
    num = 0
    for a in range(len(plan.unmix)):
        bands = fft.fft2(_shifted_bands(fine, plan, a, xp), axes=(-2, -1))
        num = num + (plan.numer[a] * bands).sum(axis=0)
    img = fft.ifft2(num * plan.filt).real
    off = plan.pad_camera * plan.s
    H, W = plan.shape
    return to_numpy(img[off:off + H, off:off + W]).astype(np.float32)


def _check_params(params) -> SinusoidParams:
    if params is None:
        raise ValueError("params: no pattern parameters; run `cusim estimate` to fit them from the data or from "
                         "pattern arrays")
    if not isinstance(params, (SinusoidParams, HexagonalParams)):
        raise TypeError(f"params: expected cusim.patterns.SinusoidParams or HexagonalParams, "
                        f"got {type(params).__name__}")
    return params


def _check_frames(frames, K: int) -> np.ndarray:
    f = np.asarray(frames)
    if f.ndim != 3 or f.shape[0] != K or min(f.shape[1:]) < 4:
        raise ValueError(f"frames: expected (K, h, w) with K = {K} frames as in params and h, w >= 4, got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("frames: contain NaN or Inf")
    return f


def wiener(frames, params: SinusoidParams, psf, upsample: int, *, pad_camera: int | None = None, patterns=None,
           device: str = "auto", **settings) -> np.ndarray:
    """Generalised Wiener SIM reconstruction (H, W) of one raw stack (K, h, w); see the module docstring.

    ``params``: the patterns of the K frames, angle-major (``n_angles`` x ``n_phases``; defaults from K:
    9 -> 3x3, 15 -> 3x5, 25 -> 5x5). ``psf``: a PSF array on the fine grid or a
    :class:`~cusim.optics.Widefield`. ``settings``: the fields of :class:`WienerConfig`: ``w``, the Wiener
    parameter, relative to an OTF of 1 at zero frequency (the default suits SNR ~ 20; lower it for cleaner
    data); ``apodisation``: "triangle", "cosine" (bell) or None, reaching zero at ``apo_cutoff`` x (OTF
    cut-off + M |k|), raised to ``apo_bend``; ``orders``: highest order M used (default: all in params that
    ``n_phases`` can separate; higher harmonics alias into the separated bands). ``pad_camera``: edge margin
    in CAMERA pixels (default about two PSF radii, at least 8). ``patterns``: the pattern arrays (K, H, W),
    optional; when given, the order coefficients of every frame (intensity, depth, harmonic amplitude and
    phase) are measured from them at the carriers of ``params`` instead of taken from the ideal formula.
    ``device``: "auto", "cpu" (NumPy) or "cuda" (CuPy). Returns the real part, unclipped, float32.
    """
    cfg = WienerConfig.from_params(settings)
    _check_params(params)
    f = _check_frames(frames, params.K)
    xp = xp_for(resolve_device(device))
    plan = _plan(params, psf, upsample, f.shape[1:], cfg, pad_camera=pad_camera, patterns=patterns, xp=xp)
    return _apply(f, plan, xp)


def bands(frames, params: SinusoidParams, psf, upsample: int, *, patterns=None, **settings) -> np.ndarray:
    """The separated unit bands moved to their true place, (n_angles, 2M+1, H, W) complex, real space.

    Band m of angle a is ``IFFT[T(f + m k_a) X(f)]``: the object convolved with the effective PSF (PSF
    and block mean) modulated by ``exp(-2 pi i m k_a . r)``. Arguments as :func:`wiener` (of the
    settings, ``n_angles``, ``n_phases`` and ``orders`` matter). For diagnostics and tests.
    """
    cfg = WienerConfig.from_params(settings)
    f = _check_frames(frames, _check_params(params).K)
    plan = _plan(params, psf, upsample, f.shape[1:], cfg, patterns=patterns)
    fine = _to_fine(f.astype(np.float64), plan, np)
    off, (H, W) = plan.pad_camera * plan.s, plan.shape
    out = [_shifted_bands(fine, plan, a, np)[:, off:off + H, off:off + W] for a in range(len(plan.unmix))]
    return np.stack(out)


# -- pattern parameters ------------------------------------------------------------------------------
def _coefficients(pw: np.ndarray, c0: np.ndarray, k, j: int = 1) -> np.ndarray:
    """Windowed Fourier coefficients at ``j k`` of the frames ``pw`` (n, H, W), relative to their means."""
    ey = np.exp(-2j * np.pi * j * k[0] * np.arange(pw.shape[1]))
    ex = np.exp(-2j * np.pi * j * k[1] * np.arange(pw.shape[2]))
    return np.einsum("y,kyx,x->k", ey, pw, ex) / c0


def params_for(dataset, params=None, *, n_angles=None, n_phases=None) -> tuple[SinusoidParams, dict]:
    """Pattern parameters of ``dataset``: given, stored, or fitted to its ``/patterns`` arrays (checked to
    be sums of n_angles sinusoids, :func:`cusim.pattern_fit.fit_sinusoids`). Returns them with a dict
    saying where they came from."""
    if params is not None:
        return _check_params(params), {"params_source": "argument"}
    if dataset.pattern_params is not None:
        return dataset.pattern_params, {"params_source": "dataset"}
    if dataset.patterns is None:
        raise ValueError(f"{dataset._name()}: no /patterns and no /pattern_params; estimate them first (cusim "
                         "estimate, or cusim run --estimate-patterns)")
    n_a, n_p = angle_phase_counts(dataset.K, n_angles, n_phases, min_phases=MIN_PHASES)
    try:
        p, worst = fit_sinusoids(dataset.patterns, n_angles=n_a, n_phases=n_p)
    except ValueError as e:
        raise ValueError(f"{e}; the Wiener method needs sinusoidal SIM, use an iterative method") from None
    return p, {"params_source": "cusim.pattern_fit", "params_fit_residual": worst}


def reconstruct(dataset, *, device: str = "auto", params: SinusoidParams | None = None,
                **settings) -> tuple[np.ndarray, dict]:
    """Wiener reconstruction of every time point of ``dataset``: (H, W) or (T, H, W), and an info dict.

    ``settings``: the fields of :class:`WienerConfig`, checked before any work; ``params`` as
    :func:`params_for`.
    """
    cfg = WienerConfig.from_params(settings)
    p, info = params_for(dataset, params, n_angles=cfg.n_angles, n_phases=cfg.n_phases)
    if p.K != dataset.K:
        raise ValueError(f"params: {p.K} frames, the dataset has K = {dataset.K}")
    xp = xp_for(resolve_device(device))
    plan = _plan(p, dataset.optics(), dataset.upsample, dataset.camera_shape, cfg, patterns=dataset.patterns, xp=xp)
    imgs = [_apply(_check_frames(dataset.frames(t), p.K), plan, xp) for t in range(dataset.T)]
    measured = dataset.patterns is not None and not isinstance(p, HexagonalParams)
    info.update(coefficients="measured from /patterns" if measured else "from params",
                orders=plan.orders, n_angles=len(plan.unmix), n_phases=plan.unmix[0].shape[1],
                carriers=plan.carriers.tolist(), band_weights=[wt.tolist() for wt in plan.weights])
    return (np.stack(imgs) if dataset.is_series else imgs[0]), info
