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
    alone = cusim.reconstruct(ds, "pinn", **kw)
    fista = cusim.reconstruct(ds, "iterative", device="cpu")
    both = cusim.reconstruct(ds, "pinn", blend="iterative", **kw)
    np.testing.assert_allclose(both.image, blend_images(alone.image, fista.image, 0.5), rtol=1e-5, atol=1e-6)
    assert not np.allclose(both.image, blend_images(alone.image, fista.image, 1.0), atol=1e-3)
    assert both.params["blend"] == "iterative" and both.params["blend_weight"] == 0.5
    assert both.extra["iterative_steps"] == fista.extra["steps_run"]
    assert both.extra["iterative_stop_reason"] == fista.extra["stop_reason"]
    quarter = cusim.reconstruct(ds, "pinn", blend="iterative", blend_weight=0.25, **kw)
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
    code, text = cli("--method", "pinn", "--blend-weight", "-0.1")
    assert code == 1 and len(text.splitlines()) == 1 and "--blend-weight: expected a finite number >= 0" in text
    code, text = cli("--method", "pinn", "--blend", "iterative", "--steps", "4", "--stop", "max")
    assert code == 0, text
    rec = io.load(path).recons["pinn"].attrs
    assert rec["params"]["blend"] == "iterative" and rec["iterative_steps"] >= 1
