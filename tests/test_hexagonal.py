"""Hexagonal-lattice SIM: the pattern family, its storage, `cusim estimate` for it, reconstruction, refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

import cusim
from cusim import io, metrics
from cusim.cli import app
from cusim.estimate import EstimationError, estimate_dataset, estimate_hexagonal
from cusim.patterns import HEX_PHASES, HexagonalParams, hexagonal, hexagonal_params, params_record

# the accuracy the estimator must reach against the truth (issue 20, as for linear SIM in test_estimate.py)
K_PERCENT, ANGLE_DEG, PHASE_RAD = 0.3, 0.2, 0.1


def errors(est: HexagonalParams, truth: HexagonalParams):
    """Worst |k| error (%), angle error (deg) and phase error (rad, modulo 2 pi) over carriers and frames;
    the carriers are matched by direction (both normalised, DESIGN section 2)."""
    est, truth = est.normalised(), truth.normalised()
    order = [int(np.argmax(np.abs(truth.k @ kk))) for kk in est.k]
    assert sorted(order) == [0, 1, 2], (est.k, truth.k)
    t_k, t_phase = truth.k[order], truth.phase[:, order]
    kmag = np.hypot(*est.k.T) / np.hypot(*t_k.T) - 1
    dang = np.angle(np.exp(1j * (np.arctan2(*est.k.T) - np.arctan2(*t_k.T))))
    dphi = np.angle(np.exp(1j * (est.phase - t_phase)))
    return 100 * np.abs(kmag).max(), np.degrees(np.abs(dang)).max(), np.abs(dphi).max()


def _cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res, res.output


def _one_line(res, text):
    assert res.exit_code == 1, text
    assert len(text.strip().splitlines()) == 1 and "Traceback" not in text, text
    return text


def _frames_with(ds, params: HexagonalParams, seed: int = 5) -> np.ndarray:
    """Noisy frames of ``ds``'s object under ``params`` at ``ds``'s photon level (Poisson + read noise 1)."""
    clean = dataclasses.replace(ds, pattern_params=params).operator(device="cpu").forward(ds.ground_truth)
    rng = np.random.default_rng(seed)
    e = clean * (ds.attrs["sim_photons"] / clean.mean())
    return (rng.poisson(e) + rng.normal(0, 1, e.shape)).astype(np.float32)


# -- the pattern family ----------------------------------------------------------------------------------------
def test_hexagonal_patterns_are_three_beam_interference_with_separable_bands():
    p = hexagonal_params(period_px=5.3, angle_offset_deg=7)
    pats = p.render((48, 40), dtype=np.float64)
    # three plane waves whose differences are carriers at 7 and 127 degrees, beams stepped by 0, 1, 3 x 2 pi / 7
    th = np.deg2rad([7.0, 127.0])
    k1, k2 = (np.array([np.sin(t), np.cos(t)]) / 5.3 for t in th)
    beams = [np.zeros(2), k1, k1 + k2]
    r = np.stack(np.meshgrid(np.arange(48), np.arange(40), indexing="ij"), -1)
    for n in range(HEX_PHASES):
        field = sum(np.exp(2j * np.pi * (r @ kb) + 2j * np.pi * step * n / 7) for kb, step in zip(beams, (0, 1, 3)))
        np.testing.assert_allclose(pats[n], np.abs(field) ** 2 / 3, atol=1e-9)
    # over the 7 frames, DFT index j holds carrier j alone: 0, +-k1, +-k2, +-k3 are separable
    bands = np.fft.fft(pats, axis=0) / HEX_PHASES
    carriers = [k1, k2, k1 + k2]
    for j in (1, 2, 3):
        want = (1 / 3) * np.exp(2j * np.pi * (r @ carriers[j - 1]))
        np.testing.assert_allclose(bands[j], want, atol=1e-9)
    assert hexagonal((48, 40), period_px=5.3).min() >= 0 and pats.mean() == pytest.approx(1, abs=0.02)


def test_hexagonal_params_normalise_move_record_and_round_trip_through_hdf5(tmp_path):
    raw = HexagonalParams(k=[[0.05, -0.17], [0.1, 0.12], [-0.15, 0.05]], phase=np.linspace(-3, 3, 21).reshape(7, 3),
                          modulation=[0.9, 0.7, 1.0])
    n = raw.normalised()
    assert (n.k[:, 1] > 0).all()
    np.testing.assert_allclose(n.render((30, 26), np.float64), raw.render((30, 26), np.float64), atol=1e-9)
    np.testing.assert_allclose(raw.moved(4, 6).render((20, 16), np.float64),
                               raw.render((30, 26), np.float64)[:, 4:24, 6:22], atol=1e-9)
    rec = params_record(n)
    assert rec["family"] == "hexagonal" and np.shape(rec["phase"]) == (7, 3) and np.shape(rec["k"]) == (3, 2)
    ds = cusim.simulate(family="hexagonal", shape=(64, 64), noise=False)
    back = io.load(io.save(ds, tmp_path / "hex.h5"))
    assert isinstance(back.pattern_params, HexagonalParams) and back.pattern_kind == "hexagonal"
    np.testing.assert_array_equal(back.pattern_params.phase, ds.pattern_params.phase)
    np.testing.assert_array_equal(back.get_patterns(), ds.get_patterns())
    with pytest.raises(ValueError, match=r"phase: expected shape \(K, 3\)"):
        HexagonalParams(k=n.k, phase=np.zeros(7), modulation=n.modulation)


# -- estimation ------------------------------------------------------------------------------------------------
def test_estimate_hexagonal_meets_the_bounds_on_128_camera_pixels_at_snr_10():
    ds = cusim.simulate(family="hexagonal", shape=(256, 256), snr=10, seed=3)
    est = estimate_dataset(ds)  # 7 frames, nothing recorded: hexagonal
    assert est.family == "hexagonal" and isinstance(est.params, HexagonalParams)
    k, a, p = errors(est.params, ds.pattern_params)
    assert k < K_PERCENT and a < ANGLE_DEG and p < PHASE_RAD, (k, a, p)
    assert np.all(np.abs(est.modulation - 1) < 0.05) and est.closure < 0.01 and est.peak_snr.min() > 50
    angles = np.sort(est.angle_deg % 180)
    np.testing.assert_allclose(np.diff(angles), 60, atol=0.2)  # three carriers 60 (= 120) degrees apart
    assert "3 carriers x 7 phases" in est.summary()


@pytest.mark.slow
def test_estimate_hexagonal_meets_the_bounds_on_512_camera_pixels_at_snr_10():
    """Issue 20's bound: simulated 512x512 camera frames (upsample 2), filaments, SNR 10."""
    ds = cusim.simulate(family="hexagonal", shape=(1024, 1024), snr=10, seed=0)
    est = estimate_hexagonal(ds.frames(), upsample=2, psf=ds.optics())
    k, a, p = errors(est.params, ds.pattern_params)
    assert k < K_PERCENT and a < ANGLE_DEG and p < PHASE_RAD, (k, a, p)


