"""The untrained PINN: network, loss, physics gradient through the adjoint, determinism, resume, CLI."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cusim  # noqa: E402
from cusim import io  # noqa: E402
from cusim.cli import app  # noqa: E402
from cusim.models import UNet  # noqa: E402
from cusim.recon import losses, pinn  # noqa: E402


@pytest.fixture(scope="module")
def small():
    """A 64 x 64 fine-grid linear-SIM simulation (camera 32 x 32), SNR 20."""
    return cusim.simulate(shape=(64, 64), snr=20, seed=1)


def test_a_batched_unet_computes_what_its_members_compute():
    for up in ("nearest", "transpose"):
        nets = []
        for j in range(3):
            torch.manual_seed(j)
            nets.append(UNet(5, width=4, depth=2, up=up, norm="batch"))
        both = UNet.stack(nets)
        assert both.members == 3 and sum(p.numel() for p in both.parameters()) == 3 * sum(
            p.numel() for p in nets[0].parameters())
        x = torch.rand(1, 5, 34, 30)  # odd pooling sizes too
        alone = torch.cat([n(x) for n in nets], dim=1)
        np.testing.assert_allclose(both(x).detach(), alone.detach(), rtol=0, atol=1e-5 * float(alone.detach().max()))
    with pytest.raises(ValueError, match="UNet.stack: expected one or more single networks of one architecture"):
        UNet.stack([UNet(3, width=4), UNet(3, width=8)])


def test_a_float64_unet_computes_in_float64():
    """The head cast its input with .float() whatever its dtype: a float64 network failed ("Input type (float) and
    bias type (double) should be the same"), so it could not be gradchecked."""
    torch.manual_seed(0)
    net = UNet(2, width=4, depth=1).double()
    x = torch.rand(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    assert net(x).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda t: net.eval()(t), (x,), eps=1e-6, atol=1e-5)


def test_a_batched_unet_gives_members_of_different_inputs_their_own():
    # A member of 1 input channel beside one of 5: the input is each member's channels in turn, the narrower
    # zero-padded; the stacked network computes what each computes alone on its own input.
    torch.manual_seed(0)
    wide = UNet(5, width=4, depth=2, norm="batch")
    torch.manual_seed(1)
    narrow = UNet(1, width=4, depth=2, norm="batch")
    both = UNet.stack([wide, narrow])
    assert both.arch["in_channels"] == 5
    w = both.state_dict()["down.0.0.weight"]
    assert w.shape == (8, 5, 3, 3) and float(w[4:, 1:].abs().max()) == 0.0  # the narrow member's padding
    a, b = torch.rand(1, 5, 34, 30), torch.rand(1, 1, 34, 30)
    x = torch.cat([a, torch.nn.functional.pad(b, (0, 0, 0, 0, 0, 4))], dim=1)
    alone = torch.cat([wide(a), narrow(b)], dim=1)
    np.testing.assert_allclose(both(x).detach(), alone.detach(), rtol=0, atol=1e-5 * float(alone.detach().max()))
    with pytest.raises(ValueError, match="UNet.stack: expected one or more single networks of one architecture"):
        UNet.stack([UNet(3, width=4), UNet(1, width=8)])


def test_unet_is_non_negative_and_keeps_odd_shapes():
    torch.manual_seed(0)
    for up in ("nearest", "transpose"):
        net = UNet(3, width=4, depth=3, up=up)
        out = net(torch.randn(2, 3, 37, 50))
        assert out.shape == (2, 1, 37, 50) and float(out.detach().min()) >= 0
    out = UNet(3, width=4, norm="batch")(torch.randn(1, 3, 20, 20))
    assert out.shape == (1, 1, 20, 20) and float(out.detach().min()) >= 0
    with pytest.raises(ValueError, match="up: expected"):
        UNet(3, up="bilinear")
    with pytest.raises(ValueError, match="norm: expected"):
        UNet(3, norm="layer")


def test_unet_under_autocast_keeps_its_outer_levels_and_head_in_float32():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    for levels, outer in ((0, torch.bfloat16), (1, torch.float32), (3, torch.float32)):
        net = UNet(3, width=4, norm="batch", float32_levels=levels)
        seen = {}
        net.down[0][0].register_forward_hook(lambda m, i, o: seen.__setitem__("first", o.dtype))
        net.ups[-1].conv[0].register_forward_hook(lambda m, i, o: seen.__setitem__("last", o.dtype))
        net.down[1][0].register_forward_hook(lambda m, i, o: seen.__setitem__("inner", o.dtype))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x)
        assert out.dtype == torch.float32 and seen["first"] == seen["last"] == outer
        assert seen["inner"] == (torch.float32 if levels >= 2 else torch.bfloat16)
        ref = net(x)  # no autocast: float32 throughout, and the same network
        assert float((out - ref).abs().max().detach()) < 0.05 * float(ref.abs().max().detach())
    with pytest.raises(ValueError, match="float32_levels: expected >= 0"):
        UNet(3, float32_levels=-1)


def test_closed_form_gain_and_offset_are_the_least_squares_fit():
    rng = np.random.default_rng(0)
    p = torch.from_numpy(rng.random((3, 8, 8)))
    y = 2.5 * p + torch.tensor([1.0, 2.0, 3.0])[:, None, None]
    a, b = losses.fit_gain_offset(p, y, "frame")
    torch.testing.assert_close(a.flatten(), torch.full((3,), 2.5, dtype=p.dtype))
    torch.testing.assert_close(b.flatten(), torch.tensor([1.0, 2.0, 3.0], dtype=p.dtype))


def test_the_stopping_residual_can_watch_a_window_while_the_loss_sees_every_pixel():
    rng = np.random.default_rng(1)
    p = torch.from_numpy(rng.random((3, 10, 12)))
    y = 2.0 * p + 1.0
    y[:, :2] += 5.0 * torch.from_numpy(rng.standard_normal((3, 2, 12)))  # a misfit edge band
    whole = losses.DataLoss("mse", y, sigma=0.5)
    inner = losses.DataLoss("mse", y, sigma=0.5, watch=(slice(2, 10), slice(0, 12)))
    (l_whole, m_whole), (l_inner, m_inner) = whole(p), inner(p)
    a, b = losses.fit_gain_offset(p, y)  # the fit on every pixel, as the loss makes it
    r2 = (a * p + b - y) ** 2 / 0.25
    torch.testing.assert_close(m_inner, r2[:, 2:].mean())
    torch.testing.assert_close(m_whole, r2.mean())
    assert float(m_whole) > 5 * float(m_inner) and torch.equal(l_whole, l_inner)


def test_loss_specs_parse_and_reject_unknown_terms():
    assert losses.parse_loss("mse+0.5*ssim") == {"mse": 1.0, "ssim": 0.5}
    for bad in ("l1", "0*mse", "mse+-1*ssim", "1e999*mse", "1..2*mse"):  # a weight that is no number, 0, < 0 or inf
        with pytest.raises(ValueError, match=r"loss: expected terms .* \(weights finite and > 0\)"):
            losses.parse_loss(bad)
    with pytest.raises(ValueError, match="stop: expected one of"):
        pinn.PINNConfig(stop="never")
    with pytest.raises(ValueError, match=r"pinn: unknown parameter\(s\) \['epochs'\]"):
        pinn.PINNConfig.from_params({"epochs": 3})


def test_physics_gradient_comes_from_the_hand_written_adjoint(small, monkeypatch):
    op = small.operator(device="cpu")
    calls = {"adjoint": 0}
    real = op.adjoint

    def counting(y):
        calls["adjoint"] += 1
        return real(y)

    monkeypatch.setattr(op, "adjoint", counting)
    pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=3, stop="max", width=4))
    assert calls["adjoint"] == 3  # one backward per step, through SIMOperator.adjoint


def test_same_seed_gives_the_same_image_on_cpu(small):
    op = small.operator(device="cpu")
    cfg = pinn.PINNConfig(steps=5, stop="max", width=4, seed=3)
    a = pinn.optimise(small.frames(), op, cfg).image
    b = pinn.optimise(small.frames(), op, cfg).image
    np.testing.assert_array_equal(a, b)


