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
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_target
from .._threads import threads
from .._validate import check_frames_vary, check_int
from .._warnings import warn
from ..backend import resolve_device, to_numpy
from ..metrics import fit_scale_offset
from ..noise import camera_model, estimate_sigma
from ..patterns import SinusoidParams, params_record
from ..torch_ops import sim_forward
from .config import (FAST, GRAPH_BLOCK, INPUTS, KEEP_WINDOW, PRECISIONS, PRIORS, STOPS, PINNConfig,  # noqa: F401
                     member_inputs, with_ensemble, with_file_camera)  # (re-exported)
from ._pinn_background import Background
from .losses import DataLoss, prior
from .widefield import upsample_cubic



@dataclass
class PINNRun:
    """Result of one optimisation: the image, histories, why it stopped, and the weights.

    For an ensemble (``cfg.ensemble = N``) ``image`` is the mean of the members' images; ``loss`` and
    ``residual_sigma2`` are the members' histories one after another, ``steps`` their total, and
    ``stop_reason`` the members' reasons joined by "; " (``members`` has each member's own).
    """

    image: np.ndarray
    loss: np.ndarray
    residual_sigma2: np.ndarray  # residual mean square in units of the estimated sigma^2, per step (of the
    # frames' interior, ``watch_inset`` camera pixels in: the stopping rule's residual)
    steps: int
    stop_reason: str
    sigma: float
    state: dict = field(repr=False, default_factory=dict)
    pattern_params: SinusoidParams | None = None  # the refined patterns (``refine_patterns``; the first member's)
    tau: float | None = None  # the discrepancy threshold used (``cfg.tau``)
    members: list = field(repr=False, default_factory=list)  # per member: image, loss, residual_sigma2,
    # steps, stop_reason, input (member_inputs), pattern_params
    camera: dict | None = None  # the camera noise model used (``cfg.noise == "camera"``): CameraNoise.record()
    background: dict | None = None  # the background fitted (``cfg.background``): Background.record()