def test_unequal_phase_steps_are_measured_per_frame():
    ds = cusim.simulate(family="hexagonal", shape=(256, 256), snr=10, seed=1, noise=False)
    p = ds.pattern_params
    beams = np.random.default_rng(1).normal(0, 0.3, (7, 3))  # each beam's phase off its step, per frame
    # carrier j in the generator's step order is beam difference (1 - 0), (2 - 1), (2 - 0); normalising
    # flipped the carriers whose generator direction (angle offset + 0, 120, 60 degrees) has kx < 0
    th = np.deg2rad(ds.attrs["sim_angle_offset_deg"] + np.array([0.0, 120.0, 60.0]))
    sign = np.sign(np.einsum("jc,jc->j", p.k, np.stack([np.sin(th), np.cos(th)], 1)))
    off = sign * np.stack([beams[:, 1] - beams[:, 0], beams[:, 2] - beams[:, 1], beams[:, 2] - beams[:, 0]], 1)
    truth = HexagonalParams(p.k, p.phase + off, p.modulation)
    assert np.abs(off).max() > 0.4
    est = estimate_hexagonal(_frames_with(ds, truth), upsample=2, psf=ds.optics())
    assert errors(est.params, truth)[2] < 0.2
    nominal_error = np.abs(np.angle(np.exp(1j * (truth.phase - p.phase)))).max()
    assert errors(est.params, truth)[2] < nominal_error / 2


