"""The settings of every reconstruction method (:class:`PINNConfig`, :class:`IterativeConfig`,
:class:`WienerConfig`), each a frozen dataclass validated once in ``__post_init__``: the one place that
says what is valid, for :func:`cusim.reconstruct` and the command line alike. Free of torch, so the
command line can use them without importing it.

Every default that was chosen by a measurement names it (docs/quality.md, docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from .._validate import check_choice, check_int, check_number, check_positive
from ..optim import PRIORS

DATA_LOSSES = ("mse", "ssim", "pg")
STOPS = ("max", "plateau", "discrepancy", "validation")
NOISE_MODELS = ("white", "camera")
BACKGROUNDS = ("none", "shared", "frame")  # the PINN's out-of-focus background (cusim.recon._pinn_background)
PRECISIONS = ("float32", "bfloat16")
# The fast step (``cusim run --fast``): the U-Net's inner levels in bfloat16 under autocast (its
# full-resolution level and head in float32) with channels-last tensors, the loss read back to the
# host every 10 steps. Physics, loss, weights and Adam stay float32.
FAST = {"precision": "bfloat16", "channels_last": True, "sync_every": 10}
# `cusim demo`'s budget of PINN steps, seconds (``--time-limit``, PINNConfig.time_limit): the whole demo then ends
# within about a minute where its 400 steps take longer (about 2 minutes on 2 AVX2 cores without native bfloat16;
# docs/performance.md, "The README demo")
DEMO_TIME_LIMIT = 50.0
INPUTS = ("upsampled", "widefield", "mixed")  # "mixed": the members alternate, upsampled first (member_inputs)
BLENDS = ("none", "iterative")  # the PINN's image alone, or averaged with cusim's iterative (FISTA + TV) image
# steps between read-backs on CUDA when ``sync_every`` is not given: the images of a block are kept on the
# device (25 x 512 x 512 float32 = 26 MB per network), and a stop is found up to 25 steps late, then
# taken back exactly
GRAPH_BLOCK = 25
# PINNConfig.keep_jitter: the held-out residual's step-to-step changes are measured over this many latest steps
KEEP_WINDOW = 50
ALGORITHMS = ("fista", "rl")
ITERATIVE_STOPS = ("max", "tol", "discrepancy")


class _Config:
    """A method's settings: a frozen dataclass validated in ``__post_init__``; ``from_params`` builds one
    from a dict (keyword arguments, the command line) and names unknown keys."""

    method = ""

    @classmethod
    def from_params(cls, params: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(f"{cls.method}: unknown parameter(s) {unknown}; expected some of {sorted(names)}")
        return cls(**params)


CAMERA_SETTINGS = ("camera_offset", "camera_gain", "camera_read_sigma")


def _check_camera(cfg) -> None:
    """The noise model and its camera overrides (PINNConfig and IterativeConfig alike): ``camera_*`` only with
    noise "camera", the gain > 0, the read noise >= 0."""
    check_choice("noise", cfg.noise, NOISE_MODELS)
    for name in CAMERA_SETTINGS:
        if getattr(cfg, name) is not None:
            if cfg.noise != "camera":
                raise ValueError(f"{name}: only for noise 'camera' (the camera noise model), got noise {cfg.noise!r}")
            (check_positive(name, cfg.camera_gain) if name == "camera_gain"
             else check_number(name, getattr(cfg, name), lo=0.0 if name == "camera_read_sigma" else None))


def with_file_camera(cfg, camera: dict | None):
    """``cfg`` with the camera settings it leaves unset taken from a file's ``/camera`` record (``camera``:
    :attr:`cusim.io.Dataset.camera`, keys ``offset``, ``gain``, ``read_sigma``), and the names of those taken
    (sorted); unchanged for noise "white" or a file without one. Explicit settings win."""
    if cfg.noise != "camera" or not camera:
        return cfg, []
    taken = {f"camera_{k}": float(v) for k, v in camera.items()
             if f"camera_{k}" in CAMERA_SETTINGS and getattr(cfg, f"camera_{k}") is None}
    return dataclasses.replace(cfg, **taken), sorted(k.removeprefix("camera_") for k in taken)


def parse_loss(spec: str) -> dict[str, float]:
    """``"mse"``, ``"ssim"``, ``"pg"`` or a weighted sum such as ``"mse+0.5*ssim"`` -> {name: weight}."""
    terms = {}
    if not isinstance(spec, str):
        raise ValueError(f"loss: expected terms from {DATA_LOSSES} as 'mse', 'ssim', 'pg' or a weighted sum "
                         f"like 'mse+0.5*ssim', got {spec!r}")
    for part in spec.replace(" ", "").split("+"):
        m = re.fullmatch(r"(?:([0-9.eE-]+)\*)?([a-z]+)", part)
        try:
            weight = float(m.group(1) or 1.0) if m else None
        except ValueError:
            weight = None
        if not m or m.group(2) not in DATA_LOSSES or weight is None or not 0 < weight < float("inf"):
            raise ValueError(f"loss: expected terms from {DATA_LOSSES} as 'mse', 'ssim', 'pg' or a weighted sum "
                             f"like 'mse+0.5*ssim' (weights finite and > 0), got {spec!r}")
        terms[m.group(2)] = terms.get(m.group(2), 0.0) + weight
    return terms


@dataclass(frozen=True)
class PINNConfig(_Config):
    """Settings of one PINN reconstruction; defaults follow the paper's schedule."""

    method = "pinn"

    steps: int = 1000
    lr: float = 1e-3
    lr_decay: float = 0.9  # multiply the learning rate by this ...
    lr_every: int = 50  # ... every this many steps
    loss: str = "mse"  # "mse" | "ssim" | "pg" | a weighted sum "mse+0.5*ssim"
    gain: str = "frame"  # closed-form gain and offset per "frame" or one "global" pair
    prior: str = "none"  # "none" | "tv" | "hessian": a prior added to the loss ...
    prior_weight: float = 0.0  # ... with this absolute weight (TV in the loss was no lever: docs/quality.md)
    noise: str = "white"  # "white": one noise sigma for every pixel (estimate_sigma) | "camera": per-pixel
    # variance gain * (signal - offset) + read_sigma^2 of a camera model estimated from the frames
    # (cusim.noise.estimate_camera; the camera_* settings override its parts), which weights the "mse" loss and
    # scales the stopping rule's residual (opt-in: docs/quality.md, "Low light")
    camera_offset: float | None = None  # counts at zero light
    camera_gain: float | None = None  # counts per photo-electron
    camera_read_sigma: float | None = None  # read noise, counts
    background: str = "none"  # "none" | "shared" | "frame": a smooth non-negative out-of-focus background (one
    # for all frames, or one per frame) added to the predicted frames and learnt with the network
    # (cusim.recon._pinn_background; opt-in)
    stop: str | None = None  # "max" | "plateau" | "discrepancy" | "validation": hold out ``holdout`` of the
    # camera pixels (seeded) from the loss, and return the image where their residual was least once it has
    # not improved for ``patience`` steps (no noise level needed). None: "validation", or "discrepancy" where
    # the loss has an "ssim" term (it cannot hold pixels out). The validation stop is the default since
    # 2026-12-05: against the discrepancy stop it gained on every one of 28 chosen-on paper crops (samples 1-5,
    # +0.50 dB mean) and on the simulated low-light fields, and the held-out samples 6-8 confirmed it (+0.49 dB
    # mean, every set gains; docs/quality.md, "Issue 20: the stop on a second field ...", items 5, 6 and 8), at
    # about 2.3x the steps; samples 9-10, run after the choice, report +0.53 dB over all of 6-10 (item 9)
    holdout: float = 0.05  # validation: the share of the frames' pixels held out
    keep_within: float = 0.0  # validation: return the image of the LATEST step whose held-out residual is within
    # this many standard errors (sqrt(2 / n) sigma^2, n the held-out pixels watched) of the least so far, not the
    # least's own; the run still stops ``patience`` steps after the least. 0 (the default): the least's image.
    # Opt-in: 0.5 gained +0.20 dB in mean on 55 chosen-on items (simulated SNR 1-30, paper crops 1-5) and +0.25 on
    # the held-out crops 6-10, but lost 1.83 dB on NL_SIM/ccp 7 (the held-out residual rose steadily within the
    # tolerance while the network overfitted) and 0.05-0.18 dB on fresh simulated fields at SNR 3-4, so it is not
    # the default (docs/quality.md, "Keeping a later image under the validation stop")
    keep_jitter: float = 2.0  # validation: return the image of the LATEST step whose held-out residual is within
    # this many times its median step-to-step change (over the last KEEP_WINDOW steps) of the least so far (0: the
    # least's own image, the rule before 2026-12-07). Unlike keep_within's standard error, this tolerance follows
    # the trajectory: where the residual wanders from step to step (flat near its least) later steps are kept;
    # where it rises smoothly (the network fitting noise) the tolerance is small. Both set: the larger tolerance.
    # The run still stops ``patience`` steps after the least (the same steps). 2 was chosen on 55 items (simulated
    # filaments SNR 1-30 seeds 20-24, paper crops samples 1-5): +0.17 dB mean over the least's image, every group
    # >= +0.03, worst -0.05 (1: +0.11, 4: +0.20 but worst -0.26); then, report only: 27 fresh simulated fields
    # (seeds 40-44; filaments, ccp, er, actin; the stop fired on 22) +0.17 mean, no group below -0.005, worst
    # -0.35; paper crops 6-10 +0.30 mean, every set +0.09 to +0.49, worst -0.18, NL_SIM/ccp 7's -1.83 under
    # keep_within 0.5 now +0.06 (docs/quality.md, "A tolerance from the residual's own step-to-step change")
    time_limit: float | None = None  # seconds: stop stepping once the steps have run this long (wall clock, from
    # the first step; each fit of a time series has its own), and return the image the stopping rule holds then
    # (validation: the step it keeps so far; else the last step's). None: no limit. Checked after
    # each block of steps (every step on the CPU, every GRAPH_BLOCK on CUDA). `cusim demo` sets one, so the
    # demo ends within about a minute on a slow CPU (docs/performance.md, "The README demo")
    tau: float = 1.0  # discrepancy: stop when the residual mean square <= tau * sigma^2 ...
    stall: float = 0.01  # ... or when it fell by less than this fraction over `patience` steps (a floor;
    # both measured on the paper's data: docs/quality.md, "The whole samples on a GPU")
    patience: int = 100  # validation: the steps without a lower held-out residual before it stops; plateau:
    # stop when the loss fell by less than min_delta (relative) ...
    min_delta: float = 1e-3  # ... over this many steps
    width: int = 32
    depth: int = 3
    up: str = "nearest"
    norm: str = "batch"  # "batch" (fits several times faster) | "none" (the paper's network)
    input: str = "upsampled"  # "upsampled" (the K frames, K channels) | "widefield" (their mean, 1 channel) |
    # "mixed": an ensemble's members alternate, member j the upsampled frames for even j and the widefield image
    # for odd j (one network: the upsampled frames); see member_inputs. Opt-in: against two seeds of the
    # upsampled input (the CUDA default's pair) it gained +0.36 dB on linear SIM, +0.06 on NL_SIM (worst crop
    # -0.42) and +0.10 on LPSIM, on chosen-on crops (docs/quality.md, "Issue 20: the stop on a second field",
    # item 11), so the default pair stays two seeds
    seed: int = 0
    ensemble: int | None = None  # independent networks (seeds seed, seed + 1, ...) whose images are averaged,
    # stepped together as one batched network (models.UNet members), about N x the time; None: ENSEMBLE_CUDA on
    # CUDA, 1 on the CPU (resolved by with_ensemble)
    # The blend, default since 2026-12-05 (docs/quality.md, "Issue 19: the PINN's fine detail over FISTA's coarse
    # scales"): chosen on samples 1-5 of the six paper sets (central 240 x 240 crops) and on simulated filaments
    # (linear and nonlinear SIM, SNR 5-50) as the setting of most mean gain over the better of the PINN alone and
    # FISTA + TV alone, among those no set mean of which fell more than 0.15 dB below that better one.
    blend: str = "iterative"  # "none" (the PINN's image alone) | "iterative": the PINN's image first mapped onto
    # FISTA + TV's (the iterative method's defaults on the same operator and margin) by a least-squares scale and
    # offset, then averaged with it (cusim.recon.pinn.blend_images)
    blend_weight: float = 0.5  # blend "iterative": the PINN's share of the average
    blend_sigma: float | None = 1.0  # blend "iterative": average only the coarser scales, below a Gaussian
    # low-pass of this width in fine pixels, and keep the PINN's image alone above it; 0 or None: every scale
    warm_start_steps: int = 200  # time series: steps for frames after the first
    refine_patterns: bool = False  # learn k (per carrier), phase (per frame), modulation (per carrier)
    refine_start: int = 100  # ... from this step on (the object must take shape first)
    pattern_lr: float = 3e-3  # Adam rate of the pattern corrections (radians; 1e-3 cycles/px for k)
    precision: str = "float32"  # "bfloat16": the U-Net under autocast (physics, loss, Adam stay float32) ...
    float32_levels: int = 1  # ... except this many outer levels and the head (models.UNet)
    channels_last: bool = False  # the U-Net's tensors in channels-last memory order
    sync_every: int | None = None  # read the losses back to the host every this many steps (the stop stays
    # exact: every step's image is kept until then); None: 1 on the CPU (reading costs nothing there),
    # GRAPH_BLOCK on CUDA (each read-back stalls the GPU's queue)
    graph: bool = True  # CUDA: capture the whole step once as a CUDA graph and replay it (the step is bound by
    # the host's kernel launches otherwise: docs/performance.md); ignored on the CPU

    def __post_init__(self):
        if self.stop is None:  # the default rule (the field's comment): resolved once, here
            object.__setattr__(self, "stop", "discrepancy" if "ssim" in parse_loss(self.loss) else "validation")
        ints = {"steps": 1, "lr_every": 1, "patience": 1, "width": 1, "depth": 0, "warm_start_steps": 1,
                "ensemble": 1, "refine_start": 0, "float32_levels": 0, "seed": 0}
        for name, lo in ints.items():
            if not (name == "ensemble" and self.ensemble is None):
                check_int(name, getattr(self, name), lo)
        if self.sync_every is not None:
            check_int("sync_every", self.sync_every, 1)
        for name in ("lr", "lr_decay", "tau", "stall", "pattern_lr"):
            check_positive(name, getattr(self, name))
        check_number("prior_weight", self.prior_weight, lo=0.0)
        check_choice("prior", self.prior, PRIORS)
        if (self.prior == "none") != (self.prior_weight == 0):  # either alone changes nothing
            raise ValueError(f"prior_weight: the PINN's prior {self.prior!r} with weight {self.prior_weight:g} "
                             "changes nothing; expected a prior ('tv', 'hessian') with a weight > 0 (absolute), or "
                             "neither")
        check_number("min_delta", self.min_delta, lo=0.0)
        check_choice("background", self.background, BACKGROUNDS)
        check_number("holdout", self.holdout, lo=0.0, hi=0.5, strict=True)
        check_number("keep_within", self.keep_within, lo=0.0)
        check_number("keep_jitter", self.keep_jitter, lo=0.0)
        if self.time_limit is not None:
            check_positive("time_limit", self.time_limit)
        check_number("blend_weight", self.blend_weight, lo=0.0, hi=1.0)
        if self.blend_sigma is not None:
            check_number("blend_sigma", self.blend_sigma, lo=0.0, hi=64.0)
        if self.refine_patterns and self.steps <= self.refine_start:  # refinement would never start
            raise ValueError(f"refine_patterns: the patterns are refined from step {self.refine_start} on, which "
                             f"{self.steps} steps never reach; expected steps > {self.refine_start}")
        if self.stop == "validation" and "ssim" in parse_loss(self.loss):
            raise ValueError(f"loss: stop 'validation' holds pixels out of 'mse' and 'pg' only, got {self.loss!r}")
        _check_camera(self)
        parse_loss(self.loss)
        for name, allowed in (("stop", STOPS), ("input", INPUTS), ("blend", BLENDS), ("gain", ("frame", "global")),
                              ("prior", PRIORS), ("up", ("nearest", "transpose")),
                              ("norm", ("none", "batch")), ("precision", PRECISIONS), ("channels_last", (False, True)),
                              ("graph", (False, True))):
            check_choice(name, getattr(self, name), allowed)

    @property
    def fast(self) -> bool:
        """Whether the network runs in the fast mode (reduced precision or channels-last)."""
        return self.precision != "float32" or self.channels_last



