"""Simulated SIM acquisitions with ground truth, through the toolkit's own forward model.

:func:`simulate` builds a seeded phantom (:mod:`cusim.phantoms`) on the FINE grid, an illumination
family (:mod:`cusim.patterns`), ideal widefield optics, and a :class:`cusim.io.Dataset` holding them;
the noise-free frames are ``ds.operator().forward(ground_truth)``, the very operator a reconstruction
of the dataset will use (same patterns, OTF and ``pad``). Then, in photo-electrons (1 ADU per e-):

    raw = Poisson(gain * A x) + Normal(0, read_noise^2) + offset

``gain`` sets the mean photon count ``mu`` of the noise-free frames: given directly (``photons``), or
from ``snr`` (mean signal / noise sigma) by solving ``mu / sqrt(mu + read_noise^2) = snr``. The pooled
noise variance over all pixels is ``mean(gain * A x) + read_noise^2``, hence that equation.

Random streams: the phantom uses ``seed`` itself (so for T = 1 the ground truth equals
``phantoms.make(phantom, shape, seed)``); speckle patterns, drift and noise use independent streams
derived from ``seed``.

Time series (T > 1): one phantom drifting at a constant seeded direction by ``drift_px`` fine pixels per
time point (rendered on a larger canvas, shifted with cubic splines, clipped at 0 and cropped, so no
edge effects), the same patterns at every time point, independent noise.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from . import patterns, phantoms
from ._syserrors import check_allocation
from ._validate import check_int, check_number, check_positive
from ._warnings import SATURATED_FRACTION, warn, warn_saturated
from ._version import __version__
from .backend import to_numpy, xp_for
from .io import Dataset
from .optics import Widefield

__all__ = ["simulate", "FAMILIES", "photon_level"]

FAMILIES = ("linear", "nonlinear", "hexagonal", "lattice", "speckle")
DTYPES = ("float32", "uint16")
_UINT16_MAX = 65535
SATURATION = 3.0  # the nonlinear family's peak excitation / saturation intensity when none is given
# frames per family: (n_angles, n_phases) for sinusoids, shifts per lattice axis, speckle frames; hexagonal
# SIM has its fixed 7 frames (patterns.HEX_PHASES)
_DEFAULTS = {"linear": (3, 3), "nonlinear": (5, 5), "hexagonal": patterns.HEX_PHASES, "lattice": 5, "speckle": 25}


def photon_level(snr: float, read_noise: float) -> float:
    """Mean photons ``mu`` with ``mu / sqrt(mu + read_noise**2) == snr`` (Poisson plus Gaussian read noise)."""
    s2 = snr * snr
    return 0.5 * (s2 + math.sqrt(s2 * s2 + 4.0 * s2 * read_noise**2))


def _check_grid(shape, upsample) -> tuple[tuple[int, int], int]:
    s = check_int("upsample", upsample, 1, 8)
    try:
        H, W = (check_int("shape", v, 1) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape: expected two positive integers (H, W) on the fine grid, got {shape!r}") from None
    if H % s or W % s:
        raise ValueError(f"shape: expected H and W divisible by upsample={s}, got {(H, W)}")
    if min(H, W) // s < 4:
        raise ValueError(f"shape: expected a camera grid of at least 4 x 4 pixels, got {(H // s, W // s)}")
    return (H, W), s


def _carrier(optics: Widefield, s: int, pattern_freq) -> float:
    """Illumination frequency in cycles per fine pixel: ``pattern_freq`` x the OTF cut-off, <= Nyquist."""
    cutoff = optics.cutoff(s)
    k = check_positive("pattern_freq", pattern_freq) * cutoff
    if k > 0.5:
        raise ValueError(f"pattern_freq: {pattern_freq} x cut-off {cutoff:.4g} = {k:.4g} cycles per fine pixel "
                         "is above the fine-grid Nyquist limit 0.5; lower it or raise upsample")
    return k


def _check_camera(read_noise, offset, T, seed, drift_px, noise, dtype):
    if not isinstance(noise, (bool, np.bool_)):
        raise ValueError(f"noise: expected True or False, got {noise!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    return (check_number("read_noise", read_noise, lo=0.0), check_number("offset", offset, lo=0.0),
            check_int("T", T, 1), check_int("seed", seed, 0), check_number("drift_px", drift_px, lo=0.0))


def _counts(family: str, n_angles, n_phases, n_frames):
    """Frame-count arguments of ``family``, defaults filled in; those it does not use must be None."""
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    used = {"linear": ("n_angles", "n_phases"), "nonlinear": ("n_angles", "n_phases"),
            "hexagonal": (), "lattice": ("n_phases",), "speckle": ("n_frames",)}[family]
    given = {"n_angles": n_angles, "n_phases": n_phases, "n_frames": n_frames}
    for name, v in given.items():
        if v is not None and name not in used:
            takes = f"it takes {', '.join(used)}" if used else "its frame count is fixed"
            raise ValueError(f"{name}: not used by family {family!r} ({takes})")
    d = _DEFAULTS[family]
    if family in ("linear", "nonlinear"):
        return (check_int("n_angles", d[0] if n_angles is None else n_angles, 1),
                check_int("n_phases", d[1] if n_phases is None else n_phases, 1))
    if not used:
        return d
    v = given[used[0]]
    return check_int(used[0], d if v is None else v, 1)


def _frame_count(family: str, counts) -> int:
    """K, the frames per time point of ``family`` with the frame-count arguments ``counts`` (:func:`_counts`)."""
    if family in ("linear", "nonlinear"):
        return counts[0] * counts[1]
    return counts * counts if family == "lattice" else counts


def _check_memory(shape, s: int, K: int, T: int) -> None:
    """NotEnoughMemory before anything is allocated when the simulation would not fit the free memory.

    Counted: the (K, H, W) float32 patterns (and one rescaled copy of array families), the forward pass
    over the T objects on the padded fine grid (K real planes and their spectra each, 8 bytes a pixel),
    the ground truth, and the camera frames in float64 on their way through the noise model."""
    H, W = shape
    Hp, Wp = H + 8 * s, W + 8 * s  # the operator's zero margin: 4 camera pixels on each side
    nbytes = 8 * K * H * W + 8 * T * K * Hp * Wp + 4 * T * H * W + 32 * T * K * (H // s) * (W // s)
    series = f" at {T} time points" if T > 1 else ""
    check_allocation(nbytes, f"shape: simulating {K} frames of {H}x{W} fine pixels{series}")


def _illumination(family, shape, k, counts, modulation, saturation, angle_offset_deg, seed, n_harmonics=None):
    """(pattern_params, pattern_kind, patterns): the sinusoidal families as parameters, others as arrays.
    ``n_harmonics`` (nonlinear only) keeps the first that many harmonics (orders 2..n_harmonics+1)."""
    if family in ("linear", "nonlinear"):
        n_a, n_p = counts
        if family == "linear":
            p = patterns.linear_params(period_px=1 / k, n_angles=n_a, n_phases=n_p, modulation=modulation,
                                       angle_offset_deg=angle_offset_deg)
        else:  # imperfect modulation mixes in uniform light: all orders scale by `modulation`
            p = patterns.nonlinear_params(saturation=saturation, period_px=1 / k, n_angles=n_a, n_phases=n_p,
                                          angle_offset_deg=angle_offset_deg)
            harm = p.harmonics
            if n_harmonics is not None and harm is not None:
                harm = harm[:, :n_harmonics] if n_harmonics > 0 else None
            p = patterns.SinusoidParams(p.k, p.phase, p.modulation * modulation, harm)
        return p, family, None
    if family == "hexagonal":  # three carriers of frequency k at 120 degrees (the lattice's own reciprocal vectors)
        return (patterns.hexagonal_params(period_px=1 / k, modulation=modulation, angle_offset_deg=angle_offset_deg),
                family, None)
    if family == "lattice":  # reciprocal vector |k| of a hexagonal lattice of spacing a is 2 / (sqrt(3) a)
        pats = patterns.lattice(shape, period_px=2 / (math.sqrt(3) * k), n_shifts=counts,
                                angle_offset_deg=angle_offset_deg)
    else:  # speckle intensity reaches 1 / grain cycles per pixel: the same highest frequency k
        sub = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])
        pats = patterns.speckle(shape, counts, grain_px=1 / k, seed=sub)
    return None, None, ((1 - modulation) + modulation * pats).astype(np.float32)


def _ground_truth(phantom: str, shape, T: int, drift_px: float, seed: int, phantom_params: dict):
    """(H, W) for T = 1, else (T, H, W) drifting by ``drift_px`` per time point; and the drift angle."""
    if T == 1:
        return phantoms.make(phantom, shape, seed, **phantom_params), None
    angle = np.random.default_rng([seed, 2]).uniform(0, 2 * np.pi)
    m = int(np.ceil(drift_px * (T - 1))) + 4
    H, W = shape
    big = phantoms.make(phantom, (H + 2 * m, W + 2 * m), seed, **phantom_params).astype(np.float64)
    out = np.empty((T, H, W), dtype=np.float32)
    for t in range(T):
        d = t * drift_px * np.array([np.sin(angle), np.cos(angle)])
        out[t] = np.maximum(ndimage.shift(big, d, order=3, mode="constant"), 0)[m : m + H, m : m + W]
    return out, float(np.rad2deg(angle))


def _noise_level(snr, photons, read_noise: float) -> tuple[float, dict]:
    """Mean photon count ``mu`` of the clean frames, and the attributes saying how it was chosen."""
    if snr is not None and photons is not None:
        raise ValueError("snr, photons: give at most one (snr = mean signal / noise sigma, or mean photons)")
    if photons is not None:
        mu = check_positive("photons", photons)
        return mu, {"sim_photons_requested": mu}
    snr = 20.0 if snr is None else check_positive("snr", snr)
    return photon_level(snr, read_noise), {"sim_snr_requested": snr}


def _camera(clean_e: np.ndarray, *, noise: bool, read_noise: float, offset: float, dtype: str, seed: int):
    """Raw frames from expected photo-electrons: shot noise, read noise, offset; then the output dtype."""
    raw = clean_e.astype(np.float64)
    if noise:
        rng = np.random.default_rng([seed, 3])
        raw = rng.poisson(np.maximum(raw, 0)).astype(np.float64)  # FFT round-off can dip below 0
        if read_noise > 0:
            raw += rng.normal(0.0, read_noise, raw.shape)
    raw += offset
    attrs = {}
    if dtype == "uint16":
        attrs["sim_clipped_fraction"] = float(np.mean((raw < -0.5) | (raw > _UINT16_MAX + 0.5)))
        attrs["sim_quantization"] = f"rounded to integers and clipped to 0..{_UINT16_MAX}"
        below = float(np.mean(raw < -0.5))  # read noise below a small offset: the noise model no longer holds
        if below > SATURATED_FRACTION:
            warn(f"raw: {100 * below:.3g} % of the pixels clipped at 0 (uint16): the read noise reaches below the "
                 f"offset {offset:g}; raise --offset (a camera's is some 100 counts) or use --dtype float32",
                 stacklevel=3)
        return np.clip(np.round(raw), 0, _UINT16_MAX).astype(np.uint16), attrs
    if noise:
        return raw.astype(np.float32), attrs
    return (clean_e + np.float32(offset)).astype(np.float32), attrs  # exactly gain * A x + offset in float32


def simulate(*, phantom: str = "filaments", shape: tuple[int, int] = (256, 256), upsample: int = 2,
             family: str = "linear", na: float = 1.2, wavelength_nm: float = 520.0, pixel_size_nm: float = 100.0,
             pattern_freq: float = 0.9, n_angles: int | None = None, n_phases: int | None = None,
             n_frames: int | None = None, modulation: float = 1.0, saturation: float | None = None,
             angle_offset_deg: float = 10.0, snr: float | None = None, photons: float | None = None,
             read_noise: float = 1.0, offset: float = 100.0, noise: bool = True, T: int = 1,
             drift_px: float = 0.5, seed: int = 0, dtype: str = "float32", device: str = "auto",
             phantom_params: dict | None = None, n_harmonics: int | None = None) -> Dataset:
    """Simulate one SIM acquisition (or a time series) with ground truth; see the module docstring.

    ``shape`` is the FINE grid (H, W), divisible by ``upsample``; ``pixel_size_nm`` the CAMERA pixel.
    ``pattern_freq`` is the illumination frequency as a fraction of the OTF cut-off (sinusoid carrier,
    lattice fundamental, highest speckle frequency). Frame counts: linear ``n_angles`` x ``n_phases``
    (3 x 3), nonlinear 5 x 5, hexagonal 7 (fixed; :func:`cusim.patterns.hexagonal_params`, carriers at
    ``pattern_freq``), lattice ``n_phases`` shifts per lattice axis (5, K = 25), speckle ``n_frames`` (25). ``photons`` is the mean photon count per camera pixel of the noise-free frames;
    ``snr`` the mean signal / noise sigma (default 20 when neither is given). With ``noise=False``,
    ``raw = gain * A x + offset`` exactly (float32). ``modulation`` < 1 mixes in uniform light (every
    family); ``saturation`` is the nonlinear family's peak excitation / saturation intensity (default
    :data:`SATURATION`; refused for the other families);
    ``angle_offset_deg`` turns sinusoids, hexagonal carriers and lattice off the pixel axes. ``T`` > 1 gives a drifting time
    series (``drift_px`` fine pixels per time point). ``dtype="uint16"`` rounds and clips to 0..65535
    (a :class:`~cusim.CusimWarning` when more than 1 % of the pixels clip at 65535).
    ``device`` runs the operator ("auto" | "cpu" | "cuda"); the result is on the host.
    ``phantom_params`` go to the phantom's function (e.g. ``spacings_px`` of ``line_pairs``);
    ``n_harmonics`` (nonlinear only) keeps the first that many harmonics of the saturated pattern
    (orders 2..n_harmonics+1; default all above 1e-7), e.g. 1 or 2 for the resolution benchmark.
    Raises ValueError whose message starts with the name of the offending argument (NotEnoughMemory, one,
    before allocating a simulation that would not fit the free memory).
    """
    if phantom not in phantoms.PHANTOMS:
        raise ValueError(f"phantom: expected one of {sorted(phantoms.PHANTOMS)}, got {phantom!r}")
    shape, s = _check_grid(shape, upsample)
    counts = _counts(family, n_angles, n_phases, n_frames)
    k = _carrier(Widefield(na, wavelength_nm, pixel_size_nm), s, pattern_freq)
    check_number("modulation", modulation, lo=0.0, hi=1.0)
    if saturation is not None and family != "nonlinear":  # it was ignored
        raise ValueError(f"saturation: only the nonlinear family saturates, got family {family!r}")
    saturation = SATURATION if saturation is None else check_positive("saturation", saturation)
    if n_harmonics is not None:
        check_int("n_harmonics", n_harmonics, 0)
        if family != "nonlinear":
            raise ValueError(f"n_harmonics: only the nonlinear family has harmonics, got family {family!r}")
    if phantom_params is not None and not isinstance(phantom_params, dict):
        raise ValueError(f"phantom_params: expected a dict of the phantom's keyword arguments, got {phantom_params!r}")
    check_number("angle_offset_deg", angle_offset_deg)
    read_noise, offset, T, seed, drift_px = _check_camera(read_noise, offset, T, seed, drift_px, noise, dtype)
    mu, level_attrs = _noise_level(snr, photons, read_noise)
    _check_memory(shape, s, _frame_count(family, counts), T)

    params, kind, pats = _illumination(family, shape, k, counts, modulation, saturation, angle_offset_deg, seed,
                                       n_harmonics)
    gt, drift_angle = _ground_truth(phantom, shape, T, drift_px, seed, phantom_params or {})
    K = params.K if params is not None else pats.shape[0]
    h, w = shape[0] // s, shape[1] // s
    ds = Dataset(raw=np.zeros((K, h, w) if T == 1 else (T, K, h, w), np.float32), upsample=s,
                 patterns=pats, pattern_params=params, pattern_kind=kind, na=float(na),
                 wavelength_nm=float(wavelength_nm), pixel_size_nm=float(pixel_size_nm), ground_truth=gt)
    op = ds.operator(device=device)
    clean = to_numpy(op.forward(xp_for(op.device).asarray(gt))).astype(np.float32)
    gain = mu / float(clean.mean(dtype=np.float64))
    clean_e = clean * np.float32(gain)
    ds.raw, cam_attrs = _camera(clean_e, noise=bool(noise), read_noise=read_noise, offset=offset,
                                dtype=dtype, seed=seed)
    warn_saturated(ds.raw, "raw", "lower --photons" if photons is not None else "lower --snr or --offset")
    resid = ds.raw.astype(np.float64) - offset - clean_e
    sd = float(resid.std())
    ds.attrs = {
        "sim_phantom": phantom, "sim_family": family, "sim_seed": seed, "sim_noise": bool(noise),
        "sim_snr": mu / sd if noise and sd > 0 else math.inf, **level_attrs, "sim_photons": mu,
        "sim_gain": gain, "sim_offset": offset, "sim_read_noise": read_noise, "sim_dtype": dtype,
        "sim_pattern_freq": float(pattern_freq), "sim_pattern_k": k, "sim_modulation": float(modulation),
        "sim_angle_offset_deg": float(angle_offset_deg), "sim_pad_fine": op.pad_fine, "sim_T": T, **cam_attrs,
        "sim_model": "raw = Poisson(sim_gain * A(ground_truth)) + Normal(0, sim_read_noise^2) + sim_offset",
        "cusim_version": __version__,
        # The frames hold no light from outside the field (the model above is zero-padded): the exact
        # model of these frames has no margin (cusim.recon.pinn.auto_margin). A crop drops this.
        "field_isolated": True,
    }
    if family == "nonlinear":
        ds.attrs["sim_saturation"] = float(saturation)
        if n_harmonics is not None:
            ds.attrs["sim_n_harmonics"] = n_harmonics
    if T > 1:
        ds.attrs.update(sim_drift_px=drift_px, sim_drift_angle_deg=drift_angle)
    return ds.validate()
