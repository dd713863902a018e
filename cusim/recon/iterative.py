"""Iterative reconstruction with the toolkit's autodiff-free solvers (:mod:`cusim.optim`) on the SIM operator.

``fista`` (default) solves non-negative least squares with an optional TV or Hessian prior and refits
per-frame gain and offset as it goes (real frames come in arbitrary units with a camera offset);
``rl`` is multi-frame Richardson-Lucy on the frames with gain and offset removed (both taken from 20
FISTA steps of non-negative least squares, since a percentile of a crowded field is no offset).

Stopping matters more than the prior: run to convergence, least squares fits the noise (on the paper's
SIM/microtubules sample 1 the PSNR peaks at 32.7 dB after ~25 FISTA steps and falls to 30.8 dB by 100).
The default stop is the discrepancy principle: the first iterate whose residual mean square reaches
``tau`` times the noise variance, estimated from the frames' out-of-band spectrum (:mod:`cusim.noise`), and not
before iteration ``min_iter`` (10): in very dark frames the first iterates are already within the estimate's
few % of the noise level (``IterativeConfig``).
The prior's weight ``prior_weight`` is relative: ``lam = prior_weight * sigma * K`` (the absolute weight
of :func:`cusim.optim.fista`), so it follows the data's units.

``noise="camera"`` (FISTA only) replaces the one sigma by the camera's per-pixel variance
``var(y) = gain * (y - offset) + read_sigma^2`` (:class:`cusim.noise.CameraNoise`, estimated from the
frames by mean-variance, its parts overridden by the settings or the file's ``/camera``): the data term
becomes the weighted least squares ``0.5 sum w (a A x + b - y)^2`` with ``w = 1 / var(y)`` (the Gaussian
approximation of the Poisson-Gaussian likelihood), and the step size, the gain and offset refit, the
discrepancy stop and the prior's weight all follow from it (see :func:`_camera_weights`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._validate import check_frames_vary
from ..backend import resolve_device, to_numpy, xp_for
from ..noise import camera_model, estimate_sigma
from ..optim import fista, hessian_norm, richardson_lucy, tv
from .config import IterativeConfig, with_file_camera

# The floor of a pixel's variance under the camera model, as a share of the frames' mean variance (a
# pixel below the offset has read noise only, which may be ~0): the PINN's floor (cusim.recon.losses).
# It bounds max(w) / mean(w), and with it how much the weights shorten FISTA's step, by 1 / VAR_FLOOR.
VAR_FLOOR = 0.1


def _camera_weights(frames: np.ndarray, camera) -> tuple[np.ndarray, float]:
    """FISTA's per-pixel weights under ``camera`` and the noise sigma they stand for.

    The weighted data term ``0.5 sum r^2 / var`` is in units of the noise variance, the white one
    ``0.5 sum r^2`` in the data's squared units. Writing the former as ``(0.5 sum w r^2) / sigma_eff^2``
    with ``w = sigma_eff^2 / var`` (mean 1) and ``sigma_eff = 1 / sqrt(mean(1 / var))`` (the white noise
    level of the same mean precision) puts both in the same units: with every pixel's variance equal,
    ``w`` is 1 and ``sigma_eff`` the one sigma, so the weighted problem IS the white one. Everything
    downstream then carries over unchanged, with ``sigma_eff`` for ``sigma``:
    - the prior: ``lam = prior_weight * sigma_eff * K``. In the variance units of the likelihood that is
      ``prior_weight * K / sigma_eff`` against a data term whose residual is unit-variance per pixel:
      the prior weighs against the noise of the data as the white default does;
    - the discrepancy stop: ``2 * data / N / sigma_eff^2 = mean(r^2 / var)``, the weighted residual mean,
      which is 1 at the noise level (the target ``tau * 1``);
    - the step: ``1 / L`` with ``L`` scaled by ``max(w)`` (at most ``1 / VAR_FLOOR``) in :func:`cusim.optim.fista`.
    The variance is the camera model's at the measured counts ``y`` (fixed weights: the problem stays
    convex and its Lipschitz bound holds), clipped at ``VAR_FLOOR`` times its mean.
    """
    var = camera.variance(frames.astype(np.float64))
    if not float(var.mean()) > 0:  # an offset above every pixel and no read noise: no pixel has a noise level
        raise ValueError(f"camera_offset: the camera model (offset {camera.offset:g}, gain {camera.gain:g}, read "
                         f"noise {camera.read_sigma:g} counts) gives these frames no noise variance (the offset is "
                         f"at or above every pixel: the frames' least is {float(frames.min()):g}); expected an offset "
                         f"below the signal, or a read noise > 0")
    var = np.maximum(var, VAR_FLOOR * float(var.mean()))
    inv = 1.0 / var
    sigma_eff = 1.0 / float(np.sqrt(inv.mean()))
    return (inv * sigma_eff**2).astype(np.float32), sigma_eff


def solve(frames: np.ndarray, op, cfg: IterativeConfig | None = None, callback=None,
          holdout: np.ndarray | None = None) -> dict:
    """Reconstruct one stack ``frames`` (K, h, w) with ``op`` and the settings ``cfg`` (default
    ``IterativeConfig()``); returns the image and what happened.

    ``callback(i, n_iter, loss, residual)`` reports progress (residual in units of sigma^2).
    ``holdout`` (FISTA under the white noise model only), a boolean mask of the frames: those pixels
    are left out of the fit (weight 0) and of its residual, for a choice validated on them afterwards;
    the noise level is still estimated from whole frames.
    """
    cfg = IterativeConfig() if cfg is None else cfg
    if not isinstance(cfg, IterativeConfig):
        raise TypeError(f"cfg: expected an IterativeConfig (IterativeConfig.from_params builds one from a dict), "
                        f"got {type(cfg).__name__}")
    algorithm, prior, n_iter, stop, tau, tol = cfg.algorithm, cfg.prior, cfg.n_iter, cfg.stop, cfg.tau, cfg.tol
    check_frames_vary(frames)  # a constant frame has no noise level (sigma 0) and nothing to fit
    frames = np.asarray(frames, dtype=np.float32)
    camera = camera_model(frames, op, cfg)
    if holdout is not None:
        holdout = np.asarray(holdout)
        if algorithm != "fista" or camera is not None:
            raise ValueError("holdout: FISTA under the white noise model only (algorithm 'fista', noise 'white')")
        if holdout.dtype != bool or holdout.shape != frames.shape:
            raise ValueError(f"holdout: expected a boolean mask of the frames' shape {frames.shape}, got "
                             f"{holdout.dtype} {holdout.shape}")
    if camera is not None:
        return _solve_camera(frames, op, cfg, camera, callback)
    sigma, how = estimate_sigma(frames, op)
    xp = xp_for(op.device)
    y = xp.asarray(frames)
    K, N = frames.shape[0], frames.size
    weights = None
    if holdout is not None:  # the data term and its residual over the other pixels only
        kept = ~holdout
        weights, N = xp.asarray(kept.astype(np.float32)), int(kept.sum())
    lam = cfg.prior_weight * sigma * K if prior != "none" else 0.0
    penalty = {"tv": tv, "hessian": hessian_norm}.get(prior)
    gain = offset = None
    if algorithm == "rl":  # RL needs the camera offset removed: take gains and offsets from a short NNLS fit
        pre = fista(op, y, n_iter=20, fit_gain_offset=True, refit_every=5, tol=0.0)
        gain, offset = pre.gain, pre.offset
        a = xp.asarray(gain, dtype=y.dtype)[:, None, None]
        b = xp.asarray(offset, dtype=y.dtype)[:, None, None]
    residuals: list[float] = []
    state = {"reason": None}

    def watch(i, x, loss):
        if algorithm == "fista":
            data = loss - (lam * float(penalty(x)) if penalty is not None and lam > 0 else 0.0)
            res = 2 * data / N / sigma**2
        else:  # the I-divergence is not a residual: one extra forward pass
            r = a * op.forward(x) + b - y
            res = float(xp.mean(r * r)) / sigma**2
        residuals.append(res)
        if callback is not None:
            callback(i + 1, n_iter, float(loss), res)
        if stop == "discrepancy" and res <= tau and i + 1 >= cfg.min_iter:
            state["reason"] = f"discrepancy: residual {res:.3f} sigma^2 <= tau {tau:g}"
            if i + 1 == cfg.min_iter and len(residuals) > 1 and residuals[-2] <= tau:
                state["reason"] += f" (from iteration {next(j for j, r in enumerate(residuals) if r <= tau) + 1}; " \
                                   f"not before {cfg.min_iter})"
            return True
        return False

    tol_used = tol if stop == "tol" else 0.0
    if algorithm == "fista":
        out = fista(op, y, n_iter=n_iter, prior=prior, prior_weight=lam, fit_gain_offset=True, tol=tol_used,
                    callback=watch, weights=weights)
    else:
        out = richardson_lucy(op, (y - b) / a, n_iter=n_iter, tol=tol_used, callback=watch)
    reason = state["reason"] or {"max_iter": f"max iterations ({n_iter})", "tol": f"relative change < {tol:g}",
                                 "callback": "callback"}.get(out.stop, out.stop)
    return {"image": to_numpy(out.x).astype(np.float32), "loss": np.asarray(out.loss), "residual": np.asarray(residuals),
            "stop_reason": reason, "steps_run": int(out.n_iter), "sigma": sigma, "sigma_method": how,
            "gain": np.asarray(out.gain if gain is None else gain),
            "offset": np.asarray(out.offset if offset is None else offset), "camera": None}


def _solve_camera(frames: np.ndarray, op, cfg: IterativeConfig, camera, callback=None) -> dict:
    """FISTA under the camera model, in two stages: the white problem to its own discrepancy stop (at most
    ``n_iter`` iterations), then from its image, gains and offsets the weighted one (:func:`_camera_weights`)
    with the settings' stop (at most ``n_iter`` more). The weighted problem alone converges slowly: its
    bright pixels (the largest variance, the least weight) take steps ``max(w) / w`` times too short; on
    simulated filaments at SNR 4 it stood at 25.3 dB after 100 iterations against the white stop's 26.6 dB
    (docs/quality.md, "Low light"). The residual of the first stage is in units of the white sigma^2, that
    of the second in units of each pixel's variance. ``min_iter`` holds the first stage's stop (the run's
    start-up); the second starts from that stage's image and may stop at its first iteration."""
    w, sigma = _camera_weights(frames, camera)  # first: a camera that gives no noise level is refused before any work
    white_cfg = dataclasses.replace(cfg, noise="white", stop="discrepancy", camera_offset=None, camera_gain=None,
                                    camera_read_sigma=None)
    first = solve(frames, op, white_cfg, callback=None if callback is None else
                  (lambda i, n, loss, res: callback(i, 2 * cfg.n_iter, loss, res)))
    done = first["steps_run"]
    xp = xp_for(op.device)
    y, weights = xp.asarray(frames), xp.asarray(w)
    K, N = frames.shape[0], frames.size
    lam = cfg.prior_weight * sigma * K if cfg.prior != "none" else 0.0
    penalty = {"tv": tv, "hessian": hessian_norm}.get(cfg.prior)
    residuals: list[float] = []
    state = {"reason": None}

    def watch(i, x, loss):
        data = loss - (lam * float(penalty(x)) if penalty is not None and lam > 0 else 0.0)
        res = 2 * data / N / sigma**2  # = mean(r^2 / var): the weighted residual, 1 at the noise level
        residuals.append(res)
        if callback is not None:
            callback(done + i + 1, 2 * cfg.n_iter, float(loss), res)
        if cfg.stop == "discrepancy" and res <= cfg.tau:
            state["reason"] = f"discrepancy: weighted residual {res:.3f} <= tau {cfg.tau:g}"
            return True
        return False

    out = fista(op, y, x0=xp.asarray(first["image"]), gain=first["gain"], offset=first["offset"], n_iter=cfg.n_iter,
                prior=cfg.prior, prior_weight=lam, fit_gain_offset=True, tol=cfg.tol if cfg.stop == "tol" else 0.0,
                callback=watch, weights=weights)
    reason = state["reason"] or {"max_iter": f"max iterations ({cfg.n_iter})", "tol": f"relative change < {cfg.tol:g}",
                                 "callback": "callback"}.get(out.stop, out.stop)
    return {"image": to_numpy(out.x).astype(np.float32), "loss": np.concatenate([first["loss"], out.loss]),
            "residual": np.concatenate([first["residual"], residuals]),
            "stop_reason": f"white stage {done} steps, {first['stop_reason']}; camera stage {out.n_iter} steps, {reason}",
            "steps_run": done + int(out.n_iter), "sigma": sigma, "sigma_method": f"camera ({camera.method})",
            "gain": np.asarray(out.gain), "offset": np.asarray(out.offset), "camera": camera.record()}