# The default ensemble on CUDA (PINNConfig.ensemble None). Two networks' mean, blended, measured on the paper's
# crops (samples 1-5 of each set) and the simulated filaments: docs/quality.md, "Issue 19: two networks on a GPU".
# On the CPU the default stays one network: a second doubles minutes of CPU time (the README demo), where on a
# GPU the default reconstruction takes seconds.
ENSEMBLE_CUDA = 2


def with_ensemble(cfg: PINNConfig, device: str) -> PINNConfig:
    """``cfg`` with its ensemble size resolved for ``device`` ("cpu" or "cuda"): an explicit one is kept; None
    becomes :data:`ENSEMBLE_CUDA` on CUDA and 1 on the CPU."""
    if cfg.ensemble is not None:
        return cfg
    return dataclasses.replace(cfg, ensemble=ENSEMBLE_CUDA if device == "cuda" else 1)


def member_inputs(cfg: PINNConfig) -> list[str]:
    """The input of each of ``cfg``'s networks (its ensemble size resolved): ``cfg.input`` for every one, or for
    "mixed" "upsampled" and "widefield" in turn, member 0 upsampled."""
    if cfg.ensemble is None:
        raise ValueError("member_inputs: resolve the ensemble size first (with_ensemble)")
    if cfg.input != "mixed":
        return [cfg.input] * cfg.ensemble
    return ["upsampled" if j % 2 == 0 else "widefield" for j in range(cfg.ensemble)]


