"""The PINN's image blended with FISTA + TV's (``blend="iterative"``): what it returns, records and refuses."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import cusim  # noqa: E402
from cusim import io  # noqa: E402
from cusim.recon.config import PINNConfig  # noqa: E402
from cusim.recon.pinn import blend_images  # noqa: E402


def test_a_blend_does_not_depend_on_the_scale_and_offset_of_the_pinn_image():
    rng = np.random.default_rng(0)
    other = rng.random((40, 48)).astype(np.float32)
    pinn = rng.random((40, 48)).astype(np.float32)
    for w in (0.0, 0.3, 1.0):
        a, b = blend_images(pinn, other, w), blend_images(7.5 * pinn - 3.0, other, w)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(blend_images(pinn, other, 0.0), other, atol=1e-6)
    np.testing.assert_allclose(blend_images(2 * other + 1, other, 1.0), other, atol=1e-5)  # mapped back exactly
    half = blend_images(2 * other + 1, 0.5 * other, 0.5)  # P' = 0.5 other: the mean of two equal images
    np.testing.assert_allclose(half, 0.5 * other, atol=1e-5)


def test_a_blended_run_returns_the_mean_of_its_pinn_and_fista_images_and_records_both():
    ds = cusim.simulate(shape=(48, 48), snr=20, seed=3)
    kw = dict(device="cpu", steps=6, stop="max", width=4)
    alone = cusim.reconstruct(ds, "pinn", blend="none", **kw)
    fista = cusim.reconstruct(ds, "iterative", device="cpu")
    default = cusim.reconstruct(ds, "pinn", **kw)  # the default: the coarse scales averaged, 1 px low-pass
    np.testing.assert_allclose(default.image, blend_images(alone.image, fista.image, 0.5, sigma=1.0), rtol=1e-5,
                               atol=1e-6)
    assert default.params["blend"] == "iterative" and default.params["blend_weight"] == 0.5
    assert default.params["blend_sigma"] == 1.0
    assert default.extra["iterative_steps"] == fista.extra["steps_run"]
    assert default.extra["iterative_stop_reason"] == fista.extra["stop_reason"]
    np.testing.assert_allclose(default.extra["blend_parts"]["pinn"], alone.image, rtol=1e-6, atol=1e-7)
    both = cusim.reconstruct(ds, "pinn", blend_sigma=None, **kw)  # every scale averaged
    np.testing.assert_allclose(both.image, blend_images(alone.image, fista.image, 0.5), rtol=1e-5, atol=1e-6)
    assert not np.allclose(both.image, default.image, atol=1e-3)
    assert not np.allclose(both.image, blend_images(alone.image, fista.image, 1.0), atol=1e-3)
    quarter = cusim.reconstruct(ds, "pinn", blend_weight=0.25, blend_sigma=None, **kw)
    np.testing.assert_allclose(quarter.image, blend_images(alone.image, fista.image, 0.25), rtol=1e-5, atol=1e-6)


def test_blend_settings_are_checked():
    with pytest.raises(ValueError, match=r"^blend: expected one of"):
        PINNConfig(blend="fista")
    with pytest.raises(ValueError, match=r"^blend_weight: expected a finite number >= 0 and <= 1, got 1.5"):
        PINNConfig(blend_weight=1.5)


def test_cli_blend_is_recorded_and_refused_for_other_methods(tmp_path):
    from typer.testing import CliRunner

    from cusim.cli import app

    path = io.save(cusim.simulate(shape=(32, 32), seed=0), tmp_path / "s.h5")

    def cli(*args):
        res = CliRunner().invoke(app, ["run", str(path), *args, "--metrics-border", "4"])
        return res.exit_code, res.output.strip()

    code, text = cli("--method", "wiener", "--blend", "iterative")
    assert code == 1 and len(text.splitlines()) == 1 and "--blend: only for --method pinn" in text
    code, text = cli("--method", "pinn", "--blend", "iterative", "--blend-weight", "-0.1")
    assert code == 1 and len(text.splitlines()) == 1 and "--blend-weight: expected a finite number >= 0" in text
    code, text = cli("--method", "pinn", "--blend", "none", "--blend-weight", "0.3")  # it would be ignored
    assert code == 1 and len(text.splitlines()) == 1 and "--blend-weight: only with --blend iterative" in text
    code, text = cli("--method", "pinn", "--steps", "4", "--stop", "max")  # the default blends
    assert code == 0, text
    rec = io.load(path).recons["pinn"].attrs
    assert rec["params"]["blend"] == "iterative" and rec["iterative_steps"] >= 1
    code, text = cli("--method", "pinn", "--blend", "none", "--steps", "4", "--stop", "max", "--name", "alone")
    assert code == 0, text
    rec = io.load(path).recons["alone"].attrs
    assert rec["params"]["blend"] == "none" and "iterative_steps" not in rec
    code, text = cli("--method", "pinn", "--blend-sigma", "1.5", "--steps", "4", "--stop", "max", "--name", "s15")
    assert code == 0, text
    rec = io.load(path).recons["s15"].attrs
    assert rec["params"]["blend_sigma"] == 1.5 and "blend_parts" not in rec


def test_a_low_pass_blend_averages_the_coarse_scales_and_keeps_the_pinn_s_fine_detail():
    rng = np.random.default_rng(2)
    pinn = rng.random((64, 64))
    yy, xx = np.mgrid[:64, :64]
    coarse = 0.3 * np.sin(2 * np.pi * (xx - 31.5) / 64.0)  # one cycle over the field (mean 0): passed by the low-pass
    fine = 0.3 * (-1.0) ** (yy + xx)  # the finest checkerboard: stopped by it (to 0.7 %)
    for sigma in (1.0, 1.5):
        out = blend_images(2.0 * pinn + 1.0, pinn + fine, 0.5, sigma=sigma)  # the PINN's scale is mapped away
        assert np.abs(out - pinn)[8:-8, 8:-8].max() < 0.01  # a fine difference: the PINN's image kept
        out = blend_images(pinn, pinn + coarse, 0.25, sigma=sigma)
        np.testing.assert_allclose(out[8:-8, 8:-8], (pinn + 0.75 * coarse)[8:-8, 8:-8], atol=0.01)
    with pytest.raises(ValueError, match=r"^blend_sigma: expected a finite number >= 0 and <= 64, got -1"):
        PINNConfig(blend_sigma=-1)
    np.testing.assert_array_equal(blend_images(pinn, pinn + fine, 0.5, sigma=0), blend_images(pinn, pinn + fine, 0.5))


def test_held_out_pixels_play_no_part_in_the_fits_they_validate():
    from cusim.recon.config import IterativeConfig
    from cusim.recon.iterative import solve
    from cusim.recon.losses import DataLoss
    from cusim.recon.pinn import holdout_mask

    ds = cusim.simulate(shape=(48, 48), snr=20, seed=3)
    op, frames = ds.operator(device="cpu"), ds.frames().astype(np.float32)
    mask = holdout_mask(frames.shape, PINNConfig(holdout=0.1))
    other = frames.copy()
    other[mask] = 10.0 * frames.max()  # the held-out pixels replaced by garbage
    # FISTA (prior none: its weight would follow the noise level, which is estimated from whole frames)
    cfg = IterativeConfig(stop="max", n_iter=15, prior="none")
    a, b = solve(frames, op, cfg, holdout=mask), solve(other, op, cfg, holdout=mask)
    np.testing.assert_allclose(a["image"], b["image"], rtol=1e-5, atol=1e-6 * float(a["image"].max()))
    assert not np.allclose(solve(frames, op, cfg)["image"], solve(other, op, cfg)["image"], atol=1e-3)
    with pytest.raises(ValueError, match="holdout: FISTA under the white noise model only"):
        solve(frames, op, IterativeConfig(algorithm="rl"), holdout=mask)
    with pytest.raises(ValueError, match="holdout: expected a boolean mask of the frames' shape"):
        solve(frames, op, cfg, holdout=mask[0])
    # the PINN's loss (the validation stop): no fit sees the held-out pixels; its residual is theirs
    import torch

    pred = torch.from_numpy(op.forward(ds.ground_truth.astype(np.float32)) + 0.1)
    la, ma = DataLoss("mse", torch.from_numpy(frames), 1.0, holdout=torch.from_numpy(mask))(pred)
    lb, mb = DataLoss("mse", torch.from_numpy(other), 1.0, holdout=torch.from_numpy(mask))(pred)
    assert float(la) == pytest.approx(float(lb), rel=1e-6) and float(mb) > 10 * float(ma)