def test_the_network_is_drawn_from_its_seed_and_leaves_the_callers_random_state_alone():
    # A method developer's own torch.rand calls go on as if cusim had not run (it had reseeded the global RNG);
    # member j's weights are still those torch.manual_seed(seed + j) gives.
    cfg = pinn.PINNConfig(width=4, depth=2, seed=7, ensemble=2)
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    net = pinn._network([3, 3], cfg)
    np.testing.assert_array_equal(torch.rand(3), want)
    for j in range(2):
        torch.manual_seed(7 + j)
        alone = UNet(3, width=4, depth=2, up=cfg.up, norm=cfg.norm, float32_levels=cfg.float32_levels)
        got = net.state_dict()["down.0.0.weight"][4 * j:4 * (j + 1)]
        np.testing.assert_array_equal(got, alone.state_dict()["down.0.0.weight"])


def test_gain_and_offset_of_the_frames_do_not_matter(small):
    op = small.operator(device="cpu")
    cfg = pinn.PINNConfig(steps=5, stop="max", width=4)
    a = pinn.optimise(small.frames(), op, cfg).image
    b = pinn.optimise(3.0 * small.frames() + 1000.0, op, cfg).image
    # equal up to float32 rounding of the rescaled data, which Adam's early steps amplify a little
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-2


@pytest.mark.parametrize("fast", [False, True])
def test_interrupted_run_resumed_from_its_checkpoint_ends_like_an_uninterrupted_one(small, tmp_path, fast):
    op = small.operator(device="cpu")
    cfg = pinn.PINNConfig(steps=20, stop="max", width=4, **(pinn.FAST if fast else {}))
    ref = pinn.optimise(small.frames(), op, cfg)
    ckpt = tmp_path / "run.ckpt"
    _interrupted_run(small.frames(), op, cfg, ckpt, at=13)
    resumed = pinn.optimise(small.frames(), op, cfg, checkpoint=ckpt, checkpoint_every=5, resume=True)
    np.testing.assert_allclose(resumed.image, ref.image, rtol=0, atol=1e-5 * float(ref.image.max()))
    np.testing.assert_allclose(resumed.loss, ref.loss, rtol=1e-5)
    assert not ckpt.exists()  # removed after a finished run


def _interrupted_run(frames, op, cfg, ckpt, at: int = 7) -> None:
    """Leave the last checkpoint (every 5 steps) of a run stopped at step ``at``."""
    def interrupt(step, total, loss, mse):
        if step == at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pinn.optimise(frames, op, cfg, checkpoint=ckpt, checkpoint_every=5, callback=interrupt)
    assert ckpt.exists()


def _device_schedule(fit):
    """``fit`` with the optimiser of PINNStep's CUDA branch (a learning-rate tensor the step decays, no StepLR), on
    the CPU: the schedule an eager CUDA run (refined patterns, ``graph=False``) checkpoints and resumes."""
    fit._lr = torch.full((), fit.cfg.lr)
    fit.opt = torch.optim.Adam([p for g in fit.opt.param_groups for p in g["params"]], lr=fit._lr, foreach=False)
    fit.sched = None
    return fit


def test_a_run_on_the_device_learning_rate_resumes_with_its_rate_still_decaying(small, tmp_path):
    op, frames = small.operator(device="cpu"), small.frames()
    cfg = pinn.PINNConfig(steps=12, stop="max", width=4, lr=1e-2, lr_every=3, lr_decay=0.3)
    ref = pinn._optimise(_device_schedule(pinn.PINNStep(frames, op, cfg)), 12, None, 5, False, None)
    ckpt = tmp_path / "run.ckpt"

    def interrupt(step, total, loss, mse):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pinn._optimise(_device_schedule(pinn.PINNStep(frames, op, cfg)), 12, ckpt, 5, False, interrupt)
    fit = _device_schedule(pinn.PINNStep(frames, op, cfg))
    resumed = pinn._optimise(fit, 12, ckpt, 5, True, None)
    assert fit.opt.param_groups[0]["lr"] is fit._lr  # not a copy the schedule no longer reaches
    assert float(fit._lr) == pytest.approx(1e-2 * 0.3 ** 4)
    np.testing.assert_allclose(resumed.loss, ref.loss, rtol=1e-5)


def test_a_checkpoint_made_on_cuda_resumes_on_the_cpu(small, tmp_path):
    """CUDA's checkpoint holds the step count for its schedule and a fused, capturable Adam's settings; the CPU's
    StepLR takes the step and its own Adam the moments (the record below is a CPU one rewritten as CUDA writes it)."""
    op, frames = small.operator(device="cpu"), small.frames()
    cfg = pinn.PINNConfig(steps=12, stop="max", width=4, ensemble=1, lr_every=3, lr_decay=0.5)
    ref = pinn.optimise(frames, op, cfg)
    ckpt = tmp_path / "run.ckpt"
    _interrupted_run(frames, op, cfg, ckpt, at=7)
    ck = torch.load(ckpt, weights_only=False)
    ck["sched"] = {"step": ck["sched"]["last_epoch"]}
    for g in ck["opt"]["param_groups"]:
        g.update(lr=torch.tensor(g["lr"]), capturable=True, fused=True)
    torch.save(ck, ckpt)
    resumed = pinn.optimise(frames, op, cfg, checkpoint=ckpt, checkpoint_every=5, resume=True)
    np.testing.assert_allclose(resumed.loss, ref.loss, rtol=1e-5)


def test_resume_on_other_data_is_refused_naming_what_changed(small, tmp_path):
    op = small.operator(device="cpu")
    cfg = pinn.PINNConfig(steps=10, stop="max", width=4)
    ckpt = tmp_path / "run.ckpt"
    _interrupted_run(small.frames(), op, cfg, ckpt)
    other = small.frames().copy()
    other[0, 5, 5] += 1.0  # one pixel of one frame
    fp = "[0-9a-f]{16}"
    with pytest.raises(ValueError, match=rf"^{re.escape(str(ckpt))}: checkpoint was made from other raw frames "
                                         rf"\(fingerprint {fp}, now {fp}\); remove it or run without --resume$"):
        pinn.optimise(other, op, cfg, checkpoint=ckpt, resume=True)
    moved = dataclasses.replace(small, pattern_params=small.pattern_params.moved(0, 1))
    with pytest.raises(ValueError, match=rf"checkpoint was made from other patterns \(fingerprint {fp}, now {fp}\);"):
        pinn.optimise(small.frames(), moved.operator(device="cpu"), cfg, checkpoint=ckpt, resume=True)
    with pytest.raises(ValueError, match="checkpoint was made from other optics"):  # the PSF and the padded grid
        pinn.optimise(small.frames(), small.operator(pad_fine=0, device="cpu"), cfg, checkpoint=ckpt, resume=True)
    with pytest.raises(ValueError, match="checkpoint was made from other raw frames and patterns"):
        pinn.optimise(other, moved.operator(device="cpu"), cfg, checkpoint=ckpt, resume=True)
    assert ckpt.exists()  # a refusal removes nothing
    run = pinn.optimise(small.frames(), op, cfg, checkpoint=ckpt, resume=True)  # the same data: resumed
    assert run.steps == 10 and not ckpt.exists()


def test_resume_with_other_settings_is_refused_naming_both_values(small, tmp_path):
    op = small.operator(device="cpu")
    ckpt = tmp_path / "run.ckpt"
    _interrupted_run(small.frames(), op, pinn.PINNConfig(steps=10, stop="max", width=4), ckpt)
    with pytest.raises(ValueError, match=r": checkpoint was made with steps=10, now steps=12; remove it or run "
                                         r"without --resume$"):
        pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=12, stop="max", width=4), checkpoint=ckpt,
                      resume=True)
    with pytest.raises(ValueError, match=r"made with lr=0.001, loss=mse, now lr=0.002, loss=ssim;"):
        pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=10, stop="max", width=4, lr=2e-3, loss="ssim"),
                      checkpoint=ckpt, resume=True)
    ck = torch.load(ckpt, weights_only=False)  # a checkpoint of an older cusim: no fingerprint of its data
    del ck["settings"]["data"]
    torch.save(ck, ckpt)
    with pytest.raises(ValueError, match=r"checkpoint records no fingerprint of its data \(made by an older cusim\)"):
        pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=10, stop="max", width=4), checkpoint=ckpt,
                      resume=True)