@dataclass(frozen=True)
class IterativeConfig(_Config):
    """Settings of one iterative reconstruction, validated once here (before any work).

    ``prior_weight`` is RELATIVE: the solver's absolute weight is ``lam = prior_weight * sigma * K``
    (``sigma`` the frames' estimated noise level, ``K`` the number of frames), so one value suits data in
    any units. ``prior=None`` resolves to ``"tv"`` for FISTA and ``"none"`` for Richardson-Lucy, which
    has no prior. ``noise="camera"`` (FISTA only) weights every pixel's squared residual by its inverse
    noise variance under the camera model (:mod:`cusim.recon.iterative`).
    """

    method = "iterative"

    algorithm: str = "fista"  # "fista" | "rl" (Richardson-Lucy)
    prior: str | None = None  # "none" | "tv" | "hessian"; None: "tv" for fista, "none" for rl
    prior_weight: float = 0.002  # RELATIVE weight of the prior: lam = prior_weight * sigma * K
    n_iter: int = 100  # most iterations
    stop: str = "discrepancy"  # "max" | "tol" | "discrepancy"
    tau: float = 1.0  # discrepancy: stop at the first iterate whose residual mean square <= tau * sigma^2 ...
    min_iter: int = 10  # ... but not before this many iterations. Below about 2 photo-electrons per camera pixel the
    # residual of the first iterates is already within the estimate's few % of sigma^2, and the stop fired after
    # 1-4 iterations: dlsim thinned to 1/200 of the light, FISTA + TV r 0.567 after 1 iteration, 0.731 after 10, 0.688
    # after 100; the PINN blended with it 0.645, 0.717, 0.710 (docs/quality.md, "Darker still"). 10 is where the
    # 1/200 image leaves its start-up (0.699 at 5) and below the 19-71 iterations the stop took on the paper crops
    # where the defaults were chosen (samples 1-5; every NL_SIM and LPSIM crop ran to the cap): nothing there changes.
    tol: float = 1e-5  # tol: stop when the relative change of the image < tol
    noise: str = "white"  # "white": one noise sigma for every pixel (estimate_sigma) | "camera" (FISTA): the
    # data term weighted by 1 / var(y) of the camera model (cusim.noise.estimate_camera; the camera_* settings,
    # then a file's /camera, override its parts): weighted least squares (opt-in: docs/quality.md, "Low light")
    camera_offset: float | None = None  # counts at zero light
    camera_gain: float | None = None  # counts per photo-electron
    camera_read_sigma: float | None = None  # read noise, counts

    def __post_init__(self):
        check_choice("algorithm", self.algorithm, ALGORITHMS)
        _check_camera(self)
        if self.algorithm == "rl" and self.noise != "white":
            raise ValueError(f"noise: algorithm 'rl' has its own (Poisson) likelihood and takes noise 'white' only, "
                             f"got {self.noise!r}; use algorithm 'fista' for noise 'camera'")
        if self.prior is None:
            object.__setattr__(self, "prior", "tv" if self.algorithm == "fista" else "none")
        check_choice("prior", self.prior, PRIORS)
        if self.algorithm == "rl" and self.prior != "none":
            raise ValueError(f"prior: algorithm 'rl' has no prior, got {self.prior!r}; use prior 'none' "
                             "or algorithm 'fista'")
        check_choice("stop", self.stop, ITERATIVE_STOPS)
        for name, value in (("prior_weight", check_number("prior_weight", self.prior_weight, lo=0.0)),
                            ("n_iter", check_int("n_iter", self.n_iter, 1)),
                            ("min_iter", check_int("min_iter", self.min_iter, 1)),
                            ("tau", check_number("tau", self.tau, lo=0.0)),
                            ("tol", check_number("tol", self.tol, lo=0.0))):
            object.__setattr__(self, name, value)  # plain Python numbers, for the record


