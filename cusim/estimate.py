"""Parameter estimation of sinusoidal SIM illumination from the raw frames (or from pattern arrays).

Real microscopes never give the patterns exactly: the carrier ``k`` of every angle, the phase of every
frame and the modulation depth are measured from the data. Per angle (frames angle-major):

1. **Band separation.** Frame ``p`` is ``s0 + sum_m exp(i m psi_p) b_m`` (orders m = +-1, +-2, ...);
   the bands are separated over the phase axis with equidistant steps ``psi_p = 2 pi p / P`` (a DFT,
   Gustafsson 2000), or by least squares with measured steps when these clearly differ (see 4).
2. **Carrier search.** The cross-correlation map of the +1 band with the 0 band, both filtered by
   ``H / (H^2 + 0.01)`` of the OTF ``H``, ``|FT[(F * b1) (F * s0)]|^2``, peaks at ``q = k``, also beyond
   the detection OTF (TIRF). Its 20 strongest local maxima over the noise floor are candidates; the one
   whose bands fit a carrier best (step 3's criterion) is taken if its significance ``|<B, A>| / std``
   under noise alone reaches ``min_peak_snr``, else :class:`EstimationError` (pure Gaussian noise gives 1-4;
   an angle without a carrier in frames of an object up to about 6: ``benchmarks/estimate_null.py``).
3. **Sub-pixel refinement.** Noise-free, the shifted band and the 0 band obey
   ``A = H(f) B1(f + k) = c H(f + k) S0(f) = c B`` exactly (both are ``c H(f) H(f + k) X(f)``; the
   OTF-weighted band comparison of Gustafsson 2000, Wicker et al. 2013, fairSIM). The two sides are
   filtered in Fourier space, compared in real space on the interior of the field (no window, no
   wrap-around) and their normalised correlation ``|<B, A>|^2 / (|A|^2 |B|^2)`` is maximised over
   ``k`` (Nelder-Mead). The noise power that the correlation and the norms pick up is subtracted
   (noise from the spectrum outside the OTF, :mod:`cusim.noise`); without that step noise biases
   ``|k|`` low. The shift is a phase ramp on the CAMERA pixel centres ``s i + (s - 1) / 2``, so ``k``
   and the phases come out in the FINE-grid convention of DESIGN section 2.
4. **Phases, depth, harmonics.** ``c = (m / 2) exp(i phi)`` is the least-squares ratio of ``A`` to
   ``B`` for the separated +1 band: ``phi`` is the absolute phase, ``2 |c|`` the modulation (clipped to
   0..1); the other frames follow from the (nominal or measured) steps. Each frame's own correlation
   with ``s0`` measures the steps; unequal steps (beyond 0.2 rad) trigger a re-separation. With
   ``order=2`` the +2 band against the +1 band at the shift ``k`` gives the 2nd-harmonic amplitude.

**Hexagonal SIM** (:func:`estimate_hexagonal`): 7 frames lit by three carriers at once (three beams at 120
degrees, carrier j stepped by ``2 pi j / 7``). Steps 1-4 run once per carrier on the 7-band separation
(bands 0, +-k1, +-k2, +-k3), and the three carriers must close a lattice (``+-k1 +- k2 +- k3 = 0``).

Without an OTF the cut-off is measured from the widefield spectrum (where it meets the noise floor)
and the ideal widefield OTF of that cut-off stands in: carriers stay good, phases and depths are rougher.

:func:`params_from_patterns` (from :mod:`cusim.pattern_fit`, re-exported here) fits the parameters to
known pattern arrays instead.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, optimize
from scipy.signal import windows

from ._files import atomic_target
from ._validate import check_choice, check_frames_vary, check_int, check_number, check_positive
from ._warnings import warn
from .io import DatasetError
from .noise import immerkaer_sigma, spectral_sigma
from .optics import Widefield, transfer, transfer_cutoff, validate_psf
from .pattern_fit import EstimationError, _stack, params_from_patterns
from .patterns import ANGLE_PHASE_DEFAULTS, HEX_PHASES, HexagonalParams, SinusoidParams, _wrap, angle_phase_counts

__all__ = ["FAMILIES", "EstimateResult", "EstimationError", "carrier_guess", "estimate_dataset", "estimate_hexagonal",
           "estimate_params", "params_from_patterns", "pattern_family"]

FAMILIES = ("linear", "hexagonal")
MIN_PEAK_SNR = 10.0
# Above this significance a refused candidate may be a weak carrier, and the refusal says how to take it: an angle
# without any carrier scored at most 6.3 over the whole spectrum (99th percentile 6.0) in frames of an object
# (`python -m benchmarks.estimate_null`, 288 simulated stacks; pure Gaussian noise without an object 1-4). At 4,
# the value before, the refusal advised taking such an angle's candidate in 193 of the 288; at 6.5 in none.
NOISE_Z = 6.5
_LAYOUTS = ", ".join(f"{k} = {a} x {p}" for k, (a, p) in ANGLE_PHASE_DEFAULTS.items())
MIN_FIT = 0.1
# The lattice pass (estimate_params, lattice=True): an angle whose carrier is not found on its own is searched
# again near where the found angles put it (equal |k|, angles 180 / n_angles apart, either way round), in the
# guided search's small region, and taken from significance LATTICE_Z. Chosen on simulated frames where one
# angle has no carrier at all (`python -m benchmarks.estimate_null`: filaments, 3 x 3 frames of 96 and 128
# camera pixels, SNR 3, 5 and 20, 288 stacks, the other two angles modulated): that angle's best candidate in
# the lattice region scored median 3.4, 99th percentile 5.0, at most 5.3 (blind, over the whole spectrum: at
# most 6.3, against MIN_PEAK_SNR 10); pure Gaussian noise without an object scores at most 2.2 there.
LATTICE_Z = 6.0
# The found angles must agree with one lattice to within this many degrees (a carrier's angle is known to
# ~0.1 degree at any usable significance; the guided search itself reaches about 5.7 degrees off).
LATTICE_TOL_DEG = 3.0
PHASE_STEP_TOL = 0.2
# Frames in the other order (phase-major read as angle-major) give angles off an even spread and phase
# steps off 2 pi / n_phases (a 3 x 3 simulation: angles 70, 70, 131 deg, steps up to 1.9 rad off). Real
# steps stray less: 0.33 rad on the dlsim data, up to 0.8 in tests/test_estimate.py's unequal steps.
ORDER_ANGLE_TOL_DEG = 15.0
ORDER_STEP_TOL = np.pi / 3


# -- small helpers ---------------------------------------------------------------------------------------
def _abs2(z: np.ndarray) -> np.ndarray:
    return z.real ** 2 + z.imag ** 2


def _dot(x: np.ndarray, y: np.ndarray) -> complex:
    """``sum(conj(x) y)`` (np.vdot goes through BLAS, which is needlessly slow on small arrays)."""
    return complex((np.conj(x) * y).sum())


class _Transfer:
    """OTF x camera-pixel box on the camera DFT grid, shifted by ``k`` (cycles per fine pixel).

    Camera frequency ``f`` (cycles per camera pixel) is fine frequency ``f / s``. ``psf`` is a fine-grid
    PSF array, a :class:`~cusim.optics.Widefield`, or a cut-off in cycles per fine pixel (ideal OTF);
    the formula is :func:`cusim.optics.transfer`, evaluated at exactly these frequencies (small matrix
    products, no fine-grid FFT).
    """

    def __init__(self, psf, s: int, shape: tuple[int, int]):
        self.s = s
        self.fy, self.fx = np.fft.fftfreq(shape[0]) / s, np.fft.fftfreq(shape[1]) / s
        self.psf = None
        if not (isinstance(psf, Widefield) or np.ndim(psf) == 0):
            try:
                psf = self.psf = validate_psf(psf, "psf")
            except ValueError as e:
                raise EstimationError(str(e)) from None
        elif not isinstance(psf, Widefield):  # a cut-off (cycles per fine pixel; below the fine grid's corner)
            psf = check_number("psf", psf, lo=0.0, strict=True, hi=np.sqrt(0.5), error=EstimationError)
        self.optics = psf
        self.cutoff = transfer_cutoff(psf, s, (shape[0] * s, shape[1] * s))  # cycles per fine pixel
        self.cutoff_cam = self.cutoff * s
        # interior margin (camera pixels) beyond which the circular filtering cannot reach
        if self.psf is not None:
            self.margin = int(np.ceil(max(self.psf.shape) // 2 / s)) + 1
        else:  # three Airy radii 1.22 / cutoff
            self.margin = int(np.ceil(3 * 1.22 / (self.cutoff * s))) + 1

    def __call__(self, k=(0.0, 0.0)) -> np.ndarray:
        return transfer(self.optics, self.s, self.fy + k[0], self.fx + k[1])


def _cutoff_from_spectrum(img: np.ndarray, s: int) -> float:
    """OTF cut-off (cycles per fine pixel) where the radial power spectrum of ``img`` meets its noise floor."""
    h, w = img.shape
    p = np.abs(np.fft.fft2((img - img.mean()) * _tukey2((h, w)))) ** 2
    r = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    edges = np.linspace(0, 0.5, 65)
    idx = np.digitize(r, edges) - 1
    prof = np.array([np.median(p[idx == i]) if np.any(idx == i) else np.nan for i in range(64)])
    floor = np.nanmedian(prof[-8:])
    above = np.nonzero(prof > 3 * floor)[0]
    fc = edges[above.max() + 1] if above.size else 0.5
    return float(np.clip(fc, 0.05, 0.5)) / s


def _noise_var(frames: np.ndarray, T0: np.ndarray) -> float:
    sigma = spectral_sigma(frames, np.abs(T0) > 1e-3)
    if sigma is None:
        sigma = immerkaer_sigma(frames)
    return float(sigma) ** 2


def _tukey2(shape, alpha=0.25):
    return np.outer(windows.tukey(shape[0], alpha), windows.tukey(shape[1], alpha))


# -- the band correlation ----------------------------------------------------------------------------------
class _Correlator:
    """Compares the +j band shifted by ``k`` with the 0 band: ``A = H(f) Bj(f + k)``, ``B = H(f + k) S0(f)``.

    Both sides are taken back to real space, cropped to the interior (``margin`` camera pixels from
    the edges, where the circular filtering is exact) and their means removed. ``var_b`` and ``var_0``
    are the per-pixel noise variances of the band and of ``s0``.
    """

    def __init__(self, band, s0, T: _Transfer, var_b: float, var_0: float):
        h, w = s0.shape
        s, m = T.s, min(T.margin, min(h, w) // 4)
        self.band, self.S0, self.T, self.T0 = band, np.fft.fft2(s0), T, T()
        self.S0_real = s0
        self.T02 = _abs2(self.T0)
        self.yc, self.xc = s * np.arange(h) + (s - 1) / 2, s * np.arange(w) + (s - 1) / 2
        self.crop = (slice(m, h - m), slice(m, w - m))
        self.var_b, self.var_0 = var_b, var_0

    def sides(self, k):
        ramp = np.outer(np.exp(-2j * np.pi * k[0] * self.yc), np.exp(-2j * np.pi * k[1] * self.xc))
        Tk = self.T(k)
        A = np.fft.ifft2(np.fft.fft2(self.band * ramp) * self.T0)[self.crop]
        B = np.fft.ifft2(self.S0 * Tk)[self.crop]
        return A - A.mean(), B - B.mean(), _abs2(Tk)

    def _noise(self, A, B, Tk2) -> float:
        """Variance of ``<B, A>`` from the noise of the band (in ``A``) and of ``s0`` (in ``B``)."""
        def power(X, filt2):
            full = np.zeros(filt2.shape, complex)
            full[self.crop] = X
            return float((filt2 * _abs2(np.fft.fft2(full))).sum()) / full.size
        return self.var_b * power(B, self.T02) + self.var_0 * power(A, Tk2)

    def zscore(self, k) -> float:
        """``|<B, A>|`` over its standard deviation under noise alone: the significance of the carrier."""
        A, B, Tk2 = self.sides(k)
        return float(abs(_dot(B, A)) / np.sqrt(max(self._noise(A, B, Tk2), 1e-300)))

    def score(self, k) -> float:
        """Squared normalised correlation of the two sides with the noise they pick up removed from the
        correlation and from the norms (at most 90 % of a norm): about 1 at the carrier at any SNR."""
        A, B, Tk2 = self.sides(k)
        num = abs(_dot(B, A)) ** 2 - self._noise(A, B, Tk2)
        aa, bb = _abs2(A).sum(), _abs2(B).sum()
        na = max(aa - self.var_b * A.size * self.T02.mean(), 0.1 * aa)
        nb = max(bb - self.var_0 * B.size * Tk2.mean(), 0.1 * bb)
        return num / max(na * nb, 1e-300)

    def factor(self, k) -> complex:
        """Least-squares ``c`` in ``A = c B``; the noise power is removed from ``|B|^2``, but at most half."""
        A, B, Tk2 = self.sides(k)
        bb = _abs2(B).sum()
        nb = bb - self.var_0 * B.size * Tk2.mean()
        return complex(_dot(B, A) / max(nb, 0.5 * bb, 1e-300))

    def refine(self, k0, step: float) -> np.ndarray:
        k0 = np.asarray(k0, float)
        simplex = [k0, k0 + [step, 0.0], k0 + [0.0, step]]
        res = optimize.minimize(lambda k: -self.score(k), k0, method="Nelder-Mead",
                                options={"initial_simplex": simplex, "xatol": step * 1e-3, "fatol": np.inf})
        return res.x


def _candidates(band, s0, T: _Transfer, var_b: float, k_guess, n: int = 20):
    """Up to ``n`` carrier candidates (cycles per fine pixel), the strongest local maxima of the band /
    0-band cross-correlation map ``|FT[(F * b1) (F * s0) window]|^2`` over its noise floor, and that map
    (fftshifted, for the figure). ``F = H / (H^2 + 0.01)`` inside the OTF support; the mean of ``s0``
    is left out (it only adds the band's noise where ``k`` lies beyond the OTF)."""
    h, w = s0.shape
    s = T.s
    H = np.abs(T())
    F = np.where(H > 1e-3, H / (H * H + 0.01), 0.0)
    fs0 = np.real(np.fft.ifft2(np.fft.fft2(s0 - s0.mean()) * F)) * _tukey2((h, w))
    M = _abs2(np.fft.fft2(np.fft.ifft2(np.fft.fft2(band) * F) * fs0, s=(2 * h, 2 * w)))
    Z = M / max(var_b * np.mean(F * F) * np.sum(fs0 * fs0), 1e-300)
    fy, fx = np.fft.fftfreq(2 * h)[:, None], np.fft.fftfreq(2 * w)[None, :]
    r = np.hypot(fy, fx)
    allowed = (r > max(4.0 / min(h, w), 0.02, 0.15 * T.cutoff_cam)) & (np.maximum(np.abs(fy), np.abs(fx)) < 0.5)
    if k_guess is not None:
        kg = np.asarray(k_guess, float) * s
        radius = max(3.0 / min(h, w), 0.1 * np.hypot(*kg))
        allowed &= (np.hypot(fy - kg[0], fx - kg[1]) <= radius) | (np.hypot(fy + kg[0], fx + kg[1]) <= radius)
    Z = np.where(allowed, Z, 0)
    peaks = np.nonzero((Z == ndimage.maximum_filter(Z, 7, mode="wrap")) & (Z > 0))
    if not peaks[0].size:
        where = "near k_guess (cycles per fine pixel)" if k_guess is not None else "in the frames"
        raise EstimationError(f"frames: nothing to take for a carrier {where}; expected structured-illumination "
                              "frames with carriers below the camera Nyquist limit")
    best = np.argsort(Z[peaks])[::-1][:n]
    cands = [np.array([fy[peaks[0][i], 0], fx[0, peaks[1][i]]]) / s for i in best]
    return cands, np.fft.fftshift(M).astype(np.float32)


def _choose(corr: _Correlator, cands, min_peak_snr: float, label: str,
            hint: str = "are these structured-illumination frames, imported in the file's order (--order)?"):
    """The candidate that fits a carrier best: of those significant above the noise (z >= min_peak_snr),
    the best band fit if any fits at least MIN_FIT; else, in the noise-dominated regime where the fit
    is itself noise, the most significant one, unless it is so significant that its poor fit means
    it is not a carrier (e.g. widefield frames with intensity changes)."""
    z = np.array([corr.zscore(c) for c in cands])
    fit = np.array([corr.score(c) for c in cands])
    ok = z >= min_peak_snr
    if ok.any() and (fit[ok] >= MIN_FIT).any():
        i = int(np.argmax(np.where(ok & (fit >= MIN_FIT), fit, -np.inf)))
    else:
        i = int(np.argmax(z))
    if not ok[i] or (fit[i] < MIN_FIT and z[i] >= 3 * min_peak_snr):
        weak = (f"; above what an angle without a carrier reaches ({NOISE_Z:g}), it may be the carrier of very "
                f"dark frames: min_peak_snr below "
                f"{z[i]:.1f} (cusim estimate --min-peak-snr) takes it, and k_guess (--guess) narrows the search; "
                "check the result with --figure" if NOISE_Z <= z[i] < min_peak_snr and fit[i] >= MIN_FIT else "")
        at = f"at {np.hypot(*cands[i]) * corr.T.s:.3f} cycles per camera pixel"
        # enough digits that a value just below the threshold does not print as the threshold
        zs = f"{z[i]:.1f}" if abs(z[i] - min_peak_snr) >= 0.05 else f"{z[i]:.4f}"
        if ok[i]:  # significant, but no carrier: its side band does not repeat the centre band's structure
            head = (f"{label}: the strongest peak ({at}, significance {zs}) is not a carrier: its band fit "
                    f"{fit[i]:.2f} is below {MIN_FIT:g} (expected of a peak that significant, >= {3 * min_peak_snr:g}; "
                    "a change of brightness or position between frames gives such a peak)")
        else:
            head = (f"{label}: no carrier peak stands out of the noise (the best candidate, {at}, has significance "
                    f"{zs} and band fit {fit[i]:.2f}; expected significance >= {min_peak_snr:g})")
        err = EstimationError(f"{head}; {hint}{weak}")
        err.significance = float(z[i])  # read by the lattice pass
        raise err
    return cands[i]


def _find_carrier(corr: _Correlator, T: _Transfer, k_guess, min_peak_snr: float, label: str, step: float, **hint):
    """Steps 2 and 3 for the band of ``corr``: the chosen candidate refined sub-pixel; and the candidates' map."""
    cands, cmap = _candidates(corr.band, corr.S0_real, T, corr.var_b, k_guess)
    return corr.refine(_choose(corr, cands, min_peak_snr, label, **hint), step), cmap


def _circle_phases(z: np.ndarray):
    """Angles of the points ``z`` seen from the centre of the circle through them (least squares), or
    None when they are nearly collinear."""
    A = np.stack([2 * z.real, 2 * z.imag, np.ones(len(z))], 1)
    if np.linalg.cond(A) > 1e6:
        return None
    cx, cy, _ = np.linalg.lstsq(A, np.abs(z) ** 2, rcond=None)[0]
    return np.angle(z - (cx + 1j * cy))


def _mixing(psi: np.ndarray, n_orders: int) -> np.ndarray:
    """Separation matrix W (2 n_orders + 1, P): bands [0, +1, .., +n, -1, .., -n] = W @ frames."""
    orders = np.r_[0, np.arange(1, n_orders + 1), -np.arange(1, n_orders + 1)]
    return np.linalg.pinv(np.exp(1j * np.outer(psi, orders)))


def _frame_factors(dev: np.ndarray, bands: list) -> np.ndarray:
    """Least squares ``dev_p = 2 Re(sum_j a_pj b_j)``; returns ``a`` (P, len(bands))."""
    cols = []
    for b in bands:
        cols += [2 * b.real.ravel(), -2 * b.imag.ravel()]
    A = np.stack(cols)  # normal equations with einsum: no multithreaded BLAS on these long, thin products
    sol = np.linalg.solve(np.einsum("in,jn->ij", A, A), np.einsum("in,pn->ip", A, dev.reshape(len(dev), -1)))
    return (sol[0::2] + 1j * sol[1::2]).T


@dataclass
class _Angle:
    k: np.ndarray
    phase: np.ndarray
    modulation: float
    peak_snr: float
    harmonic: float
    corr_map: np.ndarray
    band_map: np.ndarray


# A guessed carrier is doubted (a warning) when the same angle's band holds a candidate this many times more
# significant outside the guessed region: the guess then took a side lobe of the real carrier (simulated SNR 20,
# angle 2's carrier guessed for angle 1: 24 inside, 262 outside).
GUESS_DOUBT = 3.0


def _estimate_angle(d, T: _Transfer, var: float, order: int, k_guess, min_peak_snr: float, label: str,
                    doubt_guess: bool = False) -> _Angle:
    P, h, w = d.shape
    mean = d.mean(axis=(1, 2), keepdims=True)
    if np.all(mean > 0):  # equal frame intensities: flicker and bleaching would leak the 0 band into the others
        d = d * (mean.mean() / mean)
    nominal = 2 * np.pi * np.arange(P) / P
    step = 0.3 / (T.s * min(h, w))
    n_sep = max(order, (P - 1) // 2)  # separate every order the phases allow
    var_b = var * np.sum(np.abs(_mixing(nominal, n_sep)[1]) ** 2)

    def separate(psi):
        W = _mixing(psi, n_sep)
        bands = np.einsum("mp,pn->mn", W, d.reshape(P, -1)).reshape(-1, h, w)
        s0 = bands[0].real
        corr = _Correlator(bands[1], s0, T, var_b, var * np.sum(np.abs(W[0]) ** 2))
        return W, s0, list(bands[1:1 + n_sep]), corr

    W, s0, b, corr = separate(nominal)
    k, cmap = _find_carrier(corr, T, k_guess, min_peak_snr, label, step)
    if doubt_guess:
        _doubt_guess(corr, T, k, label)
    # The phase steps. Frame p minus s0, shifted by k, against s0 gives C (u_p - lam): its +1 component
    # u_p = exp(i psi_p) less the part lam = mean(u) that s0 took up (s0 is the plain mean of the frames
    # when separated with equidistant steps). These points lie on a circle of radius |C| centred at
    # -C lam; a circle fit gives psi_p, up to an error from the object's own correlation at 2 k (0.02 -
    # 0.14 rad seen with equidistant steps) and the noise. So the nominal steps are kept unless the fitted
    # ones differ by more than PHASE_STEP_TOL and 4 x their noise; then the bands are separated again.
    frames = [_Correlator(d[p] - s0, s0, T, var, corr.var_0) for p in range(P)]
    cp = np.array([c.factor(k) for c in frames])
    tol = max(PHASE_STEP_TOL, 4 / max(min(c.zscore(k) for c in frames), 1e-3))
    psi = _circle_phases(cp)
    if psi is not None:
        off = _wrap(psi - nominal)
        if np.abs(_wrap(off - np.angle(np.exp(1j * off).mean()))).max() >= tol:
            again = separate(psi)
            k2 = again[3].refine(k, step)
            if again[3].zscore(k2) >= min_peak_snr:  # kept only where the carrier stays as significant as asked
                (W, s0, b, corr), k = again, k2  # (it fell to 3.4 against a threshold of 10: stored all the same)
    snr = corr.zscore(k)
    a = _frame_factors(d - s0, b)
    c1 = corr.factor(k)
    harmonic = np.nan
    if order == 2:  # band 2 against band 1 at the shift k: their ratio c2 / c1 = h2 exp(i phi_ref)
        ratio = _Correlator(b[1], b[0], T, var * np.sum(np.abs(W[2]) ** 2), corr.var_b).factor(k)
        harmonic = float(np.real(ratio * np.exp(-1j * np.angle(c1))))
    band_map = np.fft.fftshift(np.abs(np.fft.fft2(b[0] * _tukey2((h, w)))) ** 2).astype(np.float32)
    return _Angle(k, _wrap(np.angle(c1) + np.angle(a[:, 0])), float(np.clip(2 * abs(c1), 0, 1)), snr,
                  harmonic, cmap, band_map)


def _doubt_guess(corr: _Correlator, T: _Transfer, k, label: str) -> None:
    """Warn when the band of ``corr`` holds, over the whole spectrum, a candidate GUESS_DOUBT times more
    significant than the guided carrier ``k`` and away from it (not ``+-k`` within 10 %)."""
    cands, _ = _candidates(corr.band, corr.S0_real, T, corr.var_b, None, n=5)
    z = np.array([corr.zscore(c) for c in cands])
    i, zk = int(np.argmax(z)), corr.zscore(k)
    c, kmag = cands[i], np.hypot(*k)
    away = min(np.hypot(*(c - k)), np.hypot(*(c + k))) > 0.1 * kmag
    if away and z[i] > GUESS_DOUBT * zk:
        s = T.s
        warn(f"{label}: the guessed carrier (significance {zk:.1f}) may be a side lobe: a candidate {z[i] / zk:.0f}x "
             f"as significant lies outside the guessed region, period {1 / np.hypot(*c):.2f} fine px at "
             f"{np.degrees(np.arctan2(c[0], c[1])) % 180:.1f} deg ({np.hypot(*c) * s:.3f} cycles per camera pixel); "
             "is the guess for this angle right? Check with --figure", stacklevel=4)


@dataclass
class EstimateResult:
    """Estimated illumination of one raw stack.

    ``params`` holds all K frames (normalised: kx > 0, or ky > 0 if kx = 0). Per angle: ``k_camera``
    (n_angles, 2) as (ky, kx) in cycles per CAMERA pixel, ``angle_deg`` (atan2(ky, kx), -90..90],
    ``period_px`` in FINE pixels, ``modulation``, ``peak_snr`` (significance of the carrier: the band
    correlation at ``k`` over its standard deviation under noise alone; pure Gaussian noise gives 1-4, an
    angle without a carrier in frames of an object up to about 6) and
    ``harmonic`` (relative 2nd-harmonic amplitude, NaN unless ``order=2``). ``phase`` (K,) are the
    frame phases of the fine-grid formula, in radians. ``maps`` holds per angle the band
    cross-correlation map and the +1 band power spectrum (fftshifted, for :meth:`figure`).

    Hexagonal SIM (``family`` "hexagonal", :func:`estimate_hexagonal`): ``params`` is a
    :class:`~cusim.patterns.HexagonalParams`, the per-angle arrays hold the 3 carriers, ``phase`` is (K, 3),
    ``n_angles`` is 1 and ``closure`` the relative length of the smallest ``+-k1 +- k2 +- k3`` (0 for a
    lattice of three beams).
    """

    params: SinusoidParams | HexagonalParams
    k_camera: np.ndarray
    angle_deg: np.ndarray
    period_px: np.ndarray
    modulation: np.ndarray
    peak_snr: np.ndarray
    phase: np.ndarray
    n_angles: int
    n_phases: int
    upsample: int
    harmonic: np.ndarray
    otf_source: str = ""
    maps: list = field(default_factory=list, repr=False)
    family: str = "linear"
    closure: float = float("nan")
    lattice: tuple = ()  # the angles (0-based) whose carrier the lattice pass found (estimate_params, lattice) ...
    lattice_z: float = LATTICE_Z  # ... at this significance or more, ...
    lattice_alone: bool = True  # ... after a search alone (False: one carrier was guessed, angle 1's)

    @property
    def hexagonal(self) -> bool:
        return self.family == HexagonalParams.family

    def summary(self) -> str:
        """A short table: one line per angle (hexagonal: per carrier), then the frame phases."""
        what = "carrier" if self.hexagonal else "angle"
        head = (f"hexagonal SIM, 3 carriers x {self.n_phases} phases (closure |k1 +- k2 +- k3| / |k| "
                f"{self.closure:.2g})" if self.hexagonal else f"{self.n_angles} angles x {self.n_phases} phases")
        lines = [f"{head}, upsample {self.upsample}, OTF: {self.otf_source}",
                 f"{what:>7}  ky (1/cam px)  kx (1/cam px)  period (fine px)  angle (deg)  modulation  peak SNR"
                 + ("  2nd harmonic" if np.isfinite(self.harmonic).any() else "")]
        for a in range(len(self.k_camera)):
            ky, kx = self.k_camera[a]
            line = (f"{a + 1:7d}  {ky:13.5f}  {kx:13.5f}  {self.period_px[a]:16.3f}  {self.angle_deg[a]:11.3f}  "
                    f"{self.modulation[a]:10.3f}  {self.peak_snr[a]:8.1f}")
            if np.isfinite(self.harmonic[a]):
                line += f"  {self.harmonic[a]:13.3f}"
            lines.append(line)
        if self.lattice:
            which = ", ".join(str(a + 1) for a in self.lattice)
            how = ("not found alone; found near the lattice of the others" if self.lattice_alone else
                   "found on the lattice of angle 1, whose carrier was guessed")
            off = " (no lattice: lattice=False, cusim estimate --no-lattice)" if self.lattice_alone else ""
            lines.append(f"angle{'s' if len(self.lattice) > 1 else ''} {which}: {how} (equal |k|, angles "
                         f"{180 / self.n_angles:g} deg apart) at peak SNR >= {self.lattice_z:g}{off}")
        ph = self.phase.T if self.hexagonal else self.phase.reshape(self.n_angles, self.n_phases)
        lines.append(f"phases (rad{', per carrier' if self.hexagonal else ''}): "
                     + "; ".join(" ".join(f"{v:+.3f}" for v in row) for row in ph))
        return "\n".join(lines)

    def figure(self, path) -> str:
        """Per angle: log band cross-correlation map and log +1-band spectrum, carriers circled; in the
        format of ``path``'s suffix (.png, .pdf, .svg, .jpg)."""
        from ._outputs import figure_kind  # noqa: PLC0415

        kind = figure_kind("figure", path)
        os.environ.setdefault("MPLBACKEND", "Agg")
        import matplotlib  # noqa: PLC0415, RUF100

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415, RUF100

        n = len(self.maps)
        what = "carrier" if self.hexagonal else "angle"
        fig, axes = plt.subplots(2, n, figsize=(3.4 * n, 6.8), squeeze=False)
        for a, (cmap, bmap) in enumerate(self.maps):
            ky, kx = self.k_camera[a]
            for row, (img, title) in enumerate(((cmap, "band x widefield correlation"), (bmap, "+1 band spectrum"))):
                ax = axes[row, a]
                ax.imshow(np.log10(img + img.max() * 1e-12), cmap="magma", extent=(-0.5, 0.5, 0.5, -0.5))
                for sign in (1, -1):
                    ax.add_patch(matplotlib.patches.Circle((sign * kx, sign * ky), 0.03, fill=False, color="cyan"))
                ax.set_title(f"{what} {a + 1}: {title}\n{self.angle_deg[a]:.2f} deg, "
                             f"period {self.period_px[a]:.2f} px, "
                             f"m {self.modulation[a]:.2f}, SNR {self.peak_snr[a]:.0f}", fontsize=7)
                ax.set_xlabel("kx (cycles / camera px)", fontsize=7)
                ax.set_ylabel("ky", fontsize=7)
                ax.tick_params(labelsize=6)
        fig.tight_layout()
        with atomic_target(path) as tmp:
            fig.savefig(tmp, dpi=80, format=kind)
        plt.close(fig)
        return str(path)


# -- public entry points -----------------------------------------------------------------------------------
def estimate_params(frames, *, upsample: int, n_angles: int | None = None, n_phases: int | None = None,
                    psf=None, order: int = 1, k_guess=None, min_peak_snr: float = MIN_PEAK_SNR,
                    lattice: bool = True) -> EstimateResult:
    """Estimate carriers, phases and modulation of sinusoidal SIM patterns from raw frames.

    Carriers are searched from 0.15 of the OTF cut-off (a pattern coarser than that adds no resolution; below it
    the object's own low frequencies would pass for carriers) up to the camera's Nyquist limit on either axis
    (the corners of the spectrum included: on an undersampled camera a diagonal carrier has |k| up to 0.7 cycles
    per camera pixel). The phase steps are fitted from the frames and kept equidistant unless the fit departs by
    more than ``PHASE_STEP_TOL``; with 3 phases the fit cannot tell unequal steps from the object's own correlation
    at twice the carrier, which on small fields can put the phases 0.2-0.6 rad off (noise-free 3 x 3 simulations
    of 24-80 camera pixels; within 0.015 rad at 256).

    Parameters
    ----------
    frames : array (K, h, w)
        Raw frames on the camera grid, angle-major (frames ``a * n_phases .. a * n_phases + n_phases - 1``
        are angle ``a``); any gain and a common offset are allowed.
    upsample : int
        Fine-grid factor ``s`` of the reconstruction; results are in cycles per FINE pixel.
    n_angles, n_phases : int, optional
        Default from K: 9 -> 3 x 3, 15 -> 3 x 5, 25 -> 5 x 5; otherwise required.
    psf : ndarray or Widefield, optional
        Fine-grid PSF array or :class:`~cusim.optics.Widefield`. Without it the cut-off is measured from
        the widefield spectrum and an ideal OTF of that cut-off is used (modulation then approximate).
    order : {1, 2}
        2 also estimates the relative amplitude of the 2nd harmonic (saturated / nonlinear SIM, needs
        ``n_phases >= 5``); it is stored as ``params.harmonics`` (K, 1).
    k_guess : array (n_angles, 2) or (2,), optional
        Approximate carriers (ky, kx) in cycles per fine pixel; the search stays within 10 % (at least
        3 frequency bins) of +-k_guess. One carrier (2,) for several angles is angle 1's: the others are
        searched where it puts them, as the lattice pass does (``lattice`` aside), from significance
        ``min(min_peak_snr, LATTICE_Z)``. In so small a region an angle without any carrier scores less than
        over the whole spectrum (simulated filaments: at most 5.3 there, 6.3 blind; pure Gaussian noise at
        most 2.2), so a lower ``min_peak_snr`` is safer there; below about 5.5 a carrier is not told from
        none by its significance alone (check its |k| and angle against the optics).
    min_peak_snr : float
        Minimum significance of every carrier (``EstimateResult.peak_snr``; an angle without a carrier scores
        up to about 6 over the whole spectrum, pure Gaussian noise 1-4). A
        candidate that is very significant (3 x this) but fits a carrier poorly is refused too.
    lattice : bool
        Without ``k_guess``: an angle whose carrier does not reach ``min_peak_snr`` on its own is searched again
        near where the angles found put it (the same |k|, angles ``180 / n_angles`` degrees apart, stepping
        either way), in the small region of a guess, and taken from significance ``LATTICE_Z`` (6; an angle
        without any carrier scored at most 5.3 there on simulated frames), or ``min_peak_snr`` if lower. The
        found angles must lie on one such lattice (within ``LATTICE_TOL_DEG``); ``EstimateResult.lattice``
        lists the angles found so. False: every angle alone.

    Returns
    -------
    EstimateResult

    Raises
    ------
    EstimationError
        Bad shapes or counts, or no carrier peak stands out of the noise for some angle.

    Warns
    -----
    CusimWarning
        The frames look phase-major: the angles are far from evenly spaced over 180 degrees or the phase
        steps far from 2 pi / n_phases, and the frames reordered fit clearly better (:func:`_frame_order_advice`;
        refused instead where the carriers as given share a direction).
    """
    kw = dict(upsample=upsample, n_angles=n_angles, n_phases=n_phases, psf=psf, order=order, k_guess=k_guess,
              min_peak_snr=min_peak_snr, lattice=lattice)
    result = _estimate(frames, **kw)
    _check_result(frames, result, **kw)
    return result


def _prepare(d: np.ndarray, s: int, psf):
    """The transfer function, a line saying where it came from, and the noise variance of ``d`` (K, h, w),
    which is scaled in place to unit mean absolute value (keeps the correlation sums finite)."""
    h, w = d.shape[1:]
    if min(h, w) < 16:
        raise EstimationError(f"frames: {h} x {w} pixels is too small to find a carrier; expected at least 16 x 16")
    if psf is None:
        T = _Transfer(_cutoff_from_spectrum(d.mean(axis=0), s), s, (h, w))
        source = f"ideal, cut-off {T.cutoff * s:.3f} cycles/camera px measured from the widefield spectrum"
    else:
        T = _Transfer(psf, s, (h, w))
        source = "PSF array" if T.psf is not None else f"ideal widefield, cut-off {T.cutoff * s:.3f} cycles/camera px"
    d /= max(float(np.abs(d).mean()), 1e-30)
    return T, source, _noise_var(d, T())


def _checked_guess(k_guess, shape: tuple[int, int], expected: str, one_for_all: bool = False) -> np.ndarray:
    """``k_guess`` as a float array of ``shape`` (with ``one_for_all``, one carrier (2,) stands for every row),
    finite and non-zero; else one :class:`EstimationError` that says what was expected."""
    try:
        g = np.asarray(k_guess, dtype=np.float64)
    except (TypeError, ValueError):
        raise EstimationError(f"k_guess: expected {expected} in cycles per fine pixel, got {k_guess!r}") from None
    if g.shape != shape and not (one_for_all and g.shape == (2,)):
        raise EstimationError(f"k_guess: expected {expected} in cycles per fine pixel, got shape {g.shape}")
    g = np.broadcast_to(g, shape)
    if not np.isfinite(g).all() or (np.hypot(g[:, 0], g[:, 1]) == 0).any():
        raise EstimationError(f"k_guess: expected finite, non-zero carriers in cycles per fine pixel, got {g.tolist()}")
    return g


def carrier_guess(period_px, angle_deg) -> np.ndarray:
    """Carriers (ky, kx) in cycles per fine pixel (the ``k_guess`` of :func:`estimate_params`) from periods in
    fine pixels and angles in degrees, the units of :meth:`EstimateResult.summary`'s "period (fine px)" and
    "angle (deg)" columns: ``k = (sin a, cos a) / period``."""
    period = np.atleast_1d(np.asarray(period_px, dtype=np.float64))
    angle = np.radians(np.atleast_1d(np.asarray(angle_deg, dtype=np.float64)))
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1) / period[..., None]


def _estimate(frames, *, upsample: int, n_angles: int | None = None, n_phases: int | None = None, psf=None,
              order: int = 1, k_guess=None, min_peak_snr: float = MIN_PEAK_SNR, lattice: bool = True) -> EstimateResult:
    """:func:`estimate_params` without the check of the frame order."""
    d = _stack(frames)
    K, h, w = d.shape
    s = check_int("upsample", upsample, 1, 8, error=EstimationError)
    if n_angles is None and n_phases is None and K not in ANGLE_PHASE_DEFAULTS:
        if K == HEX_PHASES:  # the linear estimate of hexagonal frames (estimate_dataset would have chosen it)
            raise EstimationError(f"frames: {K} frames are hexagonal SIM's layout, not a linear one ({_LAYOUTS}); "
                                  "estimate them as hexagonal SIM (estimate_hexagonal; cusim estimate --family "
                                  "hexagonal), or give n_angles and n_phases for a linear layout")
        raise EstimationError(f"frames: {K} frames fit neither the linear SIM layouts ({_LAYOUTS}) nor hexagonal SIM "
                              f"({HEX_PHASES} frames); give n_angles and n_phases (--angles, --phases) for another "
                              "linear layout")
    nA, nP = angle_phase_counts(K, n_angles, n_phases, error=EstimationError)
    check_choice("order", order, (1, 2), error=EstimationError)  # linear SIM, or with a 2nd harmonic
    check_positive("min_peak_snr", min_peak_snr, error=EstimationError)
    if nP < 2 * order + 1:
        raise EstimationError(f"n_phases: {nP} phases cannot separate the orders up to {order}; "
                              f"expected at least {2 * order + 1}")
    single = False  # one carrier guessed for several angles: angle 1's, the others searched on its lattice
    if k_guess is not None:
        checked = _checked_guess(k_guess, (nA, 2), f"one carrier (2,) or one per angle ({nA}, 2)", one_for_all=True)
        single = nA > 1 and np.shape(k_guess) == (2,)  # (a ragged guess is refused above, in our words)
        if single and not lattice:  # the other angles would have been searched on the lattice regardless
            raise EstimationError(f"lattice: one carrier guessed (angle 1's) stands for {nA} angles through their "
                                  "lattice, which is off; expected a carrier per angle, or the lattice on")
        k_guess = checked
    T, source, var = _prepare(d, s, psf)
    check_frames_vary(d, error=EstimationError)  # all-zero frames: "nothing to take for a carrier" before

    def one(a, guess, threshold, doubt=False):
        return _estimate_angle(d[a * nP:(a + 1) * nP], T, var, order, guess, threshold, f"angle {a + 1} of {nA}",
                               doubt_guess=doubt)

    angles, failed = [], {}
    for a in range(nA):
        if single and a > 0:  # not searched alone: only where angle 1 puts it
            angles.append(None)
            failed[a] = None
            continue
        try:
            angles.append(one(a, None if k_guess is None else k_guess[a], min_peak_snr, doubt=k_guess is not None))
        except EstimationError as e:
            if k_guess is not None or not lattice or nA < 2:  # a single guess's angle 1 too: nothing to go on
                raise
            angles.append(None)
            failed[a] = e
    threshold = min(min_peak_snr, LATTICE_Z)
    if failed:
        found = {a: r for a, r in enumerate(angles) if r is not None}
        if not found:
            raise failed[min(failed)]
        filled, reached = _lattice_pass(one, {a: r.k for a, r in found.items()}, sorted(failed), nA, threshold)
        if filled is None:
            first = min(failed)
            near = (f"significance {reached[first]:.1f} there, below the {threshold:g} needed" if first in reached
                    else "but the angles found lie on no such lattice")
            head = (f"angle {first + 1} of {nA}: one carrier guessed (angle 1's) for {nA} angles" if single
                    else str(failed[first]))
            sep = " " if head.endswith("?") else ". "
            raise EstimationError(
                f"{head}{sep}Searched{'' if single else ' again'} where the angles found "
                f"({', '.join(str(a + 1) for a in found)}) put its "
                f"carrier (equal |k|, angles {180 / nA:g} deg apart): {near}") from None
        angles = [filled.get(a, r) for a, r in enumerate(angles)]
    k = np.repeat([r.k for r in angles], nP, axis=0)
    mod = np.array([r.modulation for r in angles])
    harm = np.array([r.harmonic for r in angles])
    params = SinusoidParams(k, np.concatenate([r.phase for r in angles]), np.repeat(np.minimum(mod, 1), nP),
                            None if order == 1 else np.repeat(harm, nP)[:, None]).normalised()
    kn = params.k[::nP]
    return EstimateResult(params=params, k_camera=kn * s, angle_deg=np.degrees(np.arctan2(kn[:, 0], kn[:, 1])),
                          period_px=1 / np.hypot(kn[:, 0], kn[:, 1]), modulation=mod,
                          peak_snr=np.array([r.peak_snr for r in angles]), phase=params.phase, n_angles=nA,
                          n_phases=nP, upsample=s, harmonic=harm, otf_source=source,
                          maps=[(r.corr_map, r.band_map) for r in angles], lattice=tuple(sorted(failed)),
                          lattice_z=threshold, lattice_alone=not single)


DISTINCT_ANGLE_DEG = 5.0  # linear SIM's angles are 180 / n_angles apart (36 deg at 5): two within this are one


def _check_distinct_angles(result: EstimateResult) -> None:
    """Refuse carriers of two angles in one direction (mod 180 deg): the frames are not angles of sinusoidal SIM
    (lattice or speckle patterns gave 5 "angles" within 1 deg, each significant), or not in angle-major order
    (:func:`_check_result` names the order where the frames look of the other)."""
    theta = np.asarray(result.angle_deg, dtype=np.float64) % 180
    for i in range(len(theta)):
        for j in range(i):
            gap = abs((theta[i] - theta[j] + 90) % 180 - 90)
            if gap < DISTINCT_ANGLE_DEG:
                raise EstimationError(
                    f"angles {j + 1} and {i + 1} of {len(theta)}: carriers in one direction ({theta[j]:.1f} and "
                    f"{theta[i]:.1f} deg); expected sinusoidal SIM frames in angle-major order, each angle its own "
                    "direction (lattice or speckle illumination is not estimated: give its patterns)")


def _lattice_pass(one, found: dict, failed: list, n_angles: int, threshold: float):
    """The carriers of the ``failed`` angles searched near the lattice of the ``found`` ones ({angle: k}, k in
    cycles per fine pixel): |k| their mean, angle ``theta0 + sign * a * 180 / n_angles`` for both signs (the
    angles may step either way), ``theta0`` fitted to the found angles (modulo 180 degrees), which must lie
    within LATTICE_TOL_DEG of it. ``one(a, k_guess, min_peak_snr)`` estimates angle ``a`` near ``k_guess``.
    Returns {angle: _Angle} for every failed angle, from the sign whose weakest carrier is the most
    significant, or None where neither sign finds them all; and {angle: the best significance it reached}
    over the searches that failed."""
    ks = np.array(list(found.values()))
    kmag = float(np.hypot(ks[:, 0], ks[:, 1]).mean())
    theta = np.arctan2(ks[:, 0], ks[:, 1])
    idx = np.array(list(found))
    best, reached = None, {}
    for sign in (1, -1):
        step = sign * np.pi / n_angles
        doubled = np.exp(2j * (theta - idx * step))  # carriers +-k are one carrier: angles modulo 180 degrees
        theta0 = np.angle(doubled.mean()) / 2
        if np.degrees(np.abs(np.angle(doubled * np.exp(-2j * theta0))) / 2).max() > LATTICE_TOL_DEG:
            continue  # the found angles do not sit on one lattice of this sign
        got = {}
        for a in failed:
            th = theta0 + a * step
            try:
                got[a] = one(a, kmag * np.array([np.sin(th), np.cos(th)]), threshold)
            except EstimationError as e:
                if hasattr(e, "significance"):
                    reached[a] = max(reached.get(a, 0.0), e.significance)
                break
        else:
            weakest = min(r.peak_snr for r in got.values())
            if best is None or weakest > best[0]:
                best = (weakest, got)
    return (None if best is None else best[1]), reached


# -- hexagonal SIM ----------------------------------------------------------------------------------------
HEX_HINT = "are these hexagonal SIM frames, 7 phase steps in order?"
HEX_CLOSURE_TOL = 0.01  # |k1 +- k2 +- k3| / |k| of three carriers that a lattice of three beams makes (0 exactly)


def _closure(k: np.ndarray) -> float:
    """The smallest ``|k1 + a k2 + b k3|`` over signs a, b, relative to the mean ``|k|`` (0 for three beams)."""
    sums = [np.hypot(*(k[0] + a * k[1] + b * k[2])) for a in (1, -1) for b in (1, -1)]
    return float(min(sums) / np.mean(np.hypot(k[:, 0], k[:, 1])))


def estimate_hexagonal(frames, *, upsample: int, psf=None, k_guess=None,
                       min_peak_snr: float = MIN_PEAK_SNR) -> EstimateResult:
    """Estimate the three carriers, the phase of every carrier in every frame and the modulations of
    hexagonal-lattice SIM (:class:`~cusim.patterns.HexagonalParams`) from its 7 raw frames.

    The steps of the module docstring, once per carrier: the 7 bands are separated over the frames with
    the nominal steps (carrier j steps by ``2 pi j / 7``: a 7-point DFT, HexSimProcessor's scheme; band
    index j holds carrier j), band j is searched against the 0 band for its carrier and refined sub-pixel
    by the OTF-weighted band comparison; each frame's steps are measured by the circle fit of step 4 per
    carrier (bands separated again with them when they are clearly off the nominal ones); the ratio
    ``c_j`` of band j to the 0 band and each frame's factor give the phases, ``3 |c_j|`` the modulations
    (the cosines' amplitude is ``(2/3) m_j``). Three beams make
    carriers that close (``+-k1 +- k2 +- k3 = 0``) at 120 degrees: a set that does not close within
    ``HEX_CLOSURE_TOL`` is searched again near what the other two predict, and refused if it still does not.

    ``k_guess`` (3, 2): approximate carriers in cycles per fine pixel, in step order. Other arguments and
    the result as :func:`estimate_params` (see :class:`EstimateResult` for the hexagonal fields).
    """
    d = _stack(frames)
    K = d.shape[0]
    s = check_int("upsample", upsample, 1, 8, error=EstimationError)
    check_positive("min_peak_snr", min_peak_snr, error=EstimationError)
    if K != HEX_PHASES:
        raise EstimationError(f"frames: hexagonal SIM takes {HEX_PHASES} frames (one per phase step), got {K}")
    if k_guess is not None:
        k_guess = _checked_guess(k_guess, (3, 2), "shape (3, 2) for hexagonal SIM")
    T, source, var = _prepare(d, s, psf)
    check_frames_vary(d, error=EstimationError)
    mean = d.mean(axis=(1, 2), keepdims=True)
    if np.all(mean > 0):  # equal frame intensities (as in _estimate_angle)
        d = d * (mean.mean() / mean)
    h, w = d.shape[1:]
    step = 0.3 / (s * min(h, w))
    nominal = 2 * np.pi * np.outer(np.arange(K), [1, 2, 3]) / K
    bands, s0, corrs = _hex_bands(d, nominal, T, var)
    found = [_find_carrier(c, T, None if k_guess is None else k_guess[j], min_peak_snr,
                           f"hexagonal carrier {j + 1} of 3", step, hint=HEX_HINT) for j, c in enumerate(corrs)]
    k = np.array([f[0] for f in found])
    if _closure(k) > HEX_CLOSURE_TOL:
        k = _close_lattice(k, corrs, T, min_peak_snr, step)
    # The steps, as in _estimate_angle: each frame minus s0, shifted by k_j, against s0 traces a circle
    # per carrier; its angles are the steps. Kept nominal unless clearly off, else separated again.
    per_frame = [_Correlator(d[n] - s0, s0, T, var, corrs[0].var_0) for n in range(K)]
    z = np.array([[f.factor(kj) for kj in k] for f in per_frame])  # (7, 3)
    tol = max(PHASE_STEP_TOL, 4 / max(min(f.zscore(kj) for f in per_frame for kj in k), 1e-3))
    fitted = [_circle_phases(z[:, j]) for j in range(3)]
    if all(p is not None for p in fitted):
        psi = np.stack(fitted, axis=1)
        off = _wrap(psi - nominal)
        if np.abs(_wrap(off - np.angle(np.exp(1j * off).mean(axis=0)))).max() >= tol:
            # kept only if the bands separated with them fit their carriers better: on small fields the
            # circle fit strays by itself (0.3 rad on 64 x 64 camera pixels), and bands leak less with right steps
            again = _hex_bands(d, psi, T, var)
            k2 = np.array([corr.refine(kj, step) for corr, kj in zip(again[2], k)])
            if sum(c.score(kj) for c, kj in zip(again[2], k2)) > sum(c.score(kj) for c, kj in zip(corrs, k)):
                (bands, s0, corrs), k = again, k2
    a = _frame_factors(d - s0, list(bands))  # (7, 3): each frame's factor of each band
    c = np.array([corr.factor(kj) for corr, kj in zip(corrs, k)])
    phase = _wrap(np.angle(c)[None, :] + np.angle(a))
    mod = np.clip(3 * np.abs(c), 0, 1)
    params = HexagonalParams(k, phase, mod).normalised()
    kn = params.k
    maps = [(f[1], np.fft.fftshift(_abs2(np.fft.fft2(b * _tukey2((h, w))))).astype(np.float32))
            for f, b in zip(found, bands)]
    return EstimateResult(params=params, k_camera=kn * s, angle_deg=np.degrees(np.arctan2(kn[:, 0], kn[:, 1])),
                          period_px=1 / np.hypot(kn[:, 0], kn[:, 1]), modulation=mod,
                          peak_snr=np.array([corr.zscore(kj) for corr, kj in zip(corrs, k)]), phase=params.phase,
                          n_angles=1, n_phases=K, upsample=s, harmonic=np.full(3, np.nan), otf_source=source,
                          maps=maps, family=HexagonalParams.family, closure=_closure(k))


def _hex_bands(d: np.ndarray, psi: np.ndarray, T: _Transfer, var: float):
    """Bands +1, +2, +3 and the 0 band of the frames ``d`` (7, h, w) whose carrier j has phase ``psi[n, j]``
    in frame n (least squares over the 7 bands 0, +-1, +-2, +-3), and each band's correlator."""
    K, h, w = d.shape
    u = np.exp(1j * psi)
    W = np.linalg.pinv(np.concatenate([np.ones((K, 1)), u, np.conj(u)], axis=1))
    bands = np.einsum("mp,pn->mn", W, d.reshape(K, -1)).reshape(-1, h, w)
    s0, var_0 = bands[0].real, var * np.sum(np.abs(W[0]) ** 2)
    corrs = [_Correlator(bands[j], s0, T, var * np.sum(np.abs(W[j]) ** 2), var_0) for j in (1, 2, 3)]
    return bands[1:4], s0, corrs


def _close_lattice(k: np.ndarray, corrs, T: _Transfer, min_peak_snr: float, step: float) -> np.ndarray:
    """Three carriers that close (:func:`_closure`): each one in turn searched again near the +-sum of the
    other two (band j holds ``k_j``; which signs is not assumed) and taken if it fits its band at least as
    well as the first pick; of such sets the one with the most significant weakest carrier. EstimationError
    when none closes."""
    best, best_z = None, -np.inf
    for j in range(3):
        o = [i for i in range(3) if i != j]
        for sign in (1, -1):
            guess = k[o[0]] + sign * k[o[1]]
            for g in (guess, -guess):
                try:
                    kj, _ = _find_carrier(corrs[j], T, g, min_peak_snr, "", step)
                except EstimationError:
                    continue
                trial = k.copy()
                trial[j] = kj
                # a peak that fits band j worse than the first pick is no carrier, only what lies near the guess
                if _closure(trial) > HEX_CLOSURE_TOL or corrs[j].score(kj) < corrs[j].score(k[j]):
                    continue
                z = min(corr.zscore(ki) for corr, ki in zip(corrs, trial))
                if z > best_z:
                    best, best_z = trial, z
    if best is None:
        kc = ", ".join(f"({v[0] * T.s:.4f}, {v[1] * T.s:.4f})" for v in k)
        raise EstimationError(f"frames: the carriers found, {kc} cycles per camera pixel, do not form a hexagonal "
                              f"lattice (smallest |k1 +- k2 +- k3| is {_closure(k):.3f} |k|, expected below "
                              f"{HEX_CLOSURE_TOL}); {HEX_HINT}")
    return best


def _uneven(res: EstimateResult) -> bool:
    """Whether the angles of ``res`` are far from evenly spaced over 180 degrees, or its phase steps far
    from +-2 pi / n_phases (:data:`ORDER_ANGLE_TOL_DEG`, :data:`ORDER_STEP_TOL`)."""
    if res.n_angles > 1:
        a = np.sort(res.angle_deg % 180)
        gaps = np.diff(np.r_[a, a[0] + 180])
        if np.abs(gaps - 180 / res.n_angles).max() > ORDER_ANGLE_TOL_DEG:
            return True
    steps = np.diff(res.phase.reshape(res.n_angles, res.n_phases), axis=1)
    nominal = 2 * np.pi / res.n_phases
    off = np.minimum(np.abs(_wrap(steps - nominal)), np.abs(_wrap(steps + nominal)))
    return bool(off.max() > ORDER_STEP_TOL)


def _frame_order_advice(frames, result: EstimateResult, *, source_order: str = "angle-major", **kw) -> str | None:
    """The advice to re-import ``frames`` in the other order, when, estimated as angle-major into ``result``,
    they look like frames of that order: ``result`` has uneven angles or phase steps (:func:`_uneven`) and the
    estimate (same keywords ``kw``) from the frames reordered has neither, with a higher least peak SNR; else None.

    ``source_order`` is how the frames were imported (the dataset attribute ``source_order``; stored
    frames are angle-major either way): frames imported as angle-major are tried as phase-major and vice
    versa. Costs one more estimate, only when ``result`` looks wrong."""
    from .importers import to_angle_major, to_phase_major  # noqa: PLC0415

    nA, nP = result.n_angles, result.n_phases
    if nA < 2 or not _uneven(result):
        return None
    other = "phase-major" if source_order == "angle-major" else "angle-major"
    reorder = to_angle_major if source_order == "angle-major" else to_phase_major
    try:
        alt = _estimate(reorder(np.asarray(frames), nA, nP), **{**kw, "n_angles": nA, "n_phases": nP})
    except EstimationError:
        return None
    if _uneven(alt) or alt.peak_snr.min() <= result.peak_snr.min():
        return None

    def angles(r):
        return ", ".join(f"{a:.0f}" for a in np.sort(r.angle_deg % 180))

    return (f"frames look {other}, not {source_order}: the estimate with that order has evenly spaced angles "
            f"({angles(alt)} deg; as given: {angles(result)} deg) and least peak SNR {alt.peak_snr.min():.0f} "
            f"(as given: {result.peak_snr.min():.0f}); re-import with --order {other}")


def _check_result(frames, result: EstimateResult, **kw) -> None:
    """The checks of a linear estimate: carriers of distinct directions (:func:`_check_distinct_angles`) and the
    frame order (:func:`_frame_order_advice`). Frames that look of the other order are refused with that advice
    where their carriers as given share a direction (nothing usable to store: 3 x 3 phase-major frames gave
    "angles" at 70, 70 and 131 deg), and warned about otherwise (uneven, but distinct, angles may be meant)."""
    advice = _frame_order_advice(frames, result, **kw)
    try:
        _check_distinct_angles(result)
    except EstimationError:
        if advice is not None:
            raise EstimationError(advice) from None
        raise
    if advice is not None:
        warn(advice, stacklevel=3)


NOT_ESTIMATED = ("lattice", "speckle")  # simulated families (cusim.simulate) that are not sinusoids


def pattern_family(ds, family: str | None = None) -> str:
    """The illumination family of a dataset's frames: ``family`` if given, else the attribute
    ``pattern_family`` (``cusim import stack --family``), else "linear" for a stack imported with angles and
    phases, and otherwise "hexagonal" for 7 frames (no linear layout has 7) and "linear" for any other count."""
    if family is None:
        family = ds.attrs.get("pattern_family") or ("hexagonal" if ds.K == HEX_PHASES and "angles" not in ds.attrs
                                                    else "linear")
    return check_choice("family", family, FAMILIES, error=EstimationError)


def estimate_dataset(ds, t: int = 0, *, family: str | None = None, **kw) -> EstimateResult:
    """:func:`estimate_params` (or :func:`estimate_hexagonal`, ``family`` as :func:`pattern_family`) on
    time point ``t`` of a :class:`~cusim.io.Dataset`.

    ``upsample`` and the OTF (``ds.optics()``, if the dataset has a PSF or optics attributes) come from
    the dataset, and so do ``n_angles`` / ``n_phases`` when it records ``angles`` / ``phases``
    (``cusim import stack``); keywords override them. The frame-order check of :func:`estimate_params`
    knows the order the frames were imported in (attribute ``source_order``).
    """
    check_int("t", t, 0, ds.T - 1, error=EstimationError)
    known = [p for p in inspect.signature(_estimate).parameters if p != "frames"]  # estimate_params' settings
    if unknown := sorted(set(kw) - set(known)):  # a typo reached a private function as a TypeError
        raise EstimationError(f"{', '.join(unknown)}: unknown setting; expected some of {', '.join(known)}")
    if ds.attrs.get("sim_family") in NOT_ESTIMATED:
        raise EstimationError(f"frames: simulated with {ds.attrs['sim_family']} illumination, which is not sinusoidal; "
                              "estimate fits sinusoidal SIM only (linear, nonlinear, hexagonal): use the file's "
                              "/patterns")
    family = pattern_family(ds, family)
    kw.setdefault("upsample", ds.upsample)
    if "psf" not in kw:
        try:
            kw["psf"] = ds.optics()
        except DatasetError:
            kw["psf"] = None
    if family == "hexagonal":
        return estimate_hexagonal(ds.frames(t), **_hexagonal_options(kw))
    if "n_angles" not in kw and "n_phases" not in kw and "angles" in ds.attrs and "phases" in ds.attrs:
        kw["n_angles"], kw["n_phases"] = int(ds.attrs["angles"]), int(ds.attrs["phases"])
    frames = ds.frames(t)
    result = _estimate(frames, **kw)
    _check_result(frames, result, source_order=ds.attrs.get("source_order", "angle-major"), **kw)
    return result


def _hexagonal_options(kw: dict) -> dict:
    """``kw`` of :func:`estimate_dataset` for :func:`estimate_hexagonal`: the linear layout's counts only as
    1 x 7 (what ``cusim import stack --family hexagonal`` records), order 1."""
    kw = dict(kw)
    n_angles, n_phases, order = kw.pop("n_angles", None), kw.pop("n_phases", None), kw.pop("order", 1)
    if kw.pop("lattice", True) is False:  # the linear layout's second pass: not silently ignored
        raise EstimationError("lattice=False (--no-lattice): the lattice pass is linear SIM's; a hexagonal estimate "
                              "finds its three carriers jointly")
    if n_angles not in (None, 1) or n_phases not in (None, HEX_PHASES):
        raise EstimationError(f"n_angles, n_phases: hexagonal SIM is 1 x {HEX_PHASES} frames (three carriers in "
                              f"every frame), got {n_angles} x {n_phases}")
    if order != 1:
        raise EstimationError(f"order: hexagonal SIM is estimated with order 1 (no harmonics), got {order}")
    return kw