def test_carriers_that_do_not_close_a_lattice_are_refused():
    ds = cusim.simulate(family="hexagonal", shape=(192, 192), snr=20, seed=2, noise=False)
    p = ds.pattern_params
    c, s = np.cos(np.deg2rad(25)), np.sin(np.deg2rad(25))
    k = p.k.copy()
    k[2] = [c * k[2, 0] - s * k[2, 1], s * k[2, 0] + c * k[2, 1]]  # carrier 3 turned 25 degrees off the lattice
    frames = _frames_with(ds, HexagonalParams(k, p.phase, p.modulation))
    with pytest.raises(EstimationError, match="do not form a hexagonal lattice"):
        estimate_hexagonal(frames, upsample=2, psf=ds.optics())


# -- reconstruction --------------------------------------------------------------------------------------------
def _psnr_gain(ds, method, crop, **kw) -> float:
    """PSNR of ``method`` over widefield's, dB (least-squares scale and offset onto the truth)."""
    def psnr(m, **k):
        return metrics.psnr(cusim.reconstruct(ds, m, device="cpu", **k).image, ds.ground_truth, norm="lstsq", crop=crop)
    return psnr(method, **kw) - psnr("widefield")


def test_wiener_and_fista_reconstruct_hexagonal_sim():
    ds = cusim.simulate(family="hexagonal", shape=(128, 128), snr=10, seed=0)
    assert _psnr_gain(ds, "wiener", 10) > 3  # measured 4.2 dB
    assert _psnr_gain(ds, "iterative", 10) > 4  # measured 5.5 dB


def test_wiener_refuses_fewer_hexagonal_frames_than_bands():
    """7 bands need 7 frames: with 5, np.linalg.cond saw only 5 singular values (about 2.6) and the pseudo-inverse
    unmixed an image 90 % wrong without a word."""
    from cusim.recon.wiener import wiener
    p = hexagonal_params(period_px=10.0)
    psf = cusim.optics.gaussian_psf(3.0, size=37)
    frames = np.ones((5, 24, 24))
    with pytest.raises(ValueError, match="the 5 frames of the hexagonal pattern cannot separate its 7 bands"):
        wiener(frames, HexagonalParams(p.k, p.phase[:5], p.modulation), psf, 2, device="cpu")
    assert wiener(np.ones((7, 24, 24)), p, psf, 2, device="cpu").shape == (48, 48)


@pytest.mark.slow
def test_pinn_reconstructs_hexagonal_sim():
    """A short run (measured +3.0 dB; 18-120 s on the shared 2-core CPU); full runs: docs/quality.md."""
    ds = cusim.simulate(family="hexagonal", shape=(64, 64), snr=10, seed=0)
    assert _psnr_gain(ds, "pinn", 6, steps=40) > 2


def test_pinn_refuses_to_refine_hexagonal_patterns():
    ds = cusim.simulate(family="hexagonal", shape=(64, 64), snr=10, seed=0)
    with pytest.raises(ValueError, match="refine_patterns: .*hexagonal"):
        cusim.reconstruct(ds, "pinn", device="cpu", steps=2, refine_patterns=True, refine_start=0)


