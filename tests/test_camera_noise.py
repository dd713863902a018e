"""The camera noise model (cusim.noise.CameraNoise): estimated from the frames, thinning, the PINN's use of it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import typer.testing

import cusim
from cusim import noise
from cusim.cli import app


def _frames_with_gain(gain: float, snr: float = 4.0, seed: int = 1):
    ds = cusim.simulate(shape=(256, 256), snr=snr, seed=seed, device="cpu")  # offset 100, read noise 1 e-
    off = ds.attrs["sim_offset"]
    return ds, ((ds.raw.astype(np.float64) - off) * gain + off), off


@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_mean_variance_recovers_the_gain_and_offset_of_simulated_frames(gain):
    ds, raw, off = _frames_with_gain(gain)
    cutoff = 2 * ds.na * ds.pixel_size_nm / ds.wavelength_nm
    cam = noise.estimate_camera(raw, cutoff=1.05 * cutoff)
    assert cam.gain == pytest.approx(gain, rel=0.08)
    # the read noise (1 e-) is folded into the offset: it moves the zero-variance point by 1 gain
    assert abs(cam.offset - off) < 2 * gain
    assert cam.method == "mean-variance"
    # through the operator's passband, the same
    assert noise.estimate_camera(raw, passband=ds.operator(device="cpu").passband()).gain == pytest.approx(gain, rel=0.08)


def test_given_parts_of_the_camera_are_kept_and_the_rest_refitted():
    ds, raw, off = _frames_with_gain(2.0)
    cam = noise.estimate_camera(raw, passband=ds.operator(device="cpu").passband(), offset=off, read_sigma=2.0)
    assert (cam.offset, cam.read_sigma) == (off, 2.0)
    assert cam.gain == pytest.approx(2.0, rel=0.08)
    assert cam.method == "mean-variance+given offset,read_sigma"


def test_a_given_read_noise_is_not_counted_on_top_of_the_one_folded_into_the_fitted_offset():
    """Without an offset given, the fitted line ``var = g mean + c`` holds the read noise in its offset; a given read
    noise moves the offset instead of adding its square to every variance (63.5 against 27.5 before, on frames of
    read noise 6)."""
    ds = cusim.simulate(shape=(256, 256), snr=4, read_noise=3.0, seed=1, device="cpu")  # read noise 3 e-
    off = ds.attrs["sim_offset"]
    raw = (ds.raw.astype(np.float64) - off) * 2.0 + off  # gain 2: read noise 6 counts
    kw = dict(passband=ds.operator(device="cpu").passband())
    fitted, given = noise.estimate_camera(raw, **kw), noise.estimate_camera(raw, read_sigma=6.0, **kw)
    assert given.read_sigma == 6.0 and given.gain == fitted.gain
    assert fitted.offset < off - 10 and abs(given.offset - off) < 4  # the read noise folded in, then taken out
    # well above either offset both follow the fitted line (before: 36 = 6^2 above it everywhere); within a few
    # counts^2, where the given offset is capped at the darkest local mean
    bright = np.array([off + 20 * fitted.gain, off + 60 * fitted.gain])
    assert np.abs(given.variance(bright) - fitted.variance(bright)).max() < 9


def test_frames_with_large_flat_regions_give_a_camera_estimate_or_one_clear_error():
    """A black region makes quantile bins of the local mean coincide: empty bins are left out (no NaN, no LinAlgError
    from the fit), and too few distinct levels are one ValueError."""
    ds, raw, off = _frames_with_gain(1.0)
    dark = raw.copy()
    dark[:, :, :48] = off  # 3/8 of every frame without light or noise
    means, var = noise.mean_variance(dark)
    assert np.isfinite(means).all() and np.isfinite(var).all() and 3 <= len(means) < noise._MV_BINS
    few = np.full_like(raw, off)
    few[:, :8, :8] = raw[:, :8, :8]  # light in one corner only
    with pytest.raises(ValueError, match="distinct levels .* give the camera gain and offset"):
        noise.estimate_camera(few, cutoff=0.3)


def test_a_camera_offset_above_every_pixel_is_refused_before_fista_runs():
    ds = cusim.simulate(shape=(64, 64), snr=5, seed=0, device="cpu")
    with pytest.raises(ValueError, match=r"camera_offset: the camera model \(offset 10000.*gives these frames no noise"):
        cusim.reconstruct(ds, "iterative", noise="camera", camera_offset=1e4, camera_read_sigma=0.0)


def test_thinning_keeps_poisson_statistics_at_the_fraction_of_the_light():
    rng = np.random.default_rng(0)
    cam = noise.CameraNoise(offset=100.0, gain=3.0)
    frames = cam.from_photons(rng.poisson(200.0, (4, 64, 64)))
    thinned = noise.thin(frames, cam, 0.1, seed=1)
    photons = cam.to_photons(thinned)
    assert photons.mean() == pytest.approx(20.0, rel=0.02)
    assert photons.var() == pytest.approx(20.0, rel=0.05)  # Poisson: variance = mean
    np.testing.assert_array_equal(noise.thin(frames, cam, 0.1, seed=1), thinned)  # seeded


def test_camera_variance_grows_with_the_signal_above_the_offset():
    cam = noise.CameraNoise(offset=100.0, gain=2.0, read_sigma=3.0)
    np.testing.assert_allclose(cam.variance(np.array([50.0, 100.0, 150.0])), [9.0, 9.0, 109.0])
    assert cam.record() == {"offset": 100.0, "gain": 2.0, "read_sigma": 3.0, "method": "given"}


def test_bad_camera_settings_are_refused_with_their_name():
    with pytest.raises(ValueError, match="gain: expected a finite number > 0"):
        noise.CameraNoise(offset=0.0, gain=0.0)
    rng = np.random.default_rng(0)
    bright = np.linspace(100, 1000, 64)[None, None, :] * np.ones((3, 64, 64))
    frames = bright + rng.standard_normal(bright.shape) * (2000.0 / bright)  # noise FALLS with the signal
    with pytest.raises(ValueError, match="does not grow with the signal"):
        noise.estimate_camera(frames)
    with pytest.raises(ValueError, match="camera_gain: only for noise .camera."):
        cusim.reconstruct(_frames_with_gain(1.0)[0], "pinn", device="cpu", steps=1, camera_gain=2.0)


@pytest.mark.slow  # PINN steps: minutes on a loaded 2-core CPU
def test_pinn_with_the_camera_model_records_it_in_the_provenance(tmp_path):
    ds = cusim.simulate(shape=(128, 128), snr=4, seed=2, device="cpu")
    path = tmp_path / "s.h5"
    cusim.save(ds, path)
    res = typer.testing.CliRunner().invoke(app, ["run", str(path), "--method", "pinn", "--steps", "3",
                                                 "--noise", "camera", "--camera-offset", "100", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rec = cusim.load(path).recons["pinn"]
    assert rec.attrs["params"]["noise"] == "camera" and rec.attrs["params"]["camera_offset"] == 100.0
    cam = rec.attrs["camera"]
    assert cam["offset"] == 100.0 and cam["gain"] == pytest.approx(1.0, rel=0.15)
    assert cam["method"] == "mean-variance+given offset"


def test_camera_options_without_the_camera_model_fail_with_one_line(tmp_path):
    ds = cusim.simulate(shape=(64, 64), snr=4, seed=2, device="cpu")
    path = tmp_path / "s.h5"
    cusim.save(ds, path)
    res = typer.testing.CliRunner().invoke(app, ["run", str(path), "--method", "pinn", "--camera-gain", "2"])
    assert res.exit_code == 1
    assert "--camera-gain: only for noise 'camera'" in res.output and "Traceback" not in res.output
    res = typer.testing.CliRunner().invoke(app, ["run", str(path), "--method", "wiener", "--noise", "camera"])
    assert res.exit_code == 1 and "--noise: only for --method pinn" in res.output


def test_data_loss_residual_is_one_at_the_truth_in_units_of_the_camera_variance():
    torch = pytest.importorskip("torch")
    from cusim.recon.losses import DataLoss

    ds = cusim.simulate(shape=(128, 128), snr=4, seed=3, device="cpu")
    op = ds.operator(device="cpu")
    clean = op.forward(ds.ground_truth) * ds.attrs["sim_gain"] + ds.attrs["sim_offset"]
    cam = noise.CameraNoise(offset=100.0, gain=1.0, read_sigma=1.0)  # the simulation's camera
    y, p = torch.from_numpy(ds.raw.astype(np.float32)), torch.from_numpy(clean.astype(np.float32))
    _, res = DataLoss("mse", y, 1.0, camera=cam)(p)
    assert float(res) == pytest.approx(1.0, abs=0.05)
    # the frames' variance is not one number: weighted by one sigma^2 instead, the bright pixels dominate
    sigma = float((ds.raw - clean).std())
    _, white = DataLoss("mse", y, sigma)(p)
    assert float(white) == pytest.approx(1.0, abs=0.05)
    _, twice = DataLoss("mse", y, 1.0, camera=noise.CameraNoise(offset=100.0, gain=2.0, read_sigma=1.0))(p)
    assert float(twice) == pytest.approx(0.5, abs=0.05)  # a camera of twice the gain expects twice the variance


def test_background_is_smooth_non_negative_and_learnt_with_the_network():
    torch = pytest.importorskip("torch")
    from cusim.recon._pinn_background import Background

    bg = Background(2, 9, (32, 40), "frame")
    p = torch.rand(2, 9, 32, 40) + 1.0
    b = bg.field().detach()
    assert b.shape == (2, 9, 32, 40) and float(b.min()) >= 0
    assert float((bg(p) - p).detach().mean() / p.mean()) == pytest.approx(0.01, rel=1e-3)  # starts at 1% of the mean
    with torch.no_grad():
        bg.theta.normal_()
    b = bg.field().detach()
    assert float(b.min()) >= 0
    # smooth: bilinear between 4 x 4 grid points, so neighbouring pixels differ by at most 1/10 of the range
    assert float(b.diff(dim=-1).abs().max()) <= 0.1 * float(b.max() - b.min()) + 1e-6
    bg(p).sum().backward()
    assert bg.theta.grad is not None and float(bg.theta.grad.abs().min()) > 0
    assert Background(1, 9, (32, 40), "shared").field().shape == (1, 1, 32, 40)
    # recorded as asked: with one frame a per-frame background has a shared one's shape (it was recorded "shared")
    assert Background(1, 1, (8, 8), "frame").record()["kind"] == "frame"


@pytest.mark.slow  # PINN steps: minutes on a loaded 2-core CPU
def test_pinn_with_a_background_records_it():
    ds = cusim.simulate(shape=(64, 64), snr=10, seed=2, device="cpu")
    res = cusim.reconstruct(ds, "pinn", device="cpu", steps=3, background="shared", width=8, depth=2)
    assert res.params["background"] == "shared"
    rec = res.extra["background"]
    assert rec["kind"] == "shared" and rec["cells"] == 4 and 0 < rec["mean_rel"][0] <= rec["max_rel"][0]
    with pytest.raises(ValueError, match="background: expected one of"):
        cusim.reconstruct(ds, "pinn", device="cpu", steps=3, background="planar")


@pytest.mark.slow  # PINN steps: minutes on a loaded 2-core CPU
def test_validation_stop_returns_the_image_of_the_least_held_out_residual():
    pytest.importorskip("torch")
    from cusim.recon import pinn as P

    ds = cusim.simulate(shape=(64, 64), snr=4, seed=4, device="cpu")
    cfg = P.PINNConfig(steps=30, stop="validation", patience=5, holdout=0.1, keep_within=0, keep_jitter=0, width=8,
                       depth=2)  # small: fast; keep_within and keep_jitter 0: the least's own image
    run = P.optimise(ds.frames(), ds.operator(device="cpu"), cfg)
    held = run.residual_sigma2  # the held-out pixels' residual, every step the rule looked at
    best = int(np.argmin(held))
    if run.stop_reason.startswith("validation"):
        assert len(held) == best + 1 + cfg.patience  # fired patience steps after the least residual
    assert f"step {best + 1}" in run.stop_reason
    # the image returned is that step's: a run of best + 1 steps (the same trajectory, the same pixels held
    # out) that never fires returns the image of its own least residual, which is the same step's
    again = P.optimise(ds.frames(), ds.operator(device="cpu"), dataclasses.replace(cfg, steps=best + 1, patience=10_000))
    np.testing.assert_allclose(run.image, again.image, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="holds pixels out of 'mse' and 'pg' only"):
        P.PINNConfig(stop="validation", loss="mse+0.5*ssim")
    # the default stop is this one, and the discrepancy stop where the loss cannot hold pixels out (ssim)
    assert P.PINNConfig().stop == P.PINNConfig(loss="pg").stop == "validation"
    assert P.PINNConfig(loss="mse+0.5*ssim").stop == P.PINNConfig(loss="ssim").stop == "discrepancy"
    assert P.PINNConfig.from_params({"loss": "ssim"}).stop == "discrepancy"


def test_keep_within_keeps_the_latest_step_near_the_least_held_out_residual():
    """keep_within C: the image kept is the latest step whose held-out residual is within C standard errors
    (sqrt(2 / n) sigma^2) of the least so far; a new least resets it; the run still ends ``patience`` steps after
    the least. 0 (the default) keeps the least's step."""
    pytest.importorskip("torch")
    from cusim.recon import pinn as P

    n = 800  # held-out pixels: one standard error is 0.05 sigma^2
    mse = [3.0, 2.0, 1.20, 1.24, 1.26, 1.10, 1.14, 1.149, 1.16, 1.151, 1.30, 1.12, 1.5, 1.5]

    def run(**kw):
        stop = P._Stopper(P.PINNConfig(stop="validation", patience=7, keep_jitter=0, **kw), n_held=n)
        reasons = [stop(step, 0.0, m) for step, m in enumerate(mse)]
        return stop, next((i for i, r in enumerate(reasons) if r), None), next(filter(None, reasons), None)

    stop, fired, reason = run(keep_within=0)
    assert stop.keep == stop.best_step == 5 and fired == 12 and "least at step 6 (1.100" in reason
    assert "kept" not in reason
    stop, fired, reason = run(keep_within=1.0)
    assert stop.tol == pytest.approx(0.05) and stop.best_step == 5 and fired == 12
    assert stop.keep == 11 and reason.endswith("kept step 12, within 1 standard errors of it")  # 1.12 <= 1.15
    stop, _, _ = run(keep_within=0.9)  # tolerance 0.045: 1.12 and 1.14 qualify, 1.151 and 1.149 do not
    assert stop.keep == 11
    mse[11] = 1.30
    assert run(keep_within=0.9)[0].keep == 6  # 1.14
    assert run(keep_within=1.0)[0].keep == 7  # 1.149 is the last within 0.05 of 1.10 (1.151 at step 9 is not)
    assert P._Stopper(P.PINNConfig(stop="discrepancy", keep_within=2.0), n_held=n).tol == 0  # validation only
    assert P.PINNConfig().keep_within == 0  # the default: the least's image
    assert run(keep_within=0.5)[0].keep == 5  # within 0.025: none after step 5
    mse[11] = 1.12
    assert run(keep_within=0.5)[0].keep == 11  # 1.12 <= 1.125
    with pytest.raises(ValueError, match="keep_within"):
        P.PINNConfig(keep_within=-1)