def test_an_interrupt_after_the_fit_keeps_the_fitted_network_for_a_resume(small, tmp_path, monkeypatch):
    """The fit's checkpoint is kept until reconstruct returns: it was removed when the fit ended, so a Ctrl-C during
    the FISTA + TV blend, or a time series' later frames, lost every step and the CLI said "nothing was kept"."""
    ts = cusim.simulate(shape=(32, 32), snr=20, T=2, seed=2)
    kw = dict(steps=12, stop="max", width=4, warm_start_steps=4, checkpoint_every=5, device="cpu")
    for ds, blend in ((small, "iterative"), (ts, "none")):
        ref, _ = pinn.reconstruct(ds, blend=blend, **kw)
        ckpt = tmp_path / f"{ds.T}.ckpt"
        cut = {"at": 12 + 2 if ds.is_series else None}  # a series: at its second frame; one frame: in the blend

        def interrupt(step, total, loss, mse):
            if step == cut["at"]:
                raise KeyboardInterrupt

        if cut["at"] is None:
            def blend_interrupted(*a, **k):
                raise KeyboardInterrupt
            monkeypatch.setattr(pinn, "_blend_iterative", blend_interrupted)
        with pytest.raises(KeyboardInterrupt):
            pinn.reconstruct(ds, blend=blend, checkpoint=ckpt, callback=interrupt, **kw)
        monkeypatch.undo()
        assert ckpt.exists()
        steps = []
        image, info = pinn.reconstruct(ds, blend=blend, checkpoint=ckpt, resume=True,
                                       callback=lambda step, *a: steps.append(step), **kw)
        np.testing.assert_allclose(image, ref, rtol=0, atol=1e-5 * float(ref.max()))
        assert not ckpt.exists()  # removed once the result is returned
        assert steps == ([13, 14, 15, 16] if ds.is_series else [])  # the first frame's fit is not stepped again


def test_a_checkpoint_that_cannot_be_written_is_refused_before_the_first_step(small, tmp_path):
    steps = []
    with pytest.raises(ValueError, match=r"^checkpoint: .*folder .*nowhere does not exist"):
        pinn.reconstruct(small, steps=6, stop="max", width=4, checkpoint=tmp_path / "nowhere" / "c.ckpt",
                         checkpoint_every=5, callback=lambda step, *a: steps.append(step), device="cpu")
    assert steps == []  # it failed at the first save, after 5 steps (50 by default)


def test_a_resume_may_change_what_happens_after_the_fit(small, tmp_path):
    op, cfg = small.operator(device="cpu"), pinn.PINNConfig(steps=10, stop="max", width=4, blend="none")
    ckpt = tmp_path / "run.ckpt"
    _interrupted_run(small.frames(), op, cfg, ckpt)
    after = dataclasses.replace(cfg, blend="iterative", blend_weight=0.3, warm_start_steps=7, graph=False)
    ref = pinn.optimise(small.frames(), op, cfg)
    run = pinn.optimise(small.frames(), op, after, checkpoint=ckpt, resume=True)  # it was refused
    np.testing.assert_allclose(run.loss, ref.loss, rtol=1e-5)


def test_an_ensemble_checkpoint_is_not_taken_for_other_data(small, tmp_path):
    kw = dict(steps=4, stop="max", width=4, ensemble=2)
    ckpt = tmp_path / "run.ckpt"

    def interrupt(step, total, loss, mse):
        if step == 3:  # after the checkpoint of step 2, which holds both members
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pinn.reconstruct(small, checkpoint=ckpt, checkpoint_every=2, callback=interrupt, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]
    other = dataclasses.replace(small, raw=small.raw * np.float32(1.01))
    with pytest.raises(ValueError, match=r"run\.ckpt: checkpoint was made from other raw frames"):
        pinn.reconstruct(other, checkpoint=ckpt, checkpoint_every=2, resume=True, **kw)


def test_cli_resume_on_a_file_whose_frames_changed_fails_with_one_line(tmp_path):
    ds = cusim.simulate(shape=(32, 32), seed=5)
    path = io.save(ds, tmp_path / "data.h5")
    ckpt = path.with_name(f".{path.name}.pinn.ckpt")  # where cusim run keeps it
    _interrupted_run(ds.frames(), ds.operator(device="cpu"), pinn.PINNConfig(steps=10, stop="max"), ckpt)
    ds.raw = ds.raw[:, ::-1].copy()  # the file now holds other frames
    io.save(ds, path)
    res, text = _cli("run", path, "--method", "pinn", "--steps", "10", "--stop", "max", "--resume", "--device", "cpu")
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert res.exit_code == 1 and len(errors) == 1 and "Traceback" not in text, text
    assert "checkpoint was made from other raw frames (fingerprint" in errors[0]
    assert ckpt.exists() and "pinn" not in io.load(path).recons


def test_cli_resume_without_a_checkpoint_says_it_starts_from_step_0(tmp_path):
    path = io.save(cusim.simulate(shape=(32, 32), seed=5), tmp_path / "data.h5")
    res, text = _cli("run", path, "--method", "pinn", "--steps", "2", "--stop", "max", "--resume", "--blend", "none")
    assert res.exit_code == 0, text
    assert "note: --resume: no checkpoint of /recon/pinn beside" in text and "starting from step 0" in text


def test_cli_keeps_the_checkpoint_until_the_result_is_stored(tmp_path, monkeypatch):
    """It was removed when reconstruct returned, so a failed or interrupted store (metrics, HDF5, TIFF, figure) lost
    the fit; a resume now finishes without stepping and removes it."""
    import cusim.cli as cli_module  # noqa: PLC0415

    path = io.save(cusim.simulate(shape=(32, 32), seed=5), tmp_path / "data.h5")
    ckpt = path.with_name(".data.h5.pinn.ckpt")
    args = ["run", path, "--method", "pinn", "--steps", "4", "--stop", "max", "--blend", "none"]
    real = cli_module._store
    monkeypatch.setattr(cli_module, "_store", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    res, text = _cli(*args)
    assert res.exit_code == 1 and ckpt.exists() and "pinn" not in io.load(path).recons, text
    monkeypatch.setattr(cli_module, "_store", real)
    res, text = _cli(*args, "--resume")
    assert res.exit_code == 0 and io.load(path).recons["pinn"].attrs["steps_run"] == 4, text
    assert not ckpt.exists()


def test_cli_keeps_the_checkpoint_beside_the_output_not_the_input(tmp_path, monkeypatch):
    """The input's folder may be read-only (--out is for that); the output's is checked writable before the run."""
    path = io.save(cusim.simulate(shape=(32, 32), seed=5), tmp_path / "data.h5")
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "o.h5"
    seen = []
    real = pinn.optimise
    monkeypatch.setattr(pinn, "optimise", lambda *a, **k: seen.append(k["checkpoint"]) or real(*a, **k))
    res, text = _cli("run", path, "--method", "pinn", "--steps", "2", "--stop", "max", "--blend", "none", "--out", out,
                     "--resume")
    assert res.exit_code == 0, text
    assert seen == [out.with_name(".o.h5.pinn.ckpt")] and f"beside {out}" in text.replace("\n", "")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data.h5", "o.h5", "out"]


def test_a_run_cut_off_by_the_step_cap_says_how_far_its_residual_still_was(small):
    op = small.operator(device="cpu")
    short = pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=3, width=8, stop="discrepancy"))
    assert short.steps == 3 and short.residual_sigma2[-1] > 1.0
    assert short.stop_reason == (f"max steps (3), residual {short.residual_sigma2[-1]:.3f} sigma^2 still above "
                                 "tau 1 (more steps fit further)")
    assert pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=3, width=8, stop="max")).stop_reason == "max steps (3)"