# Defaults tuned on SIM/microtubules samples 1-3 of the PINN-paper data (SNR ~ 20); the optimum is flat
# (+-0.1 dB over w 0.1..0.2, cut-off 1.0..1.5, bend 0.25..0.75, cosine or triangle).
W_DEFAULT = 0.15
APODISATIONS = ("triangle", "cosine", None)
MIN_PHASES = 3  # band separation of orders -1, 0, +1


@dataclass(frozen=True)
class WienerConfig(_Config):
    """Settings of one Wiener reconstruction, validated once (see :func:`cusim.recon.wiener.wiener` for their
    meaning)."""

    method = "wiener"

    w: float = W_DEFAULT  # Wiener parameter, relative to an OTF of 1 at zero frequency
    apodisation: str | None = "cosine"  # "triangle" | "cosine" (bell) | None
    apo_cutoff: float = 1.2  # the apodisation reaches zero at this x (OTF cut-off + M |k|) ...
    apo_bend: float = 0.5  # ... and is raised to this power
    n_angles: int | None = None  # default from K (cusim.patterns.angle_phase_counts)
    n_phases: int | None = None
    orders: int | None = None  # highest order M separated (default: all that params and n_phases allow)

    def __post_init__(self):
        check_positive("w", self.w)
        check_choice("apodisation", self.apodisation, APODISATIONS)
        check_positive("apo_cutoff", self.apo_cutoff)
        check_positive("apo_bend", self.apo_bend)
        for name, lo in (("n_angles", 1), ("n_phases", MIN_PHASES), ("orders", 1)):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), lo)


# method -> its configuration; widefield has no settings
CONFIGS = {"pinn": PINNConfig, "iterative": IterativeConfig, "wiener": WienerConfig}