def test_keep_jitter_tolerates_a_wandering_residual_not_a_steady_rise():
    """keep_jitter K: the tolerance is K times the median step-to-step change of the held-out residual over the
    last KEEP_WINDOW steps. A residual that wanders about its least lets a later step be kept; one that rises
    smoothly by as much keeps the least's step (keep_within, at any C that admits the wandering, keeps both)."""
    pytest.importorskip("torch")
    from cusim.recon import pinn as P

    assert P.KEEP_WINDOW == 50
    least = [2.0 - 0.01 * s for s in range(100)]  # a steady fall, steps 0-99: changes of 0.01; least 1.01 at 99
    wander = [*least, *[1.01 + (0.003 if s % 2 else 0.001) for s in range(60)]]  # changes of 0.002 about it
    rise = [*least, *[1.01 + 0.0005 * (s + 1) for s in range(60)]]  # the same level reached smoothly

    def run(mse, **kw):  # steps until the rule fires, as a run does
        stop = P._Stopper(P.PINNConfig(stop="validation", patience=50, **kw), n_held=1000)
        return stop, next(filter(None, (stop(step, 0.0, m) for step, m in enumerate(mse))), None)

    stop, reason = run(wander, keep_jitter=2.0)
    # the window holds the fall's changes at first (tolerance 0.02), then the wandering's (2 x 0.002): every step
    # after the least is within it, up to step 149, where patience ends the run
    assert stop.best_step == 99 and stop.keep == 149
    assert reason.endswith("kept step 150, within 2 times its median step-to-step change of it")
    stop, _ = run(rise, keep_jitter=2.0)
    # while most of the window's changes are the fall's (to step 123) the tolerance is 0.02; from step 124 the
    # rise's (0.0005) make up half of it or more, the tolerance falls to 0.0105 and then 0.001, below the rise
    assert stop.best_step == 99 and stop.keep == 123 and stop.jitter() == pytest.approx(0.0005)
    assert run(rise, keep_jitter=0.5)[0].keep == 109  # 1.01 + 0.005 <= 1.01 + 0.5 x 0.01
    assert run(rise, keep_jitter=0)[0].keep == 99  # the least's own image
    assert run(rise, keep_within=1.0, keep_jitter=0)[0].keep == 149  # one standard error, 0.045, admits the rise
    assert run(rise, keep_within=1.0, keep_jitter=2.0)[0].keep == 149  # both: the larger tolerance
    assert P.PINNConfig().keep_jitter == 2.0 and P.PINNConfig().keep_within == 0  # the defaults
    assert run(wander, keep_jitter=0)[0].recent == []  # the window is kept only where the rule uses it
    with pytest.raises(ValueError, match="keep_jitter"):
        P.PINNConfig(keep_jitter=-0.5)