def test_a_time_limit_ends_the_steps_after_the_block_that_passed_it_with_what_the_rule_holds(small):
    op = small.operator(device="cpu")
    base = dict(width=8, lr=1e-2, seed=1)
    # a limit any step passes: one block runs (a step on the CPU, sync_every steps where set), then it ends
    cut = pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=50, stop="max", time_limit=1e-9, **base))
    one = pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=1, stop="max", **base))
    assert (cut.steps, cut.stop_reason) == (1, "time limit (1e-09 s) at step 1")
    np.testing.assert_array_equal(cut.image, one.image)
    block = pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=50, stop="max", time_limit=1e-9, sync_every=5,
                                                              **base))
    assert (block.steps, block.stop_reason) == (5, "time limit (1e-09 s) at step 5")
    # the validation stop returns its least held-out residual's image so far, as at the step cap
    val = dict(steps=50, stop="validation", sync_every=5, **base)
    v_cut = pinn.optimise(small.frames(), op, pinn.PINNConfig(time_limit=1e-9, **val))
    v_cap = pinn.optimise(small.frames(), op, pinn.PINNConfig(**{**val, "steps": 5}))
    assert v_cut.stop_reason.startswith("time limit (1e-09 s) at step 5; the image of ")
    assert "least held-out residual" in v_cut.stop_reason
    assert v_cut.stop_reason.split(";")[1] == v_cap.stop_reason.split(";")[1]
    np.testing.assert_array_equal(v_cut.image, v_cap.image)
    # a limit never reached changes nothing; a run that ends at its cap says so, not the limit
    free = pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=6, stop="max", time_limit=1e6, **base))
    plain = pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=6, stop="max", **base))
    assert free.stop_reason == "max steps (6)"
    np.testing.assert_array_equal(free.image, plain.image)
    at_cap = pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=1, stop="max", time_limit=1e-9, **base))
    assert at_cap.stop_reason == "max steps (1)"
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="time_limit: expected"):
            pinn.PINNConfig(time_limit=bad)


def test_discrepancy_principle_stops_at_the_noise_level(small):
    op = small.operator(device="cpu")
    # a loose tau keeps the test short; the mechanism is the same at tau = 1
    run = pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=300, stop="discrepancy", tau=8.0, width=8, lr=1e-2))
    assert run.stop_reason.startswith("discrepancy") and run.steps < 300
    assert run.residual_sigma2[-1] <= 8.0 < run.residual_sigma2[-2]


def test_reading_the_loss_back_in_blocks_changes_nothing_in_the_result(small):
    op = small.operator(device="cpu")
    base = dict(width=8, lr=1e-2, seed=1)
    every = pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=12, stop="max", **base))
    block = pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=12, stop="max", sync_every=5, **base))
    np.testing.assert_array_equal(block.loss, every.loss)  # 5 + 5 + 2 steps, read back three times
    np.testing.assert_array_equal(block.image, every.image)
    cfg = dict(steps=300, stop="discrepancy", tau=8.0, **base)
    exact = pinn.optimise(small.frames(), op, pinn.PINNConfig(**cfg))
    late = pinn.optimise(small.frames(), op, pinn.PINNConfig(sync_every=7, **cfg))
    assert exact.stop_reason.startswith("discrepancy") and exact.steps < 300 and exact.steps % 7 != 0
    # the rule fired inside a block: the run still ends with that step's image and histories
    assert (late.steps, late.stop_reason) == (exact.steps, exact.stop_reason)
    np.testing.assert_array_equal(late.residual_sigma2, exact.residual_sigma2)
    np.testing.assert_array_equal(late.image, exact.image)


def test_fast_step_bfloat16_channels_last_is_deterministic_and_close_to_float32(small):
    op = small.operator(device="cpu")
    truth = small.ground_truth
    cfg = dict(steps=60, stop="max", width=8, lr=1e-2, seed=2)
    ref = pinn.optimise(small.frames(), op, pinn.PINNConfig(**cfg))
    fast = pinn.PINNConfig(**cfg, **pinn.FAST)
    assert fast.fast and fast.precision == "bfloat16" and fast.channels_last and not pinn.PINNConfig().fast
    a = pinn.optimise(small.frames(), op, fast)
    b = pinn.optimise(small.frames(), op, fast)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.dtype == np.float32 and a.steps == 60 and np.isfinite(a.loss).all()
    psnr = {k: cusim.metrics.psnr(r.image, truth, norm="lstsq") for k, r in (("f32", ref), ("fast", a))}
    # same fit to the data and the same quality, not the same bits: the U-Net runs in bfloat16
    assert abs(psnr["fast"] - psnr["f32"]) < 1.0, psnr
    assert a.residual_sigma2[-1] < 1.5 * ref.residual_sigma2[-1] and a.residual_sigma2[-1] < 0.2 * a.residual_sigma2[0]


def test_fast_settings_are_validated():
    with pytest.raises(ValueError, match=r"precision: expected one of \['float32', 'bfloat16'\], got 'float16'"):
        pinn.PINNConfig(precision="float16")
    with pytest.raises(ValueError, match="sync_every: expected an integer >= 1, got 0"):
        pinn.PINNConfig(sync_every=0)
    with pytest.raises(ValueError, match=r"channels_last: expected one of \[False, True\], got 'yes'"):
        pinn.PINNConfig(channels_last="yes")
    with pytest.raises(ValueError, match=r"seed: expected an integer >= 0, got 1.5"):  # torch ran it as seed 1
        pinn.PINNConfig(seed=1.5)


def test_a_holdout_of_no_watched_pixel_and_impossible_step_counts_are_refused(small, tmp_path):
    """Not a run that returns its first step's image with a NaN residual, or a TypeError / ZeroDivisionError."""
    op, frames = small.operator(device="cpu"), small.frames()
    with pytest.raises(ValueError, match=r"holdout: 1e-06 of these frames' 9216 camera pixels holds none"):
        pinn.optimise(frames, op, pinn.PINNConfig(steps=3, width=4, holdout=1e-6))
    with pytest.raises(ValueError, match="steps: expected an integer >= 1, got 0"):
        pinn.optimise(frames, op, pinn.PINNConfig(width=4), steps=0)
    with pytest.raises(ValueError, match="checkpoint_every: expected an integer >= 1, got 0"):
        pinn.optimise(frames, op, pinn.PINNConfig(steps=3, width=4, stop="max"), checkpoint=tmp_path / "c.ckpt",
                      checkpoint_every=0)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"depth: 6 halvings of the 64 x 64 object grid leave 1 x 1 .* depth <= 5"):
        pinn.optimise(frames, op, pinn.PINNConfig(steps=2, width=4, depth=6, stop="max"))
    # without batch norm one pixel is enough, none is not (torch's "Output size is too small" before)
    with pytest.raises(ValueError, match=r"depth: 7 halvings of the 64 x 64 object grid leave 0 x 0 .*network needs "
                                         r"at least one; expected depth <= 6"):
        pinn.optimise(frames, op, pinn.PINNConfig(steps=2, width=4, depth=7, stop="max", norm="none"))


