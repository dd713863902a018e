"""The untrained physics-informed U-Net (Burns & Liu 2023), done with the toolkit's operator.

A U-Net maps the raw frames (resampled to the fine grid) to an object ``x >= 0``; its weights are
optimised on ONE acquisition so that ``A x`` reproduces the raw frames, with ``A`` the SIMOperator
through :mod:`cusim.torch_ops` (its gradient is the hand-written adjoint; autograd never traces the
FFTs). Per-frame gain and offset are fitted in closed form inside the loss, so arbitrary units and
camera offsets do not matter. Stopping: a step budget, a loss plateau, or the discrepancy principle
(stop once the residual reaches the noise level estimated from the frames themselves).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_target
from .._validate import check_frames_vary, check_int
from .._threads import threads
from ..backend import resolve_device, to_numpy
from ..noise import estimate_sigma
from ..patterns import SinusoidParams, params_record
from ..torch_ops import sim_forward
from .config import FAST, INPUTS, PRECISIONS, PRIORS, STOPS, PINNConfig  # noqa: F401  (re-exported)
from .losses import DataLoss, prior
from .widefield import upsample_cubic



@dataclass
class PINNRun:
    """Result of one optimisation: the image, histories, why it stopped, and the weights."""

    image: np.ndarray
    loss: np.ndarray
    residual_sigma2: np.ndarray  # residual mean square in units of the estimated sigma^2, per step (of the
    # frames' interior, ``watch_inset`` camera pixels in: the stopping rule's residual)
    steps: int
    stop_reason: str
    sigma: float
    state: dict = field(repr=False, default_factory=dict)
    pattern_params: SinusoidParams | None = None  # the refined patterns (``refine_patterns``)
    tau: float | None = None  # the discrepancy threshold used (``cfg.tau``)


def network_input(frames: np.ndarray, upsample: int, kind: str) -> np.ndarray:
    """(C, H, W) float32 input: the raw frames (or their mean) interpolated to the fine grid, in [0, 1]."""
    stack = frames if kind == "upsampled" else frames.mean(axis=0, keepdims=True)
    up = np.stack([upsample_cubic(f, upsample) for f in stack])
    lo, hi = float(up.min()), float(up.max())
    return ((up - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


class _Stopper:
    """The stopping rule, as state that a checkpoint can carry."""

    def __init__(self, cfg: PINNConfig):
        self.cfg = cfg
        self.best = float("inf")
        self.best_step = 0

    def __call__(self, step: int, loss: float, mse: float) -> str | None:
        """``discrepancy`` stops at the noise level, or where the residual stalls above it: model
        mismatch (8-bit data, pattern errors) can put its floor above ``tau``, and from there on the
        network only fits noise. ``plateau`` stops when the loss stalls."""
        cfg = self.cfg
        if cfg.stop == "discrepancy" and mse <= cfg.tau:
            return f"discrepancy: residual {mse:.3f} sigma^2 <= tau {cfg.tau:g}"
        if cfg.stop in ("plateau", "discrepancy"):
            watched, delta = (loss, cfg.min_delta) if cfg.stop == "plateau" else (mse, cfg.stall)
            if watched < self.best * (1 - delta):
                self.best, self.best_step = watched, step
            elif step - self.best_step >= cfg.patience:
                what = "loss" if cfg.stop == "plateau" else f"residual ({mse:.3f} sigma^2, above tau {cfg.tau:g})"
                return f"{cfg.stop}: {what} improved by < {delta:g} over {cfg.patience} steps"
        return None


def _torch_device(op) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if op.device == "cuda" else torch.device("cpu")


def _save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_target(path) as tmp:
        torch.save(payload, tmp)


class PINNStep:
    """The optimisation state of one acquisition and its step, split where the stopping rule looks.

    ``evaluate()`` runs the U-Net and the physics and returns the loss and the residual (in sigma^2)
    as device scalars (no host synchronisation); ``update()`` back-propagates that loss and steps Adam,
    the schedule and the pattern model. :func:`optimise` drives it; the benchmarks time exactly this.

    ``cfg.precision == "bfloat16"`` runs the U-Net under autocast (its convolutions in bfloat16; its
    output, the physics, the loss, the weights and Adam in float32); ``cfg.channels_last`` keeps the
    U-Net's tensors channels-last. On CUDA the fast mode also turns on cuDNN autotuning for the
    duration of the run (:meth:`close` restores it) and uses the fused Adam kernel.
    """

    def __init__(self, frames: np.ndarray, op, cfg: PINNConfig, *, init_state: dict | None = None,
                 pattern_params: SinusoidParams | None = None, blur=None, physics=None,
                 watch_inset: int | None = None):
        from ..models import UNet  # noqa: PLC0415

        self.cfg, self.op = cfg, op
        self.device = dev = _torch_device(op)
        self.sigma, _ = estimate_sigma(frames, op)
        m = getattr(op, "margin_camera", 0)  # camera pixels past the field (peers' physics objects have none)
        torch.manual_seed(cfg.seed)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        # An operator with a margin has its object grid extend past the frames' field: the network's
        # input is mirrored out to it, and the image returned is the field (``field``).
        e = self.margin_px = m * op.upsample
        self.field = op.field if m else (slice(None), slice(None))
        inp = network_input(frames, op.upsample, cfg.input)
        if e:
            inp = np.pad(inp, ((0, 0), (e, e), (e, e)), mode="reflect")
        self.inp = torch.from_numpy(inp)[None].to(dev).contiguous(memory_format=self.memory_format)
        y = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).to(dev)
        self.net = UNet(self.inp.shape[1], width=cfg.width, depth=cfg.depth, up=cfg.up, norm=cfg.norm,
                        float32_levels=cfg.float32_levels).to(dev)
        if init_state:
            self.net.load_state_dict(init_state)
        self.net = self.net.to(memory_format=self.memory_format)
        fused = dev.type == "cuda" and cfg.fast
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, **({"fused": True} if fused else {}))
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=cfg.lr_every, gamma=cfg.lr_decay)
        # The stopping rule watches the frames' interior, ``watch_inset`` camera pixels in (default: the
        # margin). With a margin the object there can also fit the noise of the frames' edge band (its
        # light reaches that far in); without one, light from outside the field puts a floor under the
        # edge band's residual. The interior is what only the field's own object explains.
        h, w = op.camera_shape
        i = self.watch_inset = m if watch_inset is None else int(watch_inset)
        watch = (slice(i, h - i), slice(i, w - i)) if i and min(h, w) > 4 * i else None
        self.data_loss = DataLoss(cfg.loss, y, self.sigma, cfg.gain, watch=watch)
        self.physics = physics or (lambda x: sim_forward(x, op))
        self.pmodel = self.popt = None
        if cfg.refine_patterns:
            from ._pinn_patterns import PatternModel  # noqa: PLC0415

            if pattern_params is None or blur is None:
                raise ValueError("refine_patterns: needs sinusoidal pattern parameters and the blur operator")
            self.pmodel = PatternModel(pattern_params.moved(-e, -e), op.input_shape, dev)  # field -> object grid
            self.popt = torch.optim.Adam(self.pmodel.parameters(), lr=cfg.pattern_lr)
            self.physics = lambda x: sim_forward(self.pmodel() * x, blur)[:, 0]
        self._cudnn = None
        if dev.type == "cuda" and cfg.fast:
            self._cudnn = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True
        self.step_index = 0  # steps taken (Adam updates)
        self._loss = None

    def image(self) -> torch.Tensor:
        """The U-Net's current output on the object grid ``op.input_shape`` (the field and any margin; ``field``
        slices the field out), float32 (with the graph when gradients are enabled)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bfloat16"):
            x = self.net(self.inp)
        return x[0, 0].float().contiguous()

    def evaluate(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward pass of a step: ``(x, loss, mse)``, the last two detached 0-d device tensors."""
        self.opt.zero_grad(set_to_none=True)
        if self.popt is not None:
            self.popt.zero_grad(set_to_none=True)
        x = self.image()
        loss, mse = self.data_loss(self.physics(x))
        if self.cfg.prior != "none" and self.cfg.prior_weight > 0:
            loss = loss + self.cfg.prior_weight * prior(x, self.cfg.prior)
        self._loss = loss
        return x, loss.detach(), mse

    def update(self) -> None:
        """Back-propagate the last :meth:`evaluate`'s loss and take the optimiser steps."""
        self._loss.backward()
        self._loss = None
        self.opt.step()
        self.sched.step()
        if self.pmodel is not None and self.step_index >= self.cfg.refine_start:
            self.popt.step()
        self.step_index += 1

    def __call__(self) -> float | None:
        """One whole step (the benchmarks' unit of work); the loss is read back to the host (and
        returned) on every ``cfg.sync_every``-th step only, as in :func:`optimise`."""
        _, loss, _ = self.evaluate()
        self.update()
        return float(loss) if self.step_index % self.cfg.sync_every == 0 else None

    def close(self) -> None:
        if self._cudnn is not None:
            torch.backends.cudnn.benchmark, self._cudnn = self._cudnn, None

    def state(self) -> dict:
        return {"model": self.net.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                **({} if self.pmodel is None else {"patterns": self.pmodel.state_dict(), "popt": self.popt.state_dict()})}

    def load(self, ck: dict) -> None:
        self.net.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        self.sched.load_state_dict(ck["sched"])
        if self.pmodel is not None:
            self.pmodel.load_state_dict(ck["patterns"])
            self.popt.load_state_dict(ck["popt"])


def optimise(frames: np.ndarray, op, cfg: PINNConfig, *, steps: int | None = None, init_state: dict | None = None,
             checkpoint: Path | None = None, checkpoint_every: int = 100, resume: bool = False,
             callback=None, pattern_params: SinusoidParams | None = None, blur=None,
             watch_inset: int | None = None) -> PINNRun:
    """Fit the U-Net to ``frames`` (K, h, w) through ``op``; ``steps`` overrides ``cfg.steps``.

    The stopping rule's residual is that of the frames' interior, ``watch_inset`` camera pixels in from
    the edge (default: the operator's margin; :func:`reconstruct` passes the PSF's reach for a field
    that may receive light from outside it).

    With ``cfg.refine_patterns`` the frames are modelled as ``blur(I_k . x)`` with learnable sinusoidal
    patterns starting from ``pattern_params``; ``blur`` is the one-frame operator of ones (PSF and
    binning only, same grid and pad as ``op``).

    ``init_state`` warm-starts the weights. With ``checkpoint`` the full optimiser state is written
    there every ``checkpoint_every`` steps; ``resume`` continues from it (same settings and data required,
    :func:`fingerprint`; else one ValueError naming what differs) and ends with the result of an
    uninterrupted run. ``callback(step, total, loss, mse)`` reports progress.

    The loss and residual of every step are kept on the device and read back every ``cfg.sync_every``
    steps (and at checkpoints and the last step), together with the block's images; the stopping rule
    then looks at each of those steps in order, and where it fires the run ends with that step's image
    and histories, as with ``sync_every=1``. Only the returned weights (``state``, the warm start of a
    time series) are those after the block's last update.
    """
    steps = cfg.steps if steps is None else steps
    check_frames_vary(frames)  # a constant frame has no noise level and nothing to fit
    data = None if checkpoint is None else fingerprint(frames, op, pattern_params)
    fit = PINNStep(frames, op, cfg, init_state=init_state, pattern_params=pattern_params, blur=blur,
                   watch_inset=watch_inset)
    try:
        return _optimise(fit, steps, checkpoint, checkpoint_every, resume, callback, data)
    finally:
        fit.close()


def fingerprint(frames, op, pattern_params: SinusoidParams | None = None) -> dict:
    """What the data of a run was, for a checkpoint to be resumed on the same data only: the first 16 hex
    digits of sha256 digests of the raw frames (as fitted: float32, with their shape), of the operator's
    patterns and of its transfer function (PSF, camera pixel, grid), and of the starting pattern
    parameters of a run that refines them. An operator without these (a peer's physics) adds nothing."""
    def digest(a) -> str:
        a = np.ascontiguousarray(to_numpy(a))
        h = hashlib.sha256(f"{a.shape} {a.dtype}".encode())
        h.update(a.view(np.uint8).reshape(-1))
        return h.hexdigest()[:16]

    out = {"raw frames": digest(np.asarray(frames, dtype=np.float32))}
    for name, value in (("patterns", getattr(op, "patterns", None)), ("optics", getattr(op, "_T", None))):
        if value is not None:
            out[name] = digest(value)
    if pattern_params is not None:
        text = json.dumps(params_record(pattern_params), sort_keys=True).encode()
        out["pattern parameters"] = hashlib.sha256(text).hexdigest()[:16]
    return out


def _settings(cfg: PINNConfig, steps: int, margin_px: int, inset: int, data: dict | None = None) -> dict:
    """What a checkpoint must have been made with to be resumed: the settings, and the :func:`fingerprint`
    of the data (``data``)."""
    return {**dataclasses.asdict(cfg), "steps": steps, "margin_px": margin_px, "watch_inset": inset, "data": data}


def _refuse_other(path, made: dict, now: dict, what: str = "checkpoint") -> None:
    """One ValueError line naming what differs between the settings a checkpoint was ``made`` with and
    those of the run ``now``: the data that changed (with both fingerprints), and each setting that
    changed with both values."""
    if made == now:
        return
    reasons = []
    old, new = made.get("data") or {}, now.get("data") or {}
    if old != new:
        if not old:
            reasons.append(f"{what} records no fingerprint of its data (made by an older cusim)")
        else:
            changed = [k for k in dict.fromkeys([*new, *old]) if old.get(k) != new.get(k)]
            prints = ", ".join(f"{old.get(k, 'none')}, now {new.get(k, 'none')}" for k in changed)
            reasons.append(f"{what} was made from other {' and '.join(changed)} (fingerprint {prints})")
    keys = [k for k in dict.fromkeys([*now, *made]) if k != "data" and made.get(k, "none") != now.get(k, "none")]
    if keys:
        was = ", ".join(f"{k}={made.get(k, 'none')}" for k in keys)
        reasons.append(f"{what} was made with {was}, now " + ", ".join(f"{k}={now.get(k, 'none')}" for k in keys))
    raise ValueError(f"{path}: {'; '.join(reasons)}; remove it or run without --resume")


def _optimise(fit: PINNStep, steps: int, checkpoint, checkpoint_every: int, resume: bool, callback,
              data: dict | None = None) -> PINNRun:
    cfg = fit.cfg
    stopper = _Stopper(cfg)
    losses, mses, start, reason = [], [], 0, None
    settings = _settings(cfg, steps, fit.margin_px, fit.watch_inset, data)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        ck = torch.load(checkpoint, map_location=fit.device, weights_only=False)
        _refuse_other(checkpoint, ck["settings"], settings)
        fit.load(ck)
        losses, mses, start = ck["loss"], ck["mse"], ck["step"]
        fit.step_index = start
        stopper.best, stopper.best_step = ck["stopper"]
        torch.set_rng_state(ck["rng"])
    pending, images, x = [], [], None
    for step in range(start, steps):
        x, loss, mse = fit.evaluate()
        pending.append(torch.stack([loss, mse.to(loss.dtype)]))
        images.append(x.detach())  # the image of every step of the block, for an exact stop
        ck_due = checkpoint is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps
        if len(pending) < cfg.sync_every and step + 1 < steps and not ck_due:
            fit.update()
            continue
        first = step + 1 - len(pending)
        values = torch.stack(pending).cpu().numpy().astype(float)  # the one host synchronisation
        block, pending, images = images, [], []
        for i, (lv, mv) in enumerate(values):
            losses.append(float(lv))
            mses.append(float(mv))
            reason = stopper(first + i, float(lv), float(mv))
            if reason:
                x = block[i]
                break
        if reason:
            break
        fit.update()
        if callback is not None:
            for i, (lv, mv) in enumerate(values):
                callback(first + i + 1, steps, float(lv), float(mv))
        if ck_due:
            _save_checkpoint(Path(checkpoint), {
                "settings": settings, **fit.state(), "loss": losses, "mse": mses, "step": step + 1,
                "stopper": (stopper.best, stopper.best_step), "rng": torch.get_rng_state()})
    if reason is None:
        with torch.no_grad():  # the image after the last update
            x = fit.image()
        reason = f"max steps ({steps})"
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    image = x.detach()[fit.field].cpu().numpy().astype(np.float32)
    e = fit.margin_px
    return PINNRun(image, np.asarray(losses), np.asarray(mses), len(losses), reason, fit.sigma,
                   {k: v.detach().cpu().clone() for k, v in fit.net.state_dict().items()},
                   None if fit.pmodel is None else fit.pmodel.params().moved(e, e), tau=fit.cfg.tau)


def _refine_setup(dataset, op):
    """Starting parameters (stored, or fitted to stored pattern arrays) and the blur operator."""
    params = dataset.pattern_params
    if params is None:
        from ..pattern_fit import fit_sinusoids  # noqa: PLC0415

        try:
            params, _ = fit_sinusoids(dataset.get_patterns())
        except ValueError as e:
            raise ValueError(f"refine_patterns: {e}; refinement needs sinusoidal SIM patterns") from None
    from ..operators import SIMOperator  # noqa: PLC0415

    blur = SIMOperator(np.ones((1, *op.input_shape), np.float32), dataset.optics(), dataset.upsample,
                       pad_fine=op.pad_fine, margin_camera=op.margin_camera, device=op.device)
    return params, blur


def watch_inset(dataset, margin: int) -> int:
    """Camera pixels in from the frames' edge where the stopping rule's residual begins: the margin;
    without one, the PSF's reach unless the field is marked ``field_isolated`` (then 0: nothing outside).

    Light from outside a field reaches its frames' edge band, where the field's own object cannot
    explain it without artefacts; the residual there floors above sigma^2. Measured on the paper's
    SIM/microtubules sample-1 crop without a margin (docs/quality.md, "PSNR against step"): watching
    the whole frames, tau 1.0 ran to 589 steps and 24.47 dB; watching the interior 4 pixels in, it
    stops at 180 steps with 28.47 dB, by the curve's best (28.45 dB at 200)."""
    if margin:
        return int(margin)
    return 0 if dataset.field_isolated else dataset.margin_reach()


def auto_margin(dataset) -> int:
    """The PINN's default ``margin``: :meth:`Dataset.default_margin <cusim.io.Dataset.default_margin>`,
    the PSF's reach where the patterns are known that far (0 for ``field_isolated`` fields such as
    ``cusim simulate``'s, whose frames come from a zero-padded model: there a margin of 4 cost
    -0.6 / -1.1 / -1.8 dB at SNR 10 / 20 / 50 on its 128x128 filaments).

    Measured on the paper's 240x240 crops (docs/quality.md, "The margin"): the margin removes the
    residual floor of the crop's edge; with it the stopping rule watches the frames' interior, and
    the image gained 1.4-7.3 dB on every NL_SIM sample and 0.7 dB on the linear-SIM mean.
    """
    return dataset.default_margin()


def _member_run(frames, op, cfg: PINNConfig, steps: int, checkpoint, done_file, resume: bool, **kw) -> PINNRun:
    """One member of an ensemble at one time point. With ``done_file`` (ensembles with a checkpoint) a
    finished member's run is kept there, and ``resume`` takes it from there instead of running again."""
    if done_file is None:
        return optimise(frames, op, cfg, steps=steps, checkpoint=checkpoint, resume=resume, **kw)
    settings = _settings(cfg, steps, op.margin_camera * op.upsample, kw["watch_inset"],
                         fingerprint(frames, op, kw.get("pattern_params")))
    if resume and done_file.exists():
        done = torch.load(done_file, map_location="cpu", weights_only=False)
        _refuse_other(done_file, done["settings"], settings, "finished member's result")
        return PINNRun(**done["run"])
    run = optimise(frames, op, cfg, steps=steps, checkpoint=checkpoint, resume=resume, **kw)
    _save_checkpoint(done_file, {"settings": settings, "run": vars(run)})
    return run


def reconstruct(dataset, *, device: str = "auto", pad_fine: int | None = None, margin_camera: int | None = None,
                checkpoint: Path | None = None, checkpoint_every: int = 50, resume: bool = False, callback=None,
                **params):
    """PINN reconstruction of every time point of ``dataset``; later frames warm-start from the
    previous one's weights (and refined patterns) with ``warm_start_steps`` steps. Returns ``(image, info)``.

    ``margin_camera`` (camera pixels; default :func:`auto_margin`) extends the object past the field, so that
    light blurred in from structure outside it is explained by structure there, not by artefacts
    inside (docs/quality.md, "The margin"); the image returned is the field.

    ``ensemble = N`` fits N networks (seeds ``seed`` to ``seed + N - 1``, each its own chain of warm
    starts through a time series) and returns the mean of their images; the losses and stop reasons
    are those of every run in order, refined patterns those of the first network. With a checkpoint,
    each member has its own (``<checkpoint>.m<j>``) and a finished member's result is kept beside it
    until the whole reconstruction ends, so ``resume`` continues with the member that was interrupted."""
    cfg = PINNConfig.from_params(params)
    check_int("checkpoint_every", checkpoint_every, 1)
    torch.set_num_threads(threads())  # cusim's setting (the process's cores unless --threads said otherwise)
    margin = auto_margin(dataset) if margin_camera is None else margin_camera
    op = dataset.operator(pad_fine=pad_fine, margin_camera=margin, device=resolve_device(device))
    inset = watch_inset(dataset, margin)
    pparams, blur = _refine_setup(dataset, op) if cfg.refine_patterns else (None, None)
    members = [cfg if j == 0 else dataclasses.replace(cfg, seed=cfg.seed + j) for j in range(cfg.ensemble)]
    checkpoint = None if checkpoint is None else Path(checkpoint)
    ckpts = [checkpoint if checkpoint is None or j == 0 else checkpoint.with_name(f"{checkpoint.name}.m{j}")
             for j in range(len(members))]
    done_files = [None if c is None or len(members) == 1 else c.with_name(f"{c.name}.done") for c in ckpts]
    images, losses, reasons = [], [], []
    states, chains = [None] * len(members), [pparams] * len(members)
    total = len(members) * (cfg.steps + (dataset.T - 1) * cfg.warm_start_steps)
    done = 0
    for t in range(dataset.T):
        steps = cfg.steps if t == 0 else cfg.warm_start_steps
        member_images = []
        for j, mcfg in enumerate(members):
            cb = None if callback is None else (lambda s, _n, l, m, d=done: callback(d + s, total, l, m))
            run = _member_run(dataset.frames(t), op, mcfg, steps, ckpts[j] if t == 0 else None,
                              done_files[j] if t == 0 else None, resume and t == 0, init_state=states[j],
                              callback=cb, checkpoint_every=checkpoint_every, pattern_params=chains[j], blur=blur,
                              watch_inset=inset)
            member_images.append(run.image)
            losses.append(run.loss)
            reasons.append(run.stop_reason)
            states[j], done = run.state, done + steps
            chains[j] = run.pattern_params or chains[j]
        images.append(np.mean(member_images, axis=0, dtype=np.float32))
    for f in done_files:
        if f is not None:
            f.unlink(missing_ok=True)
    image = np.stack(images) if dataset.is_series else images[0]
    info = {"loss": np.concatenate(losses), "stop_reason": "; ".join(reasons), "sigma": run.sigma, "tau": run.tau,
            "margin_camera": margin, "watch_inset": inset, "ensemble": len(members),
            "steps_run": int(sum(len(v) for v in losses))}
    if chains[0] is not None:
        info["pattern_params"] = params_record(chains[0])
    return image, info