def reconstruct(dataset, *, device: str = "auto", pad_fine: int | None = None, margin_camera: int | None = None,
                callback=None, **settings):
    """Every time point of ``dataset`` by :func:`solve`; returns ``(image, info)``.

    ``settings`` are the fields of :class:`IterativeConfig` (``algorithm``, ``prior``, ``prior_weight``
    (relative), ``n_iter``, ``stop``, ``tau``, ``tol``, ``noise``, ``camera_*``), validated before any work;
    with noise "camera" the camera settings not given come from the file's ``/camera`` (``dataset.camera``)
    where it has one. ``pad_fine`` (fine
    pixels; default the PSF's half-size) is the operator's zero margin. ``margin_camera`` (camera pixels;
    default ``dataset.default_margin()``, the PSF's reach where the patterns are known past the field)
    extends the object past the field, so that light blurred in from outside is explained there; the
    image returned is the field (docs/quality.md, "The margin": +0.1 to +6.9 dB for FISTA on the
    paper's crops). ``info["margin_camera"]`` is the margin used.
    """
    cfg, from_file = with_file_camera(IterativeConfig.from_params(settings), dataset.camera)
    device = resolve_device(device)
    margin = dataset.default_margin() if margin_camera is None else margin_camera
    op = dataset.operator(pad_fine=pad_fine, margin_camera=margin, device=device)
    field = op.field
    runs = [solve(dataset.frames(t), op, cfg, callback=callback) for t in range(dataset.T)]
    image = np.stack([r["image"][field] for r in runs]) if dataset.is_series else runs[0]["image"][field]
    info = {"loss": np.concatenate([r["loss"] for r in runs]),
            "stop_reason": "; ".join(r["stop_reason"] for r in runs), "margin_camera": margin,
            "steps_run": int(sum(r["steps_run"] for r in runs)), "sigma": runs[-1]["sigma"]}
    if runs[-1]["camera"] is not None:  # the camera model used (of the last time point), as the PINN records it
        info["camera"] = {**runs[-1]["camera"], **({"from_file": from_file} if from_file else {})}
    return image, info