def test_settings_that_would_change_nothing_are_refused_or_named(small):
    """A prior without a weight, a weight without a prior, and 'mixed' inputs for one network each gave the default
    image bit for bit without a word; a loss that is not a string ended in AttributeError."""
    for kw in (dict(prior="tv"), dict(prior="hessian", prior_weight=0.0), dict(prior_weight=5.0)):
        with pytest.raises(ValueError, match=r"^prior_weight: the PINN's prior .* changes nothing"):
            pinn.PINNConfig(**kw)
    assert pinn.PINNConfig(prior="tv", prior_weight=1e-3).prior_weight == 1e-3
    for loss in (None, ["mse"], 5):
        with pytest.raises(ValueError, match=r"^loss: expected terms from"):
            pinn.PINNConfig(loss=loss)
    with pytest.warns(cusim.CusimWarning, match="input 'mixed' alternates the inputs of an ensemble's networks; one "):
        pinn.optimise(small.frames(), small.operator(device="cpu"), pinn.PINNConfig(steps=1, width=4, input="mixed"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pinn.optimise(small.frames(), small.operator(device="cpu"),
                      pinn.PINNConfig(steps=1, width=4, input="mixed", ensemble=2))


def test_an_ensembles_final_loss_is_its_members_mean(small):
    """Its loss holds the members' histories one after another: final_loss was the last member's last loss."""
    res = cusim.reconstruct(small, "pinn", device="cpu", steps=3, width=4, ensemble=2, blend="none", stop="max")
    assert res.loss.shape == (6,)
    assert res.final_loss == pytest.approx((res.loss[2] + res.loss[5]) / 2, rel=1e-6)
    assert res.to_recon().attrs["final_loss"] == res.final_loss


def test_time_series_warm_starts_each_frame_from_the_previous():
    ds = cusim.simulate(shape=(32, 32), snr=20, T=2, seed=2)
    res = cusim.reconstruct(ds, "pinn", device="cpu", steps=6, warm_start_steps=2, stop="max", width=4)
    assert res.image.shape == (2, 32, 32)
    assert res.extra["steps_run"] == 8 and len(res.loss) == 8


def test_an_ensemble_is_the_mean_of_its_members_each_warm_started_through_the_series():
    ds = cusim.simulate(shape=(32, 32), snr=20, T=2, seed=2)
    # lr 1e-4: the batched network's grouped convolutions round differently (3e-6 relative after one step), and
    # Adam amplifies that where a gradient is near zero (each such weight steps by about lr whatever the sign): at
    # lr 1e-2 to 3e-3 by step 12 on an Intel Xeon; at 1e-3 it stayed ~1e-6 there but reached 2e-3 (absolute, on
    # an image of max 1.2) at the warm-started time point on an AMD EPYC (AVX2) with two threads; at 1e-4 it is
    # 6e-7 there with one thread or two, while the two members still differ by 0.66 or more
    # blend "none": the networks' images (the default blend maps the ensemble's mean, not each member, onto FISTA's)
    kw = dict(steps=6, warm_start_steps=3, stop="max", width=4, lr=1e-4, blend="none")
    # two threads wherever it runs: with one (a 1-core machine, taskset) the rounding differs and grew to 9e-4
    # relative by the last step, with two it stays ~1e-6
    from cusim._threads import set_threads, threads

    previous = threads()
    set_threads(2)
    try:
        single = [cusim.reconstruct(ds, "pinn", device="cpu", seed=s, **kw) for s in (3, 4)]
        ens = cusim.reconstruct(ds, "pinn", device="cpu", seed=3, ensemble=2, **kw)
    finally:
        set_threads(previous)
    assert not np.allclose(single[0].image, single[1].image, atol=1e-3)  # the members differ
    mean = (single[0].image + single[1].image) / 2
    np.testing.assert_allclose(ens.image, mean, rtol=0, atol=1e-5 * float(mean.max()))
    assert ens.extra["ensemble"] == 2 and ens.extra["steps_run"] == 18 and len(ens.loss) == 18
    # run order: time point 0 of both members, then time point 1 of both
    np.testing.assert_allclose(ens.loss[6:12], single[1].loss[:6], rtol=1e-6)
    np.testing.assert_allclose(ens.loss[15:], single[1].loss[6:], rtol=1e-6)
    with pytest.raises(ValueError, match="ensemble: expected an integer >= 1, got 0"):
        pinn.PINNConfig(ensemble=0)


def test_an_ensemble_whose_members_stop_apart_warm_starts_each_from_where_its_own_run_ended():
    """A member whose rule fired is still stepped with the others; its next time point starts from its weights
    when its rule fired, as a run of its seed alone would (before: from the weights after the others' steps, 0.25
    of the maximum off at the second time point)."""
    from cusim._threads import set_threads, threads

    ds = cusim.simulate(shape=(32, 32), snr=20, T=2, seed=2)
    kw = dict(steps=30, warm_start_steps=4, stop="discrepancy", tau=60.0, width=4, lr=1e-3, blend="none",
              device="cpu")
    previous = threads()
    set_threads(2)  # as in the test above: the rounding of the grouped convolutions stays ~1e-6
    try:
        single = [cusim.reconstruct(ds, "pinn", seed=s, **kw) for s in (5, 6)]
        ens = cusim.reconstruct(ds, "pinn", seed=5, ensemble=2, **kw)
    finally:
        set_threads(previous)
    op, cfg = ds.operator(device="cpu"), {k: v for k, v in kw.items() if k not in ("device", "warm_start_steps")}
    first = [pinn.optimise(ds.frames(0), op, pinn.PINNConfig(seed=s, **cfg)).steps for s in (5, 6)]
    assert first[0] != first[1], first  # the members stop apart at the first time point
    mean = (single[0].image + single[1].image) / 2
    np.testing.assert_allclose(ens.image, mean, rtol=0, atol=1e-4 * float(mean.max()))


def test_an_interrupted_ensemble_resumes_from_its_one_checkpoint(small, tmp_path):
    kw = dict(steps=8, stop="max", width=4, lr=1e-2, ensemble=2)
    ref, _ = pinn.reconstruct(small, **kw)
    ckpt = tmp_path / "run.ckpt"

    def interrupt(step, total, loss, mse):
        assert total == 8  # the members step together
        if step == 5:  # the checkpoint is from step 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pinn.reconstruct(small, checkpoint=ckpt, checkpoint_every=2, callback=interrupt, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]
    seen = []
    image, info = pinn.reconstruct(small, checkpoint=ckpt, checkpoint_every=2, resume=True,
                                   callback=lambda s, n, lo, m: seen.append(s), **kw)
    np.testing.assert_allclose(image, ref, rtol=0, atol=1e-5 * float(ref.max()))
    assert seen == list(range(5, 9))  # both members went on from step 4
    assert info["steps_run"] == 16 and not list(tmp_path.iterdir())  # nothing left behind


def test_a_batched_ensemble_equals_the_mean_of_separate_runs_whose_rules_stop_them_apart(small):
    # One batched network of 3 members against 3 separate runs of seeds 5, 6, 7. A loose tau makes the
    # discrepancy rule fire early, at different steps (7, 4, 4): a member that stopped keeps being stepped
    # with the others, and its result is that of its own stop. Early, because the grouped convolutions
    # round differently from single ones (3e-6 relative after a step) and on this tiny network Adam
    # amplifies that over tens of steps (measured: 1e-2 to 1e-1 relative after 60 steps at lr 1e-3).
    op = small.operator(device="cpu")
    cfg = dict(steps=30, stop="discrepancy", tau=60.0, width=4, lr=1e-3, seed=5)
    single = [pinn.optimise(small.frames(), op, pinn.PINNConfig(**{**cfg, "seed": 5 + j})) for j in range(3)]
    ens = pinn.optimise(small.frames(), op, pinn.PINNConfig(ensemble=3, **cfg))
    stops = [r.steps for r in single]
    assert all(r.stop_reason.startswith("discrepancy") for r in single) and len(set(stops)) > 1, stops
    assert [m["steps"] for m in ens.members] == stops
    assert [m["stop_reason"] for m in ens.members] == [r.stop_reason for r in single]
    # 1e-3 of the maximum: rounding as amplified (measured at most 1.4e-4 over these 4-7 steps); an image
    # taken at the wrong step or from another member is off by 1e-2 to 1
    for m, r in zip(ens.members, single):
        np.testing.assert_allclose(m["image"], r.image, rtol=0, atol=1e-3 * float(r.image.max()))
        np.testing.assert_allclose(m["loss"], r.loss, rtol=1e-4)
    mean = np.mean([r.image for r in single], axis=0)
    np.testing.assert_allclose(ens.image, mean, rtol=0, atol=1e-3 * float(mean.max()))
    assert ens.steps == sum(stops) and len(ens.loss) == sum(stops)


def test_a_mixed_ensemble_equals_separate_runs_of_each_members_input(small):
    # input="mixed": member 0 sees the upsampled frames, member 1 their mean (the widefield image), each from its
    # own seed, stepped together; each computes what a separate run of its seed and input computes (the rounding
    # tolerance of the test above; measured 2e-4 of the maximum after 3 steps, 1.5e-3 after 4, as for members of
    # one input). The narrow member's first-layer weights on the padded channels stay zero through Adam's steps.
    # Stop "max": a validation stop draws its held-out pixels from cfg.seed for every member, so a separate run
    # of seed 6 would hold out other pixels than the ensemble's member 1.
    op = small.operator(device="cpu")
    cfg = dict(steps=3, stop="max", width=4, lr=1e-3, seed=5)
    single = [pinn.optimise(small.frames(), op, pinn.PINNConfig(**{**cfg, "seed": 5 + j, "input": kind}))
              for j, kind in enumerate(("upsampled", "widefield"))]
    ens = pinn.optimise(small.frames(), op, pinn.PINNConfig(ensemble=2, input="mixed", **cfg))
    assert [m["input"] for m in ens.members] == ["upsampled", "widefield"]
    for m, r in zip(ens.members, single):
        np.testing.assert_allclose(m["image"], r.image, rtol=0, atol=1e-3 * float(r.image.max()))
        np.testing.assert_allclose(m["loss"], r.loss, rtol=1e-4)
    assert abs(float(single[0].image.mean() - single[1].image.mean())) + float(
        np.abs(single[0].image - single[1].image).max()) > 1e-2 * float(single[0].image.max())  # two networks
    w = ens.state["down.0.0.weight"]
    assert w.shape == (8, small.frames().shape[0], 3, 3) and float(w[4:, 1:].abs().max()) == 0.0
    assert pinn.member_inputs(pinn.PINNConfig(ensemble=3, input="mixed")) == ["upsampled", "widefield", "upsampled"]
    assert pinn.member_inputs(pinn.PINNConfig(ensemble=1, input="mixed")) == ["upsampled"]
    assert pinn.member_inputs(pinn.PINNConfig(ensemble=2, input="widefield")) == ["widefield"] * 2


def test_a_margin_explains_the_light_from_outside_a_crop():
    # The frames of a crop hold light blurred in from structure outside it. Without a margin the
    # network can only fit that with artefacts at the edge, and the residual stays far above the
    # noise (measured: 12.4 and 13.1 sigma^2 after 150 steps, seeds 3 and 5); with the object
    # extended by the PSF's reach it falls to 3.6 and 4.0 and the image scores 0.9-1.1 dB higher.
    whole = cusim.simulate(shape=(128, 128), snr=20, seed=3)
    assert pinn.auto_margin(whole) == 0  # a simulation: nothing outside its field (field_isolated)
    crop = whole.crop(32, 32, 64, 64)
    assert "field_isolated" not in crop.attrs
    assert pinn.auto_margin(crop) == crop.margin_reach() == 4  # pattern parameters: known everywhere
    fewer = cusim.simulate(shape=(64, 64), upsample=4, seed=3).crop(16, 16, 32, 32)  # the reach scales with s
    assert fewer.margin_available() is None and pinn.auto_margin(fewer) == fewer.margin_reach() == 4
    cfg = pinn.PINNConfig(steps=150, stop="max", width=8)
    runs = [pinn.optimise(crop.frames(), crop.operator(margin_camera=m, device="cpu"), cfg) for m in (0, 4)]
    assert all(r.image.shape == (64, 64) for r in runs)
    assert runs[1].residual_sigma2[-1] < 0.5 * runs[0].residual_sigma2[-1]
    psnr = [cusim.metrics.psnr(r.image, crop.ground_truth, norm="lstsq", crop=4) for r in runs]
    assert psnr[1] > psnr[0] + 0.5
    # Without a margin that edge light floors the residual of the frames' edge band: the stopping rule
    # watches the interior, the PSF's reach in (reconstruct's default for a field not marked isolated).
    # The watch changes the statistic the rule reads, not the fit.
    assert (pinn.watch_inset(crop, 0), pinn.watch_inset(crop, 3), pinn.watch_inset(whole, 0)) == (4, 3, 0)
    inner = pinn.optimise(crop.frames(), crop.operator(margin_camera=0, device="cpu"), cfg, watch_inset=4)
    np.testing.assert_array_equal(inner.image, runs[0].image)
    assert inner.residual_sigma2[-1] < 0.5 * runs[0].residual_sigma2[-1]


def test_margin_is_recorded_and_refined_patterns_come_back_in_the_fields_coordinates():
    whole = cusim.simulate(shape=(64, 64), snr=20, seed=2)
    crop = whole.crop(16, 8, 32, 40)
    res = cusim.reconstruct(crop, "pinn", device="cpu", steps=3, stop="max", width=4, refine_patterns=True,
                            refine_start=0, pattern_lr=1e-9)
    assert res.image.shape == (32, 40) and res.extra["margin_camera"] == 4
    got = np.asarray(res.extra["pattern_params"]["phase"])  # an update of 1e-9: the phases it started from
    np.testing.assert_allclose(np.angle(np.exp(1j * (got - crop.pattern_params.phase))), 0, atol=1e-5)
    res0 = cusim.reconstruct(crop, "pinn", device="cpu", steps=2, stop="max", width=4, margin_camera=0)
    assert res0.image.shape == (32, 40) and res0.extra["margin_camera"] == 0
    # the rule watches the frames 4 camera pixels in where that leaves over half of each side; these 16 x 20
    # frames it watches whole, and the record says so
    assert crop.raw.shape[-2:] == (16, 20) and crop.margin_reach() == 4
    assert res.extra["watch_inset"] == 0 and res0.extra["watch_inset"] == 0
    assert (pinn.watched_inset(4, (17, 20)), pinn.watched_inset(4, (16, 20)), pinn.watched_inset(0, (9, 9))) == (4, 0, 0)


def _cli(*args):
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, [str(a) for a in args])
    return res, res.output


def test_cli_pinn_without_patterns_suggests_estimation(tmp_path):
    ds = cusim.simulate(shape=(32, 32), seed=0)
    ds.pattern_params = None
    path = io.save(ds, tmp_path / "nopat.h5")
    res, text = _cli("run", path, "--method", "pinn")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "cusim estimate" in text


def test_cli_pinn_on_cuda_without_a_gpu_is_one_line(tmp_path, monkeypatch):
    from cusim import backend

    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    path = io.save(cusim.simulate(shape=(32, 32), seed=0), tmp_path / "s.h5")
    res, text = _cli("run", path, "--method", "pinn", "--device", "cuda")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "no usable CUDA GPU" in text


def test_cli_fast_records_its_settings_and_is_refused_for_other_methods(tmp_path):
    path = io.save(cusim.simulate(shape=(32, 32), seed=0), tmp_path / "s.h5")
    res, text = _cli("run", path, "--method", "wiener", "--fast", "--metrics-border", "4")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "--fast: only for --method pinn" in text
    ds = io.load(path)
    ds.patterns, ds.pattern_params = ds.get_patterns(), None  # stored patterns: nothing known past the field
    stored = io.save(ds, path.with_name("stored.h5"))
    res, text = _cli("run", stored, "--method", "iterative", "--margin-camera", "1", "--metrics-border", "4")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "known only 0 camera pixels" in text
    res, text = _cli("run", path, "--method", "wiener", "--margin-camera", "2", "--metrics-border", "4")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1
    assert "--margin-camera: only for --method pinn or iterative, not wiener" in text
    res, text = _cli("run", path, "--method", "pinn", "--fast", "--steps", "12", "--stop", "max", "--metrics-border", "16")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "--metrics-border: a 16 px border leaves" in text
    res, text = _cli("run", path, "--method", "pinn", "--fast", "--steps", "12", "--stop", "max", "--metrics-border", "4")
    assert res.exit_code == 0, text
    params = io.load(path).recons["pinn"].attrs["params"]
    assert (params["precision"], params["channels_last"], params["sync_every"]) == ("bfloat16", True, 10)


def test_the_ensemble_default_is_one_network_on_the_cpu_and_ensemble_cuda_on_cuda():
    from cusim.recon.config import ENSEMBLE_CUDA, with_ensemble  # noqa: PLC0415

    assert ENSEMBLE_CUDA >= 2 and pinn.PINNConfig().ensemble is None
    assert with_ensemble(pinn.PINNConfig(), "cpu").ensemble == 1
    assert with_ensemble(pinn.PINNConfig(), "cuda").ensemble == ENSEMBLE_CUDA
    assert with_ensemble(pinn.PINNConfig(ensemble=3), "cpu").ensemble == 3
    assert with_ensemble(pinn.PINNConfig(ensemble=1), "cuda").ensemble == 1
    res = cusim.reconstruct(cusim.simulate(shape=(32, 32), seed=0), "pinn", device="cpu", steps=5, stop="max",
                            width=4, blend="none")
    assert res.extra["ensemble"] == 1 and res.extra["steps_run"] == 5 and res.params["ensemble"] is None


def test_cli_progress_without_a_terminal_is_a_plain_line_every_interval(tmp_path, monkeypatch):
    """A log or a pipe gets ``pinn FILE: step/total steps, loss, residual, rate`` lines, not a bar it cannot redraw."""
    from cusim import cli  # noqa: PLC0415

    path = io.save(cusim.simulate(shape=(32, 32), seed=0), tmp_path / "s.h5")
    args = ("run", path, "--method", "pinn", "--steps", "4", "--stop", "max", "--blend", "none", "--metrics-border", "4")
    monkeypatch.setattr(cli, "PROGRESS_EVERY_S", 0.0)  # every step after the first
    res, text = _cli(*args)
    assert res.exit_code == 0, text
    lines = [line for line in text.splitlines() if line.startswith("pinn s.h5: ")]
    assert [line.split()[2] for line in lines] == ["2/4", "3/4", "4/4"], text
    assert all("residual" in line and "sigma^2" in line and line.endswith("steps/s") for line in lines), text
    monkeypatch.setattr(cli, "PROGRESS_EVERY_S", 3600.0)
    res, text = _cli(*args, "--name", "quiet")
    assert res.exit_code == 0 and not [line for line in text.splitlines() if line.startswith("pinn s.h5")], text


def test_cli_ensemble_is_recorded_and_checked(tmp_path):
    path = io.save(cusim.simulate(shape=(32, 32), seed=0), tmp_path / "s.h5")
    res, text = _cli("run", path, "--method", "iterative", "--ensemble", "2", "--metrics-border", "4")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "--ensemble: only for --method pinn" in text
    res, text = _cli("run", path, "--method", "pinn", "--ensemble", "0", "--metrics-border", "4")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "ensemble: expected an integer >= 1" in text
    res, text = _cli("run", path, "--method", "pinn", "--ensemble", "2", "--steps", "5", "--stop", "max", "--metrics-border", "4")
    assert res.exit_code == 0, text
    rec = io.load(path).recons["pinn"].attrs
    assert rec["params"]["ensemble"] == 2 and rec["steps_run"] == 10 and rec["ensemble"] == 2
    assert not [p for p in tmp_path.iterdir() if "ckpt" in p.name]  # no checkpoint or member result left
    res, text = _cli("run", path, "--method", "pinn", "--input", "mixed", "--ensemble", "2", "--steps", "5", "--stop",
                     "max", "--metrics-border", "4", "--name", "mixed")
    assert res.exit_code == 0, text
    rec = io.load(path).recons["mixed"].attrs
    assert rec["params"]["input"] == "mixed" and rec["member_inputs"] == "upsampled,widefield"
    res, text = _cli("run", path, "--method", "pinn", "--input", "frames", "--metrics-border", "4")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "--input: expected one of" in text
    res, text = _cli("run", path, "--method", "wiener", "--input", "widefield", "--metrics-border", "4")
    assert res.exit_code == 1 and "--input: only for --method pinn" in text


def _refused_in_one_line(says: str, *args) -> None:
    res, text = _cli(*args)
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and says in text, text


def test_cli_time_limit_keep_within_and_keep_jitter_are_recorded_with_the_stop_and_checked(tmp_path):
    path = io.save(cusim.simulate(shape=(32, 32), seed=0), tmp_path / "s.h5")
    for option, method, value, says in (
            ("--time-limit", "iterative", "5", "--time-limit: only for --method pinn"),
            ("--time-limit", "pinn", "-2", "--time-limit: expected a finite number > 0"),
            ("--keep-within", "wiener", "1", "--keep-within: only for --method pinn"),
            ("--keep-within", "pinn", "-1", "--keep-within: expected a finite number >= 0"),
            ("--keep-jitter", "iterative", "2", "--keep-jitter: only for --method pinn"),
            ("--keep-jitter", "pinn", "nan", "--keep-jitter: expected a finite number >= 0")):
        _refused_in_one_line(says, "run", path, "--method", method, option, value, "--metrics-border", "4")
    res, text = _cli("run", path, "--method", "pinn", "--time-limit", "1e-9", "--keep-within", "0.5", "--keep-jitter",
                     "1.5", "--steps", "20", "--metrics-border", "4", "--device", "cpu")
    assert res.exit_code == 0, text
    rec = io.load(path).recons["pinn"].attrs
    assert rec["params"]["time_limit"] == 1e-9 and rec["params"]["keep_within"] == 0.5 and rec["steps_run"] == 1
    assert rec["params"]["keep_jitter"] == 1.5
    assert rec["stop_reason"].startswith("time limit (1e-09 s) at step 1; the image of the least held-out residual")


def test_cli_resume_after_killing_the_process_matches_an_uninterrupted_run(tmp_path):
    ds = cusim.simulate(shape=(64, 64), snr=20, seed=4)
    a, b = io.save(ds, tmp_path / "a.h5"), io.save(ds, tmp_path / "b.h5")
    common = ["--method", "pinn", "--steps", "60", "--stop", "max", "--checkpoint-every", "10", "--device", "cpu"]
    assert _cli("run", a, *common)[0].exit_code == 0
    ckpt = b.with_name(f".{b.name}.pinn.ckpt")
    proc = subprocess.Popen([sys.executable, "-m", "cusim.cli", "run", str(b), *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert ckpt.exists(), "the run finished or failed before writing a checkpoint"
    assert "pinn" not in io.load(b).recons  # killed: nothing half-written
    res, text = _cli("run", b, *common, "--resume")
    assert res.exit_code == 0, text
    ia, ib = io.load(a).recons["pinn"].image, io.load(b).recons["pinn"].image
    np.testing.assert_allclose(ib, ia, rtol=0, atol=1e-5 * float(ia.max()))


def test_tau_is_sigma_squared_unless_given(small):
    # the residual the true object leaves is sigma^2; on the paper's whole samples stopping there beat
    # 1.2 by 2.2-3.1 dB on every linear-SIM sample (docs/quality.md)
    assert pinn.PINNConfig().tau == 1.0
    op = small.operator(device="cpu")
    assert pinn.optimise(small.frames(), op, pinn.PINNConfig(steps=2, width=4)).tau == 1.0
    run = pinn.optimise(small.frames(), op,
                        pinn.PINNConfig(steps=300, stop="discrepancy", tau=8.0, width=4))
    assert run.tau == 8.0 and run.stop_reason.endswith("<= tau 8") and run.residual_sigma2[-1] <= 8.0 < run.residual_sigma2[-2]
    for bad in (0, -1.0, True, "1.2", None):
        with pytest.raises(ValueError, match="tau: expected a finite number > 0"):
            pinn.PINNConfig(tau=bad)


def test_the_default_stall_lets_a_slow_descent_near_tau_go_on():
    """The discrepancy stop's default stall, 1% over 100 steps: a residual still falling 2% per 100 steps
    above tau goes on (the image was still improving there on the paper's NL_SIM and LPSIM samples); one
    falling 0.5% stops."""
    def first_stop(rate):
        stop = pinn._Stopper(pinn.PINNConfig(stop="discrepancy"))
        mses = [1.2 * (1 - rate) ** (step / 100) for step in range(600)]
        return next((step for step, mse in enumerate(mses) if stop(step, 0.0, mse)), None)

    assert first_stop(0.02) is None and first_stop(0.005) == 100


def test_discrepancy_also_stops_where_the_residual_stalls_above_tau():
    stop = pinn._Stopper(pinn.PINNConfig(stop="discrepancy", tau=1.2, stall=0.03, patience=10))
    reasons = [stop(step, 0.0, mse) for step, mse in enumerate([3.0, 2.0, 1.6, 1.5] + [1.49] * 20)]
    first = next(i for i, r in enumerate(reasons) if r)
    assert first == 3 + 10 and "above tau 1.2" in reasons[first]  # 10 steps after the last 3% gain
    assert pinn._Stopper(pinn.PINNConfig(stop="discrepancy", tau=1.2))(0, 0.0, 1.1).startswith(
        "discrepancy: residual 1.100")


@pytest.mark.gpu
def test_pinn_on_cuda_fits_like_the_cpu(small):
    """The same seeded U-Net and physics on the GPU: the same first loss (cuDNN's TF32 convolutions change
    the rounding, not the function) and after 60 steps the same fit and quality; the fast step too."""
    cfg = dict(steps=60, stop="max", width=8, lr=1e-2, seed=2, ensemble=1)  # one network on both devices
    runs = {"cpu": pinn.optimise(small.frames(), small.operator(device="cpu"), pinn.PINNConfig(**cfg)),
            "cuda": pinn.optimise(small.frames(), small.operator(device="cuda"), pinn.PINNConfig(**cfg)),
            "fast": pinn.optimise(small.frames(), small.operator(device="cuda"), pinn.PINNConfig(**cfg, **pinn.FAST))}
    for name, r in runs.items():
        assert r.steps == 60 and r.image.dtype == np.float32 and np.isfinite(r.loss).all(), name
        assert len(r.residual_sigma2) == 60 and float(r.image.min()) >= 0, name
    np.testing.assert_allclose(runs["cuda"].residual_sigma2[0], runs["cpu"].residual_sigma2[0], rtol=1e-2)
    np.testing.assert_allclose(runs["fast"].residual_sigma2[0], runs["cpu"].residual_sigma2[0], rtol=5e-2)
    psnr = {k: cusim.metrics.psnr(r.image, small.ground_truth, norm="lstsq") for k, r in runs.items()}
    assert abs(psnr["cuda"] - psnr["cpu"]) < 1.0 and abs(psnr["fast"] - psnr["cpu"]) < 1.0, psnr
    for k in ("cuda", "fast"):
        assert runs[k].residual_sigma2[-1] < 1.5 * runs["cpu"].residual_sigma2[-1] and runs[k].residual_sigma2[-1] < 0.2 * runs[k].residual_sigma2[0], k


@pytest.mark.gpu
def test_cli_runs_every_method_on_cuda_and_records_the_gpu(tmp_path):
    path = io.save(cusim.simulate(shape=(64, 64), snr=20, seed=0), tmp_path / "s.h5")
    for method, extra in (("pinn", ["--steps", "20", "--stop", "max"]), ("pinn", ["--steps", "20", "--fast",
                          "--metrics-border", "4", "--name", "fast"]), ("iterative", ["--iterations", "20"]), ("wiener", [])):
        res, text = _cli("run", path, "--method", method, "--device", "cuda", *extra)
        assert res.exit_code == 0, text
    recons = io.load(path).recons
    gpu = cusim.backend.device_name("cuda")
    for name in ("pinn", "fast", "iterative", "wiener"):
        assert recons[name].attrs["device"] == gpu and np.isfinite(recons[name].image).all(), name


@pytest.fixture
def deterministic_cudnn():
    """cuDNN's deterministic algorithms for the duration of a test (its atomics reorder sums run to run)."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def _no_notes(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, cusim.CusimWarning)]


@pytest.mark.gpu
@pytest.mark.parametrize("ensemble, kind", [(1, "upsampled"), (3, "upsampled"), (2, "mixed")])
def test_the_captured_step_equals_the_eager_step(small, deterministic_cudnn, ensemble, kind):
    """The whole step captured as one CUDA graph and replayed computes what the eager step computes: the
    image after 50 steps to 1e-5 relative (same seed, float32), for one network, a batched ensemble, and one
    whose members see different inputs."""
    import warnings  # noqa: PLC0415

    op = small.operator(device="cuda")
    cfg = dict(steps=50, stop="max", width=8, lr=1e-3, seed=2, ensemble=ensemble, input=kind)
    fit = pinn.PINNStep(small.frames(), op, pinn.PINNConfig(**cfg))
    assert fit.graph is not None and fit.block == pinn.GRAPH_BLOCK
    fit.close()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        captured = pinn.optimise(small.frames(), op, pinn.PINNConfig(**cfg))
    assert not _no_notes(record)  # the capture did not fall back
    eager = pinn.optimise(small.frames(), op, pinn.PINNConfig(graph=False, **cfg))
    assert captured.steps == eager.steps == 50 * ensemble
    scale = float(np.abs(eager.image).max())
    assert float(np.abs(captured.image - eager.image).max()) <= 1e-5 * scale
    np.testing.assert_allclose(captured.loss, eager.loss, rtol=1e-5)


@pytest.mark.gpu
def test_the_captured_step_stops_where_the_eager_step_stops(small, deterministic_cudnn):
    """The rule looks at every step of a replayed block: the stop, its histories and image are the eager
    run's (read back every step), and a warm-started time series runs captured too."""
    op = small.operator(device="cuda")
    cfg = dict(steps=300, stop="discrepancy", tau=8.0, width=8, lr=1e-2, seed=1, ensemble=1)
    captured = pinn.optimise(small.frames(), op, pinn.PINNConfig(**cfg))
    eager = pinn.optimise(small.frames(), op, pinn.PINNConfig(graph=False, sync_every=1, **cfg))
    assert captured.stop_reason.startswith("discrepancy") and captured.steps % pinn.GRAPH_BLOCK != 0
    assert (captured.steps, captured.stop_reason) == (eager.steps, eager.stop_reason)
    np.testing.assert_allclose(captured.image, eager.image, rtol=0, atol=1e-4 * float(eager.image.max()))
    ds = cusim.simulate(shape=(32, 32), snr=20, T=2, seed=2)
    res = cusim.reconstruct(ds, "pinn", device="cuda", steps=30, warm_start_steps=10, stop="max", width=4,
                            ensemble=1)
    assert res.image.shape == (2, 32, 32) and res.extra["steps_run"] == 40 and np.isfinite(res.image).all()


@pytest.mark.gpu
def test_a_time_limit_on_cuda_ends_the_captured_steps_after_the_first_block(small, deterministic_cudnn):
    """The limit is looked at after each replayed block: a limit any block passes ends a pair's run after
    GRAPH_BLOCK steps of each network, with the validation stop's image so far."""
    op = small.operator(device="cuda")
    cfg = dict(steps=200, stop="validation", width=8, lr=1e-2, seed=1, ensemble=2)
    cut = pinn.optimise(small.frames(), op, pinn.PINNConfig(time_limit=1e-9, **cfg))
    block = pinn.optimise(small.frames(), op, pinn.PINNConfig(**{**cfg, "steps": pinn.GRAPH_BLOCK}))
    assert cut.steps == 2 * pinn.GRAPH_BLOCK
    assert cut.stop_reason.startswith(f"time limit (1e-09 s) at step {pinn.GRAPH_BLOCK}; the image of the least")
    np.testing.assert_allclose(cut.image, block.image, rtol=0, atol=1e-4 * float(block.image.max()))


@pytest.mark.gpu
def test_the_default_on_cuda_is_an_ensemble_of_ensemble_cuda_networks(small, deterministic_cudnn, monkeypatch):
    """On CUDA an ensemble size left unset is ENSEMBLE_CUDA networks (seeds 0, 1, ...): the image is the mean of
    what those seeds give as single networks, and the record says how many ran; the settings record it unset."""
    from cusim.recon.config import ENSEMBLE_CUDA  # noqa: PLC0415

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # grouped and single convolutions round alike
    common = dict(steps=20, stop="max", width=4, blend="none")
    res = cusim.reconstruct(small, "pinn", device="cuda", **common)
    singles = [cusim.reconstruct(small, "pinn", device="cuda", ensemble=1, seed=j, **common).image
               for j in range(ENSEMBLE_CUDA)]
    assert res.extra["ensemble"] == ENSEMBLE_CUDA and res.params["ensemble"] is None
    assert res.extra["steps_run"] == 20 * ENSEMBLE_CUDA
    scale = float(np.abs(res.image).max())
    assert float(np.abs(res.image - np.mean(singles, axis=0)).max()) <= 1e-2 * scale  # grouped and single convolutions sum in another order


@pytest.mark.gpu
def test_pattern_refinement_runs_the_eager_step_with_one_note(small):
    with pytest.warns(cusim.CusimWarning, match="the CUDA graph is off for pattern refinement") as record:
        res = cusim.reconstruct(small, "pinn", device="cuda", steps=20, stop="max", width=4,
                                refine_patterns=True, refine_start=5)
    assert len(_no_notes(record)) == 1 and np.isfinite(res.image).all()