def network_input(frames: np.ndarray, upsample: int, kind: str) -> np.ndarray:
    """(C, H, W) float32 input: the raw frames (or their mean) interpolated to the fine grid, in [0, 1]."""
    stack = frames if kind == "upsampled" else frames.mean(axis=0, keepdims=True)
    up = np.stack([upsample_cubic(f, upsample) for f in stack])
    lo, hi = float(up.min()), float(up.max())
    return ((up - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


class _Stopper:
    """The stopping rule, as state that a checkpoint can carry (``state`` / ``load``). ``n_held``: the held-out
    pixels the validation residual is a mean over (its standard error, for ``cfg.keep_within``)."""

    def __init__(self, cfg: PINNConfig, n_held: int = 0):
        self.cfg = cfg
        self.best = float("inf")
        self.best_step = 0
        self.keep = 0  # validation: the step whose image is returned
        self.recent: list[float] = []  # validation, keep_jitter: the last KEEP_WINDOW + 1 held-out residuals
        # the mean of n squared unit normals has standard error sqrt(2 / n) (in sigma^2)
        self.tol = cfg.keep_within * (2.0 / n_held) ** 0.5 if n_held and cfg.stop == "validation" else 0.0

    def state(self) -> tuple:
        return self.best, self.best_step, self.keep, list(self.recent)

    def load(self, state) -> None:
        self.best, self.best_step, self.keep, recent = state
        self.recent = list(recent)

    def jitter(self) -> float:
        """The median step-to-step change of the held-out residual over the last ``KEEP_WINDOW`` steps."""
        r = self.recent
        return float(np.median(np.abs(np.diff(r)))) if len(r) > 1 else 0.0

    def __call__(self, step: int, loss: float, mse: float) -> str | None:
        """``discrepancy`` stops at the noise level, or where the residual stalls above it: model
        mismatch (8-bit data, pattern errors) can put its floor above ``tau``, and from there on the
        network only fits noise. ``plateau`` stops when the loss stalls. ``validation`` keeps the latest
        step whose held-out residual is within a tolerance of the least so far (the larger of keep_within's
        ``tol`` and keep_jitter times the residual's median step-to-step change over the last KEEP_WINDOW steps;
        the least's own step where both are 0), and stops ``patience`` steps after the least."""
        cfg = self.cfg
        if cfg.stop == "validation":  # mse: the held-out pixels' residual; the image returned is ``keep``'s
            if cfg.keep_jitter:
                self.recent = [*self.recent[-KEEP_WINDOW:], mse]
            if mse < self.best:
                self.best, self.best_step = mse, step
                self.keep = step
                return None
            tol = max(self.tol, cfg.keep_jitter * self.jitter())  # jitter() is 0 where keep_jitter is 0 (no window)
            if tol and mse <= self.best + tol:
                self.keep = step
            if step - self.best_step >= cfg.patience:
                kept = "" if self.keep == self.best_step else f"; kept step {self.keep + 1}, {self._within()} of it"
                return (f"validation: held-out residual least at step {self.best_step + 1} ({self.best:.3f} sigma^2), "
                        f"not lower over {cfg.patience} steps{kept}")
            return None
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

    def kept(self) -> str:
        """Which image a validation run that no rule ended returns."""
        if self.keep == self.best_step:
            return f"the image of the least held-out residual, step {self.best_step + 1}"
        return (f"the image of step {self.keep + 1}, {self._within()} of the least held-out residual "
                f"(step {self.best_step + 1})")

    def _within(self) -> str:
        cfg, parts = self.cfg, []
        if cfg.keep_within:
            parts.append(f"{cfg.keep_within:g} standard errors")
        if cfg.keep_jitter:
            parts.append(f"{cfg.keep_jitter:g} times its median step-to-step change")
        return "within " + " or ".join(parts)


def holdout_mask(shape: tuple, cfg: PINNConfig) -> np.ndarray:
    """The camera pixels (a boolean mask of the frames' ``shape``) that ``stop="validation"`` holds out of the
    fit: ``cfg.holdout`` of them, drawn from ``cfg.seed``."""
    gen = torch.Generator().manual_seed(cfg.seed)
    return (torch.rand(tuple(shape), generator=gen) < cfg.holdout).numpy()


def _torch_device(op) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if op.device == "cuda" else torch.device("cpu")


def _save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_target(path) as tmp:
        torch.save(payload, tmp)


class PINNStep:
    """The optimisation state of one acquisition and its step, split where the stopping rule looks.

    ``evaluate()`` runs the U-Net and the physics and returns the image, the loss and the residual (in
    sigma^2) as device tensors (no host synchronisation); ``update()`` back-propagates that loss and steps
    Adam, the schedule and the pattern model. :meth:`run_block` takes whole steps and reads their losses
    back once; :func:`optimise` drives it; the benchmarks time exactly this.

    ``cfg.ensemble = N`` steps N independent networks (seeds ``seed`` .. ``seed + N - 1``) together as
    one batched network (:class:`cusim.models.UNet` with ``members=N``): images (N, H, W), one loss and
    one residual per member. Member j computes what a single run of seed ``seed + j`` (and input
    ``member_inputs(cfg)[j]``) computes, except that a validation stop holds out the same pixels, drawn from
    ``seed``, for every member.

    On CUDA with ``cfg.graph`` (the default) the whole step (U-Net forward and backward, the physics
    through the CuPy kernels and cuFFT on torch's stream, the loss, Adam with its state and learning rate
    on the device, the record of the step's losses and image) is captured once as a CUDA graph and
    replayed; pattern refinement falls back to the eager step (one note says so), and so does a capture
    that fails. On CUDA the learning-rate schedule is a device tensor (StepLR's values) in both modes, so
    the eager and the captured step compute the same thing.

    ``cfg.precision == "bfloat16"`` runs the U-Net under autocast (its convolutions in bfloat16; its
    output, the physics, the loss, the weights and Adam in float32); ``cfg.channels_last`` keeps the
    U-Net's tensors channels-last. On CUDA the fast mode also turns on cuDNN autotuning for the
    duration of the run (:meth:`close` restores it).
    """

    def __init__(self, frames: np.ndarray, op, cfg: PINNConfig, *, init_state: dict | None = None,
                 pattern_params=None, blur=None, physics=None, watch_inset: int | None = None):
        t0 = time.perf_counter()
        self.device = dev = _torch_device(op)
        cfg = with_ensemble(cfg, dev.type)  # an ensemble size left to the device
        if cfg.input == "mixed" and cfg.ensemble == 1:
            warn("PINN: input 'mixed' alternates the inputs of an ensemble's networks; one network takes the "
                 "upsampled frames, as input 'upsampled' does (ask for an ensemble of 2 or more)", stacklevel=3)
        self.cfg, self.op = cfg, op
        self.members = n = cfg.ensemble
        self.sigma, _ = estimate_sigma(frames, op)
        m = getattr(op, "margin_camera", 0)  # camera pixels past the field (peers' physics objects have none)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        # An operator with a margin has its object grid extend past the frames' field: the network's
        # input is mirrored out to it, and the image returned is the field (``field``).
        e = self.margin_px = m * op.upsample
        self.field = op.field if m else (slice(None), slice(None))
        self.inputs = kinds = member_inputs(cfg)
        inputs = {}
        for kind in dict.fromkeys(kinds):
            inp = network_input(frames, op.upsample, kind)
            inputs[kind] = np.pad(inp, ((0, 0), (e, e), (e, e)), mode="reflect") if e else inp
        channels = [inputs[kind].shape[0] for kind in kinds]
        inp = inputs[kinds[0]]  # every member's, repeated by the network
        if len(inputs) > 1:  # members of different inputs: each its own, zero-padded to the widest (models.UNet)
            c = max(channels)
            inp = np.concatenate([np.pad(inputs[kind], ((0, c - inputs[kind].shape[0]), (0, 0), (0, 0)))
                                  for kind in kinds])
        self.inp = torch.from_numpy(inp)[None].to(dev).contiguous(memory_format=self.memory_format)
        H, W = inp.shape[-2:]
        least = 2 if cfg.norm == "batch" else 1  # batch norm needs two values at the deepest level, a pool one
        if min(H >> cfg.depth, W >> cfg.depth) < 1 or (H >> cfg.depth) * (W >> cfg.depth) < least:
            deepest = max(d for d in range(cfg.depth + 1) if min(H >> d, W >> d) >= 1 and (H >> d) * (W >> d) >= least)
            need = "where batch norm needs at least two" if least == 2 else "where the network needs at least one"
            raise ValueError(f"depth: {cfg.depth} halvings of the {H} x {W} object grid leave "
                             f"{H >> cfg.depth} x {W >> cfg.depth} pixels at the U-Net's deepest level, {need}; "
                             f"expected depth <= {deepest} for this field")
        y = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).to(dev)
        self.net = _network(channels, cfg).to(dev)
        if init_state:
            self.net.load_state_dict(init_state)
        self.net = self.net.to(memory_format=self.memory_format)
        self.bg = None if cfg.background == "none" else Background(n, frames.shape[0], op.camera_shape,
                                                                   cfg.background, device=dev)
        trained = [*self.net.parameters(), *(() if self.bg is None else self.bg.parameters())]
        cuda = dev.type == "cuda"
        # On CUDA the learning rate is a device tensor set from the device step count (StepLR's values),
        # so that a captured step needs no host; Adam is then the fused, capturable kernel.
        self._t = torch.zeros((), dtype=torch.int64, device=dev)  # Adam updates taken, on the device
        if cuda:
            self._lr = torch.full((), cfg.lr, dtype=torch.float32, device=dev)
            self.opt = torch.optim.Adam(trained, lr=self._lr, capturable=True, fused=True)
            self.sched = None
        else:
            self.opt = torch.optim.Adam(trained, lr=cfg.lr)
            self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=cfg.lr_every, gamma=cfg.lr_decay)
        # The stopping rule watches the frames' interior, ``watch_inset`` camera pixels in (default: the
        # margin). With a margin the object there can also fit the noise of the frames' edge band (its
        # light reaches that far in); without one, light from outside the field puts a floor under the
        # edge band's residual. The interior is what only the field's own object explains.
        h, w = op.camera_shape
        i = self.watch_inset = watched_inset(m if watch_inset is None else watch_inset, (h, w))
        watch = (slice(i, h - i), slice(i, w - i)) if i else None
        self.camera = camera_model(frames, op, cfg)
        holdout = None
        if cfg.stop == "validation":  # the same pixels for every member
            holdout = torch.from_numpy(holdout_mask(tuple(y.shape), cfg)).to(dev)
        self.data_loss = DataLoss(cfg.loss, y, self.sigma, cfg.gain, watch=watch, camera=self.camera,
                                  holdout=holdout)
        if holdout is not None and self.data_loss.n_held == 0:
            raise ValueError(f"holdout: {cfg.holdout:g} of these frames' {holdout.numel()} camera pixels holds none of "
                             f"the watched ones out, and the validation stop watches those; expected a larger "
                             f"holdout (the default is {PINNConfig.holdout}) or another stop")
        if physics is None:
            self.physics = lambda x: sim_forward(x, op)  # (N, H, W) -> (N, K, h, w): the operator's batch axis
        else:  # a peer's physics maps one image (H, W) to its frames
            self.physics = lambda x: torch.stack([physics(xi) for xi in x])
        self.pmodels = self.popt = None
        if cfg.refine_patterns:
            self._refine_setup(pattern_params, blur, e)
        self._cudnn = None
        if cuda and cfg.fast:
            self._cudnn = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True
        self.step_index = 0  # steps taken (Adam updates)
        self._loss = None
        # every step writes its losses and residuals (N, 2) and its images (N, H, W) at ``_pos`` of a block
        self.block = cfg.sync_every or (GRAPH_BLOCK if cuda else 1)
        self._pos = torch.zeros((), dtype=torch.int64, device=dev)
        self._hist = torch.zeros((self.block, n, 2), dtype=torch.float32, device=dev)
        self._images = torch.zeros((self.block, n, *op.input_shape), dtype=torch.float32, device=dev)
        self._pending = 0
        self.graph = None
        self.setup_s, self.capture_s = time.perf_counter() - t0, 0.0
        if cuda and cfg.graph:
            if self.pmodels is not None:
                warn("PINN: the CUDA graph is off for pattern refinement (its optimiser starts at a step the "
                     "graph cannot branch on); running the eager step")
            else:
                self._capture()

    def _refine_setup(self, pattern_params, blur, e: int) -> None:
        from ._pinn_patterns import PatternModel  # noqa: PLC0415

        if pattern_params is None or blur is None:
            raise ValueError("refine_patterns: needs sinusoidal pattern parameters and the blur operator")
        starts = pattern_params if isinstance(pattern_params, (list, tuple)) else [pattern_params] * self.members
        # field -> object grid; one pattern model per member
        self.pmodels = torch.nn.ModuleList([PatternModel(p.moved(-e, -e), self.op.input_shape, self.device)
                                            for p in starts])
        self.popt = torch.optim.Adam(self.pmodels.parameters(), lr=self.cfg.pattern_lr)
        n, K = self.members, self.pmodels[0].k0.shape[0]

        def physics(x):  # (N, H, W) -> (N, K, h, w): blur(I_jk . x_j) for every member j and frame k
            lit = torch.stack([pm() for pm in self.pmodels]) * x[:, None]
            return sim_forward(lit.reshape(n * K, *x.shape[-2:]), blur)[:, 0].reshape(n, K, *blur.camera_shape)

        self.physics = physics

    def image(self) -> torch.Tensor:
        """The U-Nets' current outputs (N, H, W) on the object grid ``op.input_shape`` (the field and any
        margin; ``field`` slices the field out), float32 (with the graph when gradients are enabled)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bfloat16"):
            x = self.net(self.inp)
        return x[0].float().contiguous()

    def evaluate(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward pass of a step: images (N, H, W), and each member's loss and residual (N,), detached."""
        self.opt.zero_grad(set_to_none=True)
        if self.popt is not None:
            self.popt.zero_grad(set_to_none=True)
        x = self.image()
        pred = self.physics(x)
        loss, mse = self.data_loss(pred if self.bg is None else self.bg(pred))
        if self.cfg.prior != "none" and self.cfg.prior_weight > 0:
            loss = loss + self.cfg.prior_weight * prior(x, self.cfg.prior)
        self._loss = loss.sum()  # the members are independent: the gradient of each is its own loss's
        return x, loss.detach(), mse

    def update(self) -> None:
        """Back-propagate the last :meth:`evaluate`'s loss and take the optimiser steps."""
        self._loss.backward()
        self._loss = None
        self.opt.step()
        self._t += 1
        if self.sched is not None:
            self.sched.step()
        else:  # StepLR's learning rate for the next update, from the device step count
            cfg = self.cfg
            self._lr.copy_(cfg.lr * cfg.lr_decay ** torch.div(self._t, cfg.lr_every, rounding_mode="floor"))
        if self.pmodels is not None and self.step_index >= self.cfg.refine_start:
            self.popt.step()
        self.step_index += 1

    def _step(self) -> None:
        """One whole step on the static buffers: evaluate, record at ``_pos``, update (what the graph holds)."""
        x, loss, mse = self.evaluate()
        at = self._pos.view(1)
        self._hist.index_copy_(0, at, torch.stack([loss, mse.to(loss.dtype)], dim=-1)[None])
        self._images.index_copy_(0, at, x.detach()[None])
        self._pos += 1
        self.update()

    def _one(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            self.step_index += 1
        else:
            self._step()

    def run_block(self, n: int) -> tuple[np.ndarray, torch.Tensor]:
        """``n <= block`` whole steps, then one read-back: ``(values, images)``, values (n, N, 2) float64 on
        the host (each step's loss and residual per member, before its update), images (n, N, H, W) on the
        device (each step's, before its update; a view of a buffer the next block overwrites)."""
        if not 1 <= n <= self.block:
            raise ValueError(f"run_block: expected 1 to {self.block} steps, got {n}")
        self._pos.zero_()
        for _ in range(n):
            self._one()
        return self._hist[:n].cpu().numpy().astype(float), self._images[:n]

    def __call__(self) -> float | None:
        """One whole step (the benchmarks' unit of work); the losses are read back to the host (and their
        sum over the members returned) on every ``block``-th step only, as in :func:`optimise`."""
        if self._pending == 0:
            self._pos.zero_()
        self._one()
        self._pending += 1
        if self._pending < self.block:
            return None
        self._pending = 0
        return float(self._hist[self.block - 1, :, 0].sum())

    # -- the captured step ------------------------------------------------------------------------
    def _tensors(self) -> list[torch.Tensor]:
        """Every tensor a step changes in place: weights, batch-norm statistics, Adam's state, the counters."""
        out = [*self.net.parameters(), *self.net.buffers(), self._t, self._lr,
               *(() if self.bg is None else self.bg.parameters())]
        for state in self.opt.state.values():
            out += [v for v in state.values() if torch.is_tensor(v)]
        return out

    def _capture(self) -> None:
        """Warm up on a side stream (cuDNN choices, cuFFT plans, Adam's state), put every tensor back as it
        was, then capture one :meth:`_step` as a CUDA graph. A failure leaves the eager step, with a note."""
        t0 = time.perf_counter()
        before = {id(t): t.detach().clone() for t in self._tensors()}
        index = self.step_index
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        try:
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._pos.zero_()
                    self._step()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self._restore(before, index)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._step()
            self.graph = graph
        except Exception as exc:  # noqa: BLE001  (any failure: the eager step computes the same)
            torch.cuda.synchronize(self.device)
            self._restore(before, index)
            warn(f"PINN: capturing the step as a CUDA graph failed ({type(exc).__name__}: "
                 f"{str(exc).splitlines()[0] if str(exc) else ''}); running the eager step")
        self._pos.zero_()
        self.capture_s = time.perf_counter() - t0

    def _restore(self, before: dict, index: int) -> None:
        """Every tensor as it was before the warm-up (``before``: id -> copy); Adam's state, which the warm-up
        made, from zero (a fresh Adam's); no gradients."""
        self.step_index = index
        with torch.no_grad():
            for t in self._tensors():
                if id(t) in before:
                    t.copy_(before[id(t)])
                else:
                    t.zero_()
        self.opt.zero_grad(set_to_none=True)

    def close(self) -> None:
        if self._cudnn is not None:
            torch.backends.cudnn.benchmark, self._cudnn = self._cudnn, None
        self.graph = None

    def state(self) -> dict:
        sched = self.sched.state_dict() if self.sched is not None else {"step": int(self._t)}
        return {"model": self.net.state_dict(), "opt": self.opt.state_dict(), "sched": sched,
                **({} if self.bg is None else {"background": self.bg.state_dict()}),
                **({} if self.pmodels is None else {"patterns": self.pmodels.state_dict(),
                                                    "popt": self.popt.state_dict()})}

    def load(self, ck: dict) -> None:
        """Continue from :meth:`state` (copied into the tensors the step, and its graph, use)."""
        with torch.no_grad():
            for t, v in zip(self.net.state_dict().values(), ck["model"].values()):
                t.copy_(v)
            if self.bg is not None:
                self.bg.theta.copy_(ck["background"]["theta"])
            self._t.fill_(int(ck["sched"].get("step", ck["sched"].get("last_epoch", 0))))
        cfg, t = self.cfg, int(self._t)
        lr = cfg.lr * cfg.lr_decay ** (t // cfg.lr_every)  # StepLR's learning rate after t updates
        same_kind = (self.sched is not None) == ("last_epoch" in ck["sched"])  # CPU and CUDA schedules differ
        if self.graph is not None:  # Adam's state tensors exist (the warm-up made them): copy into them
            mine = self.opt.state_dict()["state"]
            with torch.no_grad():
                for key, st in ck["opt"]["state"].items():
                    for name, v in st.items():
                        mine[key][name].copy_(v)
        elif same_kind:
            self.opt.load_state_dict(ck["opt"])
        else:  # another device's checkpoint: its Adam moments and step counts, this device's optimiser settings
            self.opt.load_state_dict({"state": ck["opt"]["state"],
                                      "param_groups": [{**g, "lr": lr} for g in self.opt.state_dict()["param_groups"]]})
        if self.sched is None:  # the device learning rate that the step decays (load_state_dict put a copy in)
            for g in self.opt.param_groups:
                g["lr"] = self._lr
            self._lr.fill_(lr)
        elif same_kind:
            self.sched.load_state_dict(ck["sched"])
        else:  # a CUDA checkpoint holds the step count only: StepLR at that step
            self.sched.last_epoch = t
            self.sched._last_lr = [g["lr"] for g in self.opt.param_groups]
        if self.pmodels is not None:
            self.pmodels.load_state_dict(ck["patterns"])
            self.popt.load_state_dict(ck["popt"])


def _network(channels: list[int], cfg: PINNConfig):
    """The U-Net of ``cfg``: member j, of ``channels[j]`` input channels, initialised from seed ``cfg.seed + j``,
    as a single run of that seed and input. The weights are drawn on the CPU from torch's default generator, seeded
    inside a fork of its state: the caller's random state (torch's, CPU and CUDA) is as it was."""
    from ..models import UNet  # noqa: PLC0415

    nets = []
    with torch.random.fork_rng(devices=[]):  # UNet.stack draws too (a stacked network's initial weights)
        for j in range(cfg.ensemble):
            torch.default_generator.manual_seed(cfg.seed + j)
            nets.append(UNet(channels[j], width=cfg.width, depth=cfg.depth, up=cfg.up, norm=cfg.norm,
                             float32_levels=cfg.float32_levels))
        return nets[0] if len(nets) == 1 else UNet.stack(nets)


def optimise(frames: np.ndarray, op, cfg: PINNConfig, *, steps: int | None = None, init_state: dict | None = None,
             checkpoint: Path | None = None, checkpoint_every: int = 100, resume: bool = False,
             callback=None, pattern_params=None, blur=None, watch_inset: int | None = None,
             keep_checkpoint: bool = False) -> PINNRun:
    """Fit the U-Net (``cfg.ensemble`` of them, stepped together) to ``frames`` (K, h, w) through ``op``;
    ``steps`` overrides ``cfg.steps``.

    The stopping rule's residual is that of the frames' interior, ``watch_inset`` camera pixels in from
    the edge (default: the operator's margin; :func:`reconstruct` passes the PSF's reach for a field
    that may receive light from outside it).

    With ``cfg.refine_patterns`` the frames are modelled as ``blur(I_k . x)`` with learnable sinusoidal
    patterns starting from ``pattern_params`` (one SinusoidParams, or one per member); ``blur`` is the
    one-frame operator of ones (PSF and binning only, same grid and pad as ``op``).

    ``init_state`` warm-starts the weights. With ``checkpoint`` the full optimiser state is written
    there every ``checkpoint_every`` steps (its folder is checked before the first step); ``resume`` continues
    from it (same settings and data required, :func:`fingerprint`; else one ValueError naming what differs) and
    ends with the result of an uninterrupted run. A finished run removes it, or with ``keep_checkpoint`` writes
    its final state there (for a caller with more work after the fit, which removes it when that is done; a
    resume from it returns the finished run without stepping). ``callback(step, total, loss, mse)`` reports
    progress (for an ensemble, the means over the members still running).

    The losses and residuals of every step are kept on the device and read back once per block of
    ``PINNStep.block`` steps (and at checkpoints and the last step), together with the block's images;
    each member's stopping rule then looks at each of those steps in order, and where it fires that
    member's result is that step's image and histories, as with a read-back every step. A member that
    stopped is still stepped with the others (its result is kept); the run ends when every member has
    stopped, the steps are spent or, with ``cfg.time_limit``, the steps have run that many seconds (checked
    after each block; the members still running then return what their rule holds). The returned weights
    (``state``, the warm start of a time series) are each member's at the end of the block in which its rule
    fired, where a run of its seed alone ends (so with ``sync_every`` blocks, some steps past the step it
    returns the image of), or after the last block.
    """
    steps = cfg.steps if steps is None else check_int("steps", steps, 1)
    if checkpoint is not None:
        check_int("checkpoint_every", checkpoint_every, 1)
        _check_checkpoint_target(checkpoint)
    check_frames_vary(frames)  # a constant frame has no noise level and nothing to fit
    data = None if checkpoint is None else fingerprint(frames, op, pattern_params)
    fit = PINNStep(frames, op, cfg, init_state=init_state, pattern_params=pattern_params, blur=blur,
                   watch_inset=watch_inset)
    try:
        return _optimise(fit, steps, checkpoint, checkpoint_every, resume, callback, data, keep_checkpoint)
    finally:
        fit.close()


def fingerprint(frames, op, pattern_params=None) -> dict:
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
        starts = pattern_params if isinstance(pattern_params, (list, tuple)) else [pattern_params]
        text = json.dumps([params_record(p) for p in starts], sort_keys=True).encode()
        out["pattern parameters"] = hashlib.sha256(text).hexdigest()[:16]
    return out


# settings that do not change the fit a checkpoint holds (what reconstruct does with its image afterwards, the later
# time points' steps, and the CUDA graph, whose steps equal the eager ones): a resume may change them
AFTER_FIT = ("blend", "blend_weight", "blend_sigma", "warm_start_steps", "graph")


def _settings(cfg: PINNConfig, steps: int, margin_px: int, inset: int, data: dict | None = None) -> dict:
    """What a checkpoint must have been made with to be resumed: the settings (except :data:`AFTER_FIT`), and
    the :func:`fingerprint` of the data (``data``)."""
    fit = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in AFTER_FIT}
    return {**fit, "steps": steps, "margin_px": margin_px, "watch_inset": inset, "data": data}


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


def _cap_reason(cfg, steps: int, history) -> str:
    """Why a run that no rule stopped ended; under the discrepancy rule, how far its residual still was from
    ``tau``: such a run had not fitted all the data (a weak harmonic band of nonlinear SIM needs ~2.5 x the
    default steps on the resolution benchmark, docs/quality.md), and more ``steps`` fit further."""
    reason = f"max steps ({steps})"
    if cfg.stop == "discrepancy" and history and history[-1][1] > cfg.tau:
        reason += f", residual {history[-1][1]:.3f} sigma^2 still above tau {cfg.tau:g} (more steps fit further)"
    return reason


def _check_checkpoint_target(checkpoint) -> None:
    """Refuse, before any step, a checkpoint that could not be written (its first save would end the run after
    ``checkpoint_every`` steps)."""
    from ..io import check_writable  # noqa: PLC0415

    try:
        check_writable(checkpoint)
    except ValueError as e:
        raise ValueError(f"checkpoint: {e}") from None


def _optimise(fit: PINNStep, steps: int, checkpoint, checkpoint_every: int, resume: bool, callback,
              data: dict | None = None, keep_checkpoint: bool = False) -> PINNRun:
    cfg, n = fit.cfg, fit.members
    stoppers = [_Stopper(cfg, fit.data_loss.n_held) for _ in range(n)]
    history = [[] for _ in range(n)]  # per member: (loss, residual) of every step its rule looked at
    finished = [None] * n  # per member, once its rule fired: (image (H, W) on the host, reason)
    best_images = [None] * n  # stop "validation": per member, the image of its least held-out residual so far
    # per member of an ensemble, once its rule fired: its weights (and refined patterns) at the end of that block,
    # where a run of its seed alone would have ended: the warm start of its next time point, whatever the others do
    frozen = [None] * n
    validation = cfg.stop == "validation"
    step = 0
    settings = _settings(cfg, steps, fit.margin_px, fit.watch_inset, data)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        ck = torch.load(checkpoint, map_location=fit.device, weights_only=False)
        _refuse_other(checkpoint, {k: v for k, v in ck["settings"].items() if k not in AFTER_FIT}, settings)
        fit.load(ck)
        history, finished, step = ck["history"], ck["finished"], ck["step"]
        best_images = ck.get("best_images", best_images)
        frozen = ck.get("frozen", frozen)
        fit.step_index = step
        for st, state in zip(stoppers, ck["stoppers"]):  # settings equal: keep_within and keep_jitter too
            st.load(state)
        torch.set_rng_state(ck["rng"])

    def save():  # the state as it is when called
        _save_checkpoint(Path(checkpoint), {
            "settings": settings, **fit.state(), "history": history, "finished": finished, "step": step,
            "stoppers": [st.state() for st in stoppers], "rng": torch.get_rng_state(),
            **({"best_images": best_images} if validation else {}), **({"frozen": frozen} if n > 1 else {})})

    began, timed_out = time.perf_counter(), False
    while step < steps and any(f is None for f in finished) and not timed_out:
        size = min(fit.block, steps - step)
        if checkpoint is not None:
            size = min(size, checkpoint_every - step % checkpoint_every)
        values, images = fit.run_block(size)  # the one host synchronisation of the block
        running = [j for j in range(n) if finished[j] is None]
        for i in range(size):
            for j in [j for j in running if finished[j] is None]:
                lv, mv = values[i, j]
                history[j].append((float(lv), float(mv)))
                reason = stoppers[j](step + i, float(lv), float(mv))
                if validation and stoppers[j].keep == step + i:
                    best_images[j] = images[i, j].cpu().numpy().copy()  # the buffer is reused
                if reason:
                    finished[j] = (best_images[j] if validation else images[i, j].cpu().numpy().copy(), reason)
            if callback is not None and running:
                callback(step + i + 1, steps, float(values[i, running, 0].mean()), float(values[i, running, 1].mean()))
            running = [j for j in running if finished[j] is None]
        step += size
        if n > 1:
            for j in range(n):
                if finished[j] is not None and frozen[j] is None:
                    frozen[j] = _member_state(fit, j)
        timed_out = cfg.time_limit is not None and time.perf_counter() - began >= cfg.time_limit
        if checkpoint is not None and step % checkpoint_every == 0 and step < steps and running:
            save()
    if any(f is None for f in finished):
        with torch.no_grad():  # the images after the last update
            last = fit.image().cpu().numpy()
        limited = timed_out and step < steps  # the time limit ended it before the step budget
        cap = f"time limit ({cfg.time_limit:g} s) at step {step}" if limited else f"max steps ({steps})"
        if validation:  # the least held-out residual's image, not the last
            finished = [f or (best_images[j], f"{cap}; {stoppers[j].kept()}") for j, f in enumerate(finished)]
        finished = [f or (last[j], cap if limited else _cap_reason(cfg, steps, history[j]))
                    for j, f in enumerate(finished)]
    if checkpoint is not None and keep_checkpoint:  # every member finished: a resume returns this run
        save()
    elif checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    e = fit.margin_px
    members = []
    last = [_member_state(fit, j) if f is None else f for j, f in enumerate(frozen)] if n > 1 else None
    for j, (image, reason) in enumerate(finished):
        h = np.asarray(history[j], dtype=float).reshape(-1, 2)
        params = None if fit.pmodels is None else (last[j][1] if last else fit.pmodels[j].params())
        members.append({"image": np.ascontiguousarray(image[fit.field], dtype=np.float32), "loss": h[:, 0],
                        "residual_sigma2": h[:, 1], "steps": len(h), "stop_reason": reason, "input": fit.inputs[j],
                        "pattern_params": None if params is None else params.moved(e, e)})
    weights = {k: v.detach().cpu().clone() for k, v in fit.net.state_dict().items()}
    if last:  # each member's slice of the stacked tensors as it was when its rule fired (the step counts: shared)
        weights = {k: v if v.ndim == 0 else torch.cat([m[0][k] for m in last]) for k, v in weights.items()}
    image = np.mean([m["image"] for m in members], axis=0, dtype=np.float32)
    return PINNRun(image, np.concatenate([m["loss"] for m in members]),
                   np.concatenate([m["residual_sigma2"] for m in members]), sum(m["steps"] for m in members),
                   "; ".join(m["stop_reason"] for m in members), fit.sigma, weights,
                   members[0]["pattern_params"], tau=fit.cfg.tau, members=members,
                   camera=None if fit.camera is None else fit.camera.record(),
                   background=None if fit.bg is None else fit.bg.record())


def _member_state(fit: PINNStep, j: int) -> tuple[dict, object]:
    """Member ``j``'s part of ``fit``'s stacked network (its slice, along the first axis, of every tensor but the
    shared step counts; on the host) and its refined pattern parameters (None without refinement)."""
    n = fit.members
    part = {k: v.detach().chunk(n)[j].cpu().clone() for k, v in fit.net.state_dict().items() if v.ndim}
    return part, None if fit.pmodels is None else fit.pmodels[j].params()


def _refine_setup(dataset, op):
    """Starting parameters (stored, or fitted to stored pattern arrays) and the blur operator."""
    params = dataset.pattern_params
    if getattr(params, "family", None) == "hexagonal":
        raise ValueError("refine_patterns: learns sinusoidal patterns (one carrier per frame); hexagonal SIM's "
                         "patterns are used as estimated (run without refine_patterns, --refine-patterns)")
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


def watched_inset(inset: int, camera_shape: tuple[int, int]) -> int:
    """The inset the stopping rule watches on frames of ``camera_shape``: ``inset``, or 0 (the whole frames)
    where the interior would be less than half of each side."""
    return int(inset) if min(camera_shape) > 4 * int(inset) else 0


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


def reconstruct(dataset, *, device: str = "auto", pad_fine: int | None = None, margin_camera: int | None = None,
                checkpoint: Path | None = None, checkpoint_every: int = 50, resume: bool = False, callback=None,
                keep_checkpoint: bool = False, **params):
    """PINN reconstruction of every time point of ``dataset``; later frames warm-start from the
    previous one's weights (and refined patterns) with ``warm_start_steps`` steps. Returns ``(image, info)``.

    ``margin_camera`` (camera pixels; default :func:`auto_margin`) extends the object past the field, so that
    light blurred in from structure outside it is explained by structure there, not by artefacts
    inside (docs/quality.md, "The margin"); the image returned is the field.

    ``ensemble = N`` fits N networks (seeds ``seed`` to ``seed + N - 1``) stepped together as one batched
    network, each its own chain of warm starts through a time series, and returns the mean of their
    images; the losses and stop reasons are those of every member in order, refined patterns those of
    the first. The checkpoint (of the first time point) holds every member; it is written every
    ``checkpoint_every`` steps and, once that fit has finished, kept until the reconstruction returns (a resume
    then skips the fit), so an interrupt during later time points or the blend keeps the fitted networks;
    with ``keep_checkpoint`` it is left for the caller to remove once it has stored the result (``cusim run``).

    With ``blend="iterative"`` (the default) the image is :func:`blend_images` of the network's and FISTA + TV's;
    ``info["blend_parts"]`` holds those two images (``"pinn"``, ``"iterative"``; not stored with a result).
    ``info["network_s"]`` and ``info["iterative_s"]`` split the wall clock: the networks (set-up, capture, steps)
    and FISTA + TV with the blend."""
    cfg, from_file = with_file_camera(PINNConfig.from_params(params), dataset.camera)
    check_int("checkpoint_every", checkpoint_every, 1)
    torch.set_num_threads(threads())  # cusim's setting (the process's cores unless --threads said otherwise)
    margin = auto_margin(dataset) if margin_camera is None else margin_camera
    op = dataset.operator(pad_fine=pad_fine, margin_camera=margin, device=resolve_device(device))
    inset = watched_inset(watch_inset(dataset, margin), op.camera_shape)
    pparams, blur = _refine_setup(dataset, op) if cfg.refine_patterns else (None, None)
    checkpoint = None if checkpoint is None else Path(checkpoint)
    images, losses, reasons, state = [], [], [], None
    total = cfg.steps + (dataset.T - 1) * cfg.warm_start_steps
    done, t0 = 0, time.perf_counter()
    for t in range(dataset.T):
        steps = cfg.steps if t == 0 else cfg.warm_start_steps
        cb = None if callback is None else (lambda s, _n, l, m, d=done: callback(d + s, total, l, m))
        # the first time point's checkpoint outlives its fit (keep_checkpoint) until the whole reconstruction,
        # later time points and the blend included, is done: an interrupt there keeps the fitted network
        run = optimise(dataset.frames(t), op, cfg, steps=steps, checkpoint=checkpoint if t == 0 else None,
                       resume=resume and t == 0, init_state=state, callback=cb, checkpoint_every=checkpoint_every,
                       pattern_params=pparams, blur=blur, watch_inset=inset, keep_checkpoint=True)
        if not np.isfinite(run.image).all():
            if checkpoint is not None:  # a diverged fit is nothing to resume
                checkpoint.unlink(missing_ok=True)
            where = f" at time point {t}" if dataset.is_series else ""
            raise ValueError(f"lr: the network's fit diverged{where} (its image is not finite, NaN or inf) at lr "
                             f"{cfg.lr:g}; expected a smaller lr (the default is {PINNConfig.lr:g})")
        images.append(run.image)
        losses.append(run.loss)
        reasons.append(run.stop_reason)
        state, done = run.state, done + steps
        if cfg.refine_patterns:  # each member's chain goes on from its own refined patterns
            pparams = [m["pattern_params"] for m in run.members]
    info = {"loss": np.concatenate(losses), "stop_reason": "; ".join(reasons), "sigma": run.sigma, "tau": run.tau,
            "margin_camera": margin, "watch_inset": inset, "ensemble": len(run.members),
            "final_loss": float(np.mean([m["loss"][-1] for m in run.members])),  # the last time point's members
            "steps_run": int(sum(len(v) for v in losses)),
            "network_s": time.perf_counter() - t0}  # the networks' set-up, capture and steps, images on the host
    if cfg.input == "mixed":  # which network saw which input
        info["member_inputs"] = ",".join(m["input"] for m in run.members)
    if cfg.blend != "none":
        t0 = time.perf_counter()
        images, blend_info = _blend_iterative(dataset, op, images, cfg)
        info.update(blend_info, iterative_s=time.perf_counter() - t0)  # FISTA + TV's run(s) and the blend
    image = np.stack(images) if dataset.is_series else images[0]
    if run.pattern_params is not None:
        info["pattern_params"] = params_record(run.pattern_params)
    if run.camera is not None:
        info["camera"] = {**run.camera, **({"from_file": from_file} if from_file else {})}
    if run.background is not None:
        info["background"] = run.background
    if checkpoint is not None and not keep_checkpoint:
        checkpoint.unlink(missing_ok=True)
    return image, info


def map_onto(image: np.ndarray, reference: np.ndarray, border: int = 10) -> np.ndarray:
    """``image`` (float64) mapped onto ``reference`` by the least-squares scale and offset over the interior
    (``border`` pixels in, less on a small field: at most an eighth of its shorter side)."""
    b = min(border, min(image.shape[-2:]) // 8)
    inner = (slice(b, image.shape[-2] - b), slice(b, image.shape[-1] - b))
    p = image.astype(np.float64)
    scale, offset = fit_scale_offset(p[inner], reference[inner])
    return scale * p + offset


def blend_images(pinn: np.ndarray, other: np.ndarray, weight: float, border: int = 10, *,
                 sigma: float | None = None) -> np.ndarray:
    """``P' + (1 - weight) L(other - P')``, where ``P'`` is ``pinn`` mapped onto ``other`` by the least-squares
    scale and offset over the interior (``border`` pixels in, less on a small field): the PINN's image has the
    scale of its closed-form gain, another method's its own, and the blend must not depend on either.

    Without ``sigma``, ``L`` is the identity and the blend is ``weight * P' + (1 - weight) * other``. With it,
    ``L`` is a Gaussian low-pass of that width in pixels (edges reflected; it passes half of a frequency of
    ``0.19 / sigma`` cycles per pixel): at the coarse scales the blend is that average, at the fine ones the
    PINN's image alone."""
    o = other.astype(np.float64)
    mapped = map_onto(pinn, o, border)
    if not sigma:
        return (weight * mapped + (1.0 - weight) * o).astype(np.float32)
    from scipy.ndimage import gaussian_filter  # noqa: PLC0415

    return (mapped + (1.0 - weight) * gaussian_filter(o - mapped, float(sigma), mode="reflect")).astype(np.float32)


def _blend_iterative(dataset, op, images: list, cfg: PINNConfig) -> tuple[list, dict]:
    """``cfg.blend == "iterative"``: every time point's PINN image blended (:func:`blend_images`, at
    ``cfg.blend_weight`` and ``cfg.blend_sigma``) with cusim's iterative reconstruction (FISTA + TV at its defaults)
    on the same operator, margin and frames. Returns the blended images and what to add to the run's info: FISTA's
    stop reasons and iterations, and (not stored with a result) the two images blended."""
    from .iterative import solve  # noqa: PLC0415

    out, reasons, iters, parts = [], [], 0, {"pinn": [], "iterative": []}
    for t, image in enumerate(images):
        fista = solve(dataset.frames(t), op)
        other = fista["image"][op.field]
        out.append(blend_images(image, other, cfg.blend_weight, sigma=cfg.blend_sigma))
        reasons.append(fista["stop_reason"])
        iters += fista["steps_run"]
        parts["pinn"].append(image)
        parts["iterative"].append(other)
    return out, {"iterative_stop_reason": "; ".join(reasons), "iterative_steps": iters,
                 "blend_parts": {k: np.stack(v) if dataset.is_series else v[0] for k, v in parts.items()}}