@pytest.mark.slow  # PINN steps: minutes on a loaded 2-core CPU
@pytest.mark.parametrize("rule", ["keep_within", "keep_jitter"])
def test_the_validation_stop_returns_the_kept_steps_image(rule):
    """keep_within 2 (keep_jitter 0), and keep_jitter 2 (the default): the step kept is the latest after the least
    within the rule's tolerance, recomputed here from the residuals the run recorded, and the image returned is that
    step's."""
    pytest.importorskip("torch")
    from cusim.recon import pinn as P

    ds = cusim.simulate(shape=(64, 64), snr=2, seed=4, device="cpu")
    kw = {"keep_within": 2.0, "keep_jitter": 0.0} if rule == "keep_within" else {}  # keep_jitter: its default, 2
    cfg = P.PINNConfig(steps=150, stop="validation", patience=8, holdout=0.1, width=8, depth=2, **kw)
    run = P.optimise(ds.frames(), ds.operator(device="cpu"), cfg)
    held = run.residual_sigma2
    best = int(np.argmin(held))
    n = int(P.holdout_mask(ds.frames().shape, cfg).sum())  # no margin: every held-out pixel is watched

    def tol(s):
        if rule == "keep_within":
            return 2.0 * np.sqrt(2.0 / n)
        return 2.0 * np.median(np.abs(np.diff(held[max(0, s - 50):s + 1])))

    keep = max(s for s in range(best, len(held)) if held[s] <= held[best] + tol(s) and s - best <= cfg.patience)
    assert keep > best, "this field's held-out residual must stay near its least after it, or the test shows nothing"
    says = "2 standard errors" if rule == "keep_within" else "2 times its median step-to-step change"
    assert run.stop_reason.startswith("validation:") and f"step {keep + 1}, within {says}" in run.stop_reason
    # the image returned is the kept step's: a run of keep + 1 steps that never fires keeps that same step
    again = P.optimise(ds.frames(), ds.operator(device="cpu"), dataclasses.replace(cfg, steps=keep + 1, patience=10_000))
    np.testing.assert_allclose(run.image, again.image, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # PINN steps
def test_validation_stop_with_a_background_resumes_to_the_uninterrupted_result(tmp_path):
    pytest.importorskip("torch")
    from cusim.recon import pinn as P

    ds = cusim.simulate(shape=(64, 64), snr=4, seed=5, device="cpu")
    op = ds.operator(device="cpu")
    # patience 2: the rule fires within 20 steps on this small field, after the checkpoint of step 10
    # keep_within, keep_jitter: the checkpoint carries the kept step and the residuals' window too
    cfg = P.PINNConfig(steps=20, stop="validation", patience=2, holdout=0.1, background="frame", keep_within=2.0,
                       keep_jitter=2.0, width=4, depth=2)
    ref = P.optimise(ds.frames(), op, cfg)
    ckpt = tmp_path / "run.ckpt"

    def interrupt(step, total, loss, mse):
        if step == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        P.optimise(ds.frames(), op, cfg, checkpoint=ckpt, checkpoint_every=5, callback=interrupt)
    resumed = P.optimise(ds.frames(), op, cfg, checkpoint=ckpt, checkpoint_every=5, resume=True)
    assert resumed.stop_reason == ref.stop_reason
    np.testing.assert_allclose(resumed.image, ref.image, rtol=0, atol=1e-5 * float(ref.image.max()))
    assert resumed.background == ref.background