# -- the command line ------------------------------------------------------------------------------------------
def test_import_estimate_and_run_a_hexagonal_stack(tmp_path):
    ds = cusim.simulate(family="hexagonal", shape=(192, 192), snr=10, seed=4, dtype="uint16")
    tifffile.imwrite(tmp_path / "hex.tif", ds.raw)
    out = tmp_path / "hex.h5"
    res, text = _cli("import", "stack", tmp_path / "hex.tif", "--family", "hexagonal", "--upsample", 2, "--na", 1.2,
                     "--wavelength-nm", 520, "--pixel-size-nm", 100, "-o", out)
    assert res.exit_code == 0, text
    assert io.load(out).attrs["pattern_family"] == "hexagonal"
    res, text = _cli("estimate", out)
    assert res.exit_code == 0 and "hexagonal SIM" in text, text
    k, a, p = errors(io.load(out).pattern_params, ds.pattern_params)
    assert k < K_PERCENT and a < ANGLE_DEG and p < PHASE_RAD
    res, text = _cli("run", out, "--method", "wiener")
    assert res.exit_code == 0, text


def test_stacks_that_fit_no_layout_or_hold_no_carrier_get_one_line(tmp_path):
    rng = np.random.default_rng(0)
    frames = (100 + 5 * rng.standard_normal((8, 64, 64))).astype(np.float32)
    tifffile.imwrite(tmp_path / "eight.tif", frames)
    text = _one_line(*_cli("import", "stack", tmp_path / "eight.tif", "--family", "hexagonal", "--upsample", 2,
                           "-o", tmp_path / "a.h5"))
    assert "8 frames, expected a multiple of 7 (hexagonal SIM)" in text
    text = _one_line(*_cli("import", "stack", tmp_path / "eight.tif", "--upsample", 2, "-o", tmp_path / "a.h5"))
    assert "--angles, --phases: required" in text  # the options, not the library's names ("angles, phases")
    tifffile.imwrite(tmp_path / "seven.tif", frames[:7])
    text = _one_line(*_cli("import", "stack", tmp_path / "seven.tif", "--family", "hexagonal", "--angles", 3,
                           "--phases", 3, "--upsample", 2, "-o", tmp_path / "a.h5"))
    assert "error: --angles, --phases: a hexagonal SIM stack is 1 angle x 7 phases" in text
    assert not (tmp_path / "a.h5").exists()
    eight = io.save(io.Dataset(raw=frames, upsample=2, na=1.2, wavelength_nm=520.0, pixel_size_nm=100.0),
                    tmp_path / "eight.h5")
    text = _one_line(*_cli("estimate", eight))
    assert "fit neither the linear SIM layouts" in text and "hexagonal SIM (7 frames)" in text
    noise = io.save(io.Dataset(raw=frames[:7], upsample=2, na=1.2, wavelength_nm=520.0, pixel_size_nm=100.0),
                    tmp_path / "noise.h5")
    before = noise.read_bytes()
    text = _one_line(*_cli("estimate", noise))
    assert "no carrier peak stands out" in text and "hexagonal" in text
    assert noise.read_bytes() == before
    text = _one_line(*_cli("estimate", noise, "--family", "hexagonal", "--angles", 3, "--phases", 3))
    assert "hexagonal SIM is 1 x 7" in text


def test_estimate_refuses_what_it_would_ignore_or_fit_wrongly(tmp_path):
    # --no-lattice was dropped silently for hexagonal frames; lattice or speckle frames were "estimated" (5
    # significant angles in one direction) and the parameters stored, which Wiener then used.
    hexa = tmp_path / "hex.h5"
    assert _cli("simulate", "-o", hexa, "--size", 64, "--family", "hexagonal", "--threads", 1)[0].exit_code == 0
    before = hexa.read_bytes()
    assert "lattice=False (--no-lattice): the lattice pass is linear SIM's" in _one_line(
        *_cli("estimate", hexa, "--no-lattice", "--force"))
    lattice = tmp_path / "lattice.h5"
    assert _cli("simulate", "-o", lattice, "--size", 64, "--family", "lattice", "--threads", 1)[0].exit_code == 0
    assert "simulated with lattice illumination, which is not sinusoidal" in _one_line(*_cli("estimate", lattice))
    assert io.load(lattice).pattern_kind != "estimated" and hexa.read_bytes() == before
