"""Why the PINN's camera-weighted loss (``noise="camera"``) fits slowly: variants of its data term, measured.

    python -m benchmarks.camera_loss [--variants white camera signal-gain wls-gain white-then-camera]
        [--seeds 1 2] [--snr 4] [--size 128] [--steps 400] [--every 25] [--stop discrepancy|validation]
        [--out camera_loss]

An experiment, not a feature: each variant but ``white`` and ``camera`` (cusim's own losses) replaces
:meth:`cusim.recon.losses.DataLoss.__call__` in this process only. Every run is one network, ``blend="none"``,
stepped ``--steps`` times on ``cusim.simulate`` filaments (linear 3 x 3, Poisson and read noise, true patterns),
with the PSNR-vs-step curve of its image (``benchmarks.pinn_curve``'s convention) and where the stop fires.

- ``white``: cusim's default loss (one sigma; the prediction moment-matched to the frames, a per-frame
  correlation loss).
- ``camera``: cusim's ``noise="camera"``: the moment-matched prediction's squared residual over the camera
  model's per-pixel variance.
- ``signal-gain``: as ``camera`` but moment-matched to the SIGNAL's contrast (the frames' variance less the
  mean noise variance): the moment-matched prediction carries the noise's contrast too, which a weighted
  loss does not forgive as a correlation loss does.
- ``wls-gain``: as ``camera`` with the weighted least-squares gain and offset (gradient through them;
  moment-matched where the slope is not positive).
- ``white-then-camera``: the white loss until its residual reaches sigma^2 (where the white stop would fire),
  then ``wls-gain`` from there; the stop watches the camera-weighted residual throughout.
"""

from __future__ import annotations

import argparse
import sys
import time
from types import SimpleNamespace

import numpy as np

from benchmarks import _common as C

NAME = "camera_loss"
VARIANTS = ("white", "camera", "signal-gain", "wls-gain", "white-then-camera")


def _patch(variant: str):
    """Replace DataLoss.__call__ for ``variant``; returns (restore, state) (state["switch"]: the step of the switch)."""
    import torch  # noqa: PLC0415

    from cusim.recon import losses as L  # noqa: PLC0415

    orig = L.DataLoss.__call__
    state = {"stage": 0, "switch": None, "calls": 0}

    def weighted(self, p, dims, fitted):
        tr = self._train
        mean = (lambda v: v.mean(dims, keepdim=True)) if tr is None else L._masked_mean(tr, dims)
        pm, ym = mean(p), mean(self.y)
        ps = mean((p - pm).square()).clamp_min(1e-30).sqrt()
        yv = mean((self.y - ym).square())
        if variant == "signal-gain":
            nv = mean(self.camera.variance(self.y).clamp_min(self._var_floor))
            q = (p - pm) * ((yv - nv).clamp_min(0.01 * yv).sqrt() / ps) + ym
        else:  # weighted least squares
            w = 1.0 / self._variance(fitted)
            if tr is not None:
                w = w * tr
            wm = lambda v: (v * w).sum(dims, keepdim=True) / w.sum(dims, keepdim=True)  # noqa: E731
            pmw, ymw = wm(p), wm(self.y)
            pc = p - pmw
            aw = wm(pc * (self.y - ymw)) / wm(pc * pc).clamp_min(1e-30)
            q = pc * torch.where(aw > 0, aw, yv.sqrt() / ps) + ymw
        r2 = (q - self.y) ** 2 / self._variance(q)
        if tr is not None:
            r2 = r2 * tr * (tr.numel() / tr.sum())
        return r2.mean(L._FRAMES)

    def patched(self, p):
        if self.camera is None or variant in ("white", "camera"):
            return orig(self, p)
        state["calls"] += 1
        _, mse = orig(self, p)  # the camera-weighted residual (held out where validating): the stop's
        dims = (-2, -1) if self.gain == "frame" else (-3, -2, -1)
        with torch.no_grad():
            a, b = L.fit_gain_offset(p, self.y, self.gain, weights=self._train)
            fitted = a * p + b
        if variant == "white-then-camera" and state["stage"] == 0:
            cam, self.camera = self.camera, None
            try:
                total, _ = orig(self, p)
            finally:
                self.camera = cam
            with torch.no_grad():
                r = (fitted - self.y) ** 2
                if self._train is not None:
                    r = r * self._train * (self._train.numel() / self._train.sum())
                if float(r[self.watch].mean()) / self.sigma2 <= 1.0:
                    state["stage"], state["switch"] = 1, state["calls"]
            return total, mse
        return weighted(self, p, dims, fitted), mse

    L.DataLoss.__call__ = patched

    def restore():
        L.DataLoss.__call__ = orig

    return restore, state


def run(variant: str, seed: int, args) -> dict:
    import cusim  # noqa: PLC0415
    from benchmarks.low_light import validation_curve  # noqa: PLC0415
    from benchmarks.pinn_curve import curve  # noqa: PLC0415

    ds = cusim.simulate(phantom="filaments", shape=(args.size, args.size), upsample=2, snr=args.snr, seed=seed,
                        device="cpu")
    params = {"blend": "none", "seed": 0, **({} if variant == "white" else {"noise": "camera"})}
    restore, state = _patch(variant)
    t0 = time.perf_counter()
    try:
        if args.stop == "validation":
            c = validation_curve(ds, {**params, "stop": "validation"}, args.steps, args.every, "cpu")
        else:
            c = curve(ds, SimpleNamespace(margin_camera=None, params=params, steps=args.steps, every=args.every,
                                          rules={"default": {}}), "cpu")
    finally:
        restore()
    fired = c["rules"]["default"]
    return {"variant": variant, "seed": seed, "best": c["best_on_curve"], "switch": state["switch"],
            "stop": {"step": fired["step"], "psnr_db": fired["psnr_db"], "reason": fired["reason"]},
            "at_max": c["at_max"]["psnr_db"], "curve": [(p["step"], p["psnr_db"]) for p in c["curve"]],
            "runtime_s": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.camera_loss", description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--snr", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--stop", choices=["discrepancy", "validation"], default="discrepancy")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=NAME)
    args = ap.parse_args(argv)
    from cusim._threads import set_threads  # noqa: PLC0415

    set_threads(args.threads)
    records, rows = [], []
    for seed in args.seeds:
        for v in args.variants:
            r = run(v, seed, args)
            records.append(r)
            rows.append([v, str(seed), f"{r['best']['psnr_db']:.2f} @ {r['best']['step']}",
                         f"{r['stop']['psnr_db']:.2f} @ {r['stop']['step'] or 'max'}", f"{r['at_max']:.2f}",
                         "-" if r["switch"] is None else str(r["switch"])])
            print(" | ".join(rows[-1]), f"({r['stop']['reason']}; {r['runtime_s']:.0f} s)", flush=True)
    text = C.markdown_table(f"camera-weighted PINN loss variants: simulated filaments {args.size}x{args.size}, SNR "
                            f"{args.snr:g}, one network, blend none, stop {args.stop}; PSNR dB",
                            ["variant", "seed", "curve best @ step", "stop @ step", f"at step {args.steps}",
                             "switch step"], rows)
    print(text)
    data = {"environment": C.environment("cpu", "float32"), "args": {k: str(v) for k, v in vars(args).items()},
            "records": records}
    print(C.write_json(args.out, "cpu", data))
    print(C.write_markdown(args.out, "cpu", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
