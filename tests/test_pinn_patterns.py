"""--refine-patterns: learnable sinusoidal patterns whose gradient is hand-written, not autograd through FFTs."""

import dataclasses

import numpy as np
import pytest
import torch

import cusim
from cusim.metrics import compare
from cusim.patterns import SinusoidParams
from cusim.recon import pinn
from cusim.recon._pinn_patterns import PatternModel, _Render, carrier_groups


def _phase_error(p: SinusoidParams, truth: SinusoidParams) -> float:
    return float(np.abs(np.angle(np.exp(1j * (p.normalised().phase - truth.normalised().phase)))).max())


def test_render_matches_the_pattern_formula_and_its_gradient_is_the_analytic_derivative():
    params = cusim.patterns.nonlinear_params(saturation=2.0, period_px=5.3)
    theta = torch.tensor(np.c_[params.k, params.phase, params.modulation], dtype=torch.float64, requires_grad=True)
    harm = torch.as_tensor(params.harmonics)
    rows = torch.arange(20, dtype=torch.float64)[:, None]
    cols = torch.arange(24, dtype=torch.float64)[None, :]
    out = _Render.apply(theta, harm, rows, cols)
    np.testing.assert_allclose(out.detach().numpy(), params.render((20, 24), np.float64), atol=1e-12)

    def by_autograd(th):  # the same formula in plain torch: the reference for the hand-written backward
        psi = 2 * np.pi * (th[:, 0, None, None] * rows + th[:, 1, None, None] * cols) + th[:, 2, None, None]
        img = torch.cos(psi) + sum(harm[:, j, None, None] * torch.cos((j + 2) * psi) for j in range(harm.shape[1]))
        return 1 + th[:, 3, None, None] * img

    w = torch.randn(out.shape, dtype=torch.float64)
    (g_hand,) = torch.autograd.grad((out * w).sum(), theta)
    (g_auto,) = torch.autograd.grad((by_autograd(theta) * w).sum(), theta)
    np.testing.assert_allclose(g_hand.numpy(), g_auto.numpy(), rtol=1e-10, atol=1e-9)


def test_frames_sharing_a_carrier_share_its_corrections():
    params = cusim.patterns.linear_params(period_px=6.0)
    assert carrier_groups(params).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    model = PatternModel(params, (16, 16), torch.device("cpu"))
    assert tuple(model.dk.shape) == (3, 2) and tuple(model.dphi.shape) == (9,) and tuple(model.dm.shape) == (3,)
    np.testing.assert_allclose(model().detach().numpy(), params.render((16, 16)), atol=1e-5)


def test_refining_wrong_phases_and_modulation_recovers_them_and_the_image():
    ds = cusim.simulate(shape=(64, 64), snr=30, seed=3)
    truth = ds.pattern_params
    rng = np.random.default_rng(0)
    wrong = SinusoidParams(truth.k, truth.phase + rng.normal(0, 0.3, truth.K), truth.modulation * 0.8)
    bad = dataclasses.replace(ds, pattern_params=wrong)
    kw = dict(steps=250, stop="max", refine_start=30, seed=1)
    fixed, _ = pinn.reconstruct(bad, **kw)
    refined, info = pinn.reconstruct(bad, refine_patterns=True, **kw)
    p = info["pattern_params"]
    got = SinusoidParams(np.array(p["k"]), np.array(p["phase"]), np.array(p["modulation"]))
    assert _phase_error(got, truth) < 0.6 * _phase_error(wrong, truth)
    assert np.abs(got.modulation - 1.0).max() < 0.12  # started at 0.8
    gain = compare(refined, ds.ground_truth, norm="lstsq", crop=6)["psnr_db"] - \
        compare(fixed, ds.ground_truth, norm="lstsq", crop=6)["psnr_db"]
    assert gain > 0.25  # measured 0.5 dB at this size and step count



def test_refinement_needs_sinusoidal_patterns():
    ds = cusim.simulate(shape=(32, 32), family="speckle", seed=0)  # K = 25: 5 x 5 by default
    with pytest.raises(ValueError, match=r"refine_patterns: patterns: not 5 angles x 5 phases of sinusoids "
                                         r"\(worst relative fit residual [0-9.]+ > 0.25"):
        pinn.reconstruct(ds, steps=2, refine_patterns=True, refine_start=0)


def test_refinement_that_would_never_start_is_refused():
    """It starts at step refine_start (100): --refine-patterns with --steps 5 ran, changed nothing, and was recorded
    as applied."""
    with pytest.raises(ValueError, match=r"^refine_patterns: the patterns are refined from step 100 on, which 5 steps "
                                         r"never reach"):
        pinn.PINNConfig(steps=5, refine_patterns=True)
    assert pinn.PINNConfig(steps=5, refine_patterns=True, refine_start=2).refine_patterns
