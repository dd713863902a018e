"""Reconstruction quality on the PINN-paper data: widefield, the paper's PINN and cusim's PINN.

    python -m benchmarks.quality [--sets SIM/microtubules ...] [--samples 1 2 3] [--crop 240]
        [--steps N] [--seed 0] [--paper-conv fft|direct] [--methods widefield paper cusim [iterative]] [--device auto|cpu|cuda]
        [--pinn-param key=value ...] [--out benchmarks/results/quality-<device>.json]
        [--markdown docs/quality.md] [--resume] [--order sets|samples] [--quick] [--threads N]
    python -m benchmarks.quality --merge PIECE.json ... --out ALL.json [--markdown ALL.md]

Protocol. For every set of ``../shared/data/pinn-sim-paper`` and every sample (1-3 by default), the
central ``--crop`` fine-pixel crop (``Dataset.crop_center``) is reconstructed by

- ``widefield``: ``cusim.reconstruct(ds, "widefield")``;
- ``paper``: the reimplementation of Burns & Liu's PINN (:mod:`benchmarks.peers.paper_pinn`), ``--steps``
  steps with ``--seed``; its convolutions evaluated by FFTs (``--paper-conv fft``, the same functions
  to float32 rounding, several times cheaper on a CPU for the large NL_SIM and LPSIM PSFs) unless
  ``--paper-conv direct`` asks for the real-space ``conv2d`` of the notebooks;
- ``cusim``: ``cusim.reconstruct(ds, "pinn", device=..., steps=..., seed=..., **pinn_params)``, otherwise
  cusim's defaults (its stopping rule may end the run before ``--steps``; its object extends past the
  crop by the PSF's reach, ``margin``, with the patterns of the whole field there; the frames and the
  scored image are the crop's);
- ``--steps`` defaults to the paper's: 1000, and 1500 for LPSIM (both PINNs get the same number);
- ``iterative``: ``cusim.reconstruct(ds, "iterative", device=...)`` when ``cusim.recon.METHODS`` lists it
  (skipped with a note otherwise).

Quality: the ground truth min-max normalised to [0, 1] and the reconstruction mapped onto it by the
least-squares scale and offset (``cusim.metrics``, ``norm="lstsq"``), PSNR and SSIM with a 10 px
border left out; the FRC cut-off (threshold 0.5, 10 px border) of each reconstruction against the
ground truth, in cycles per fine pixel (0.5 = Nyquist when the curve never drops below 0.5). Per
sample and per set (mean): PSNR, SSIM, FRC cut-off, runtime, steps run (and cusim's stop reason).

The JSON is rewritten after every sample (an interrupted run keeps what it finished; ``--resume``
skips the samples and methods already in it, if the settings are the same). A table per set is
printed as it goes, then PASS/MISS lines for the bars, and a markdown summary goes to ``--markdown``.
``--quick`` (a smoke test, not a quality result): sample 1, crop 120, 30 steps unless given.

The differences in the bars (cusim - paper, cusim - widefield) are means over the samples both methods
finished, with their count. ``--merge`` runs nothing: it combines the JSONs of one protocol run in
pieces (``benchmarks/protocol.sh`` runs a process per set and method group at once on one GPU) into
``--out`` and reports as a run does; pieces made with other settings, or holding the same set, sample
and method twice, are refused.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import _common as C

NAME = "quality"
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "pinn-sim-paper"
SETS = ["SIM/microtubules", "NL_SIM/ccp", "NL_SIM/er", "NL_SIM/factin", "NL_SIM/microtubules",
        "LPSIM/microtubules"]
METHODS = ["widefield", "paper", "cusim", "iterative", "wiener"]
DEFAULT_METHODS = ["widefield", "paper", "cusim"]
BORDER = 10  # px left out at every border for PSNR, SSIM and FRC
# The issue's bars, per set (means over the samples)
BAR_PAPER_PSNR, BAR_PAPER_SSIM, BAR_WF_PSNR, BAR_FRC, BAR_ITERATIVE = 1.0, 0.03, 3.0, 0.13, -1.0
FRC_SETS = ("SIM/microtubules", "NL_SIM/ccp", "NL_SIM/er", "NL_SIM/factin", "NL_SIM/microtubules")
# Issue 19: cusim's default against the better (by PSNR, per sample) of these peers, with what was run said
PEERS = ("iterative", "paper")
BAR_BEST_MEAN, BAR_BEST_WORST, BAR_BEST_SSIM = 1.0, -0.5, 0.0
QUICK = {"samples": [1], "crop": 120, "steps": 30}
FULL = {"samples": [1, 2, 3], "crop": 240, "steps": None}  # steps None: the paper's, per set (steps_for)
PAPER_STEPS, PAPER_STEPS_PER_SET = 1000, {"LPSIM/microtubules": 1500}  # the notebooks' step counts


# -- arguments ------------------------------------------------------------------------------------
def _param_value(text: str):
    """``--pinn-param`` values: JSON (numbers, true/false, lists) when it parses, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def kv_params(ap: argparse.ArgumentParser, option: str, items: list[str]) -> dict:
    """PINN settings from ``KEY=VALUE`` strings (values by :func:`_param_value`); one usage line and exit 2 for an
    item without ``=`` or without a key."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            ap.error(f"{option}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = _param_value(value.strip())
    return out


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the pinn-sim-paper folder")
    ap.add_argument("--sets", nargs="+", default=SETS, metavar="GROUP/SET")
    ap.add_argument("--samples", nargs="+", type=int, default=None, help="default 1 2 3 (quick: 1)")
    ap.add_argument("--crop", type=int, default=None, help="central fine-pixel crop; default 240 (quick: 120)")
    ap.add_argument("--steps", type=int, default=None,
                    help="PINN steps; default the paper's: 1000, LPSIM 1500 (quick: 30)")
    ap.add_argument("--paper-conv", default="fft", choices=["fft", "direct"],
                    help="how the paper peer evaluates its convolutions (the same functions; default fft)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=METHODS)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--pinn-param", action="append", default=[], metavar="KEY=VALUE",
                    help="extra cusim PINN parameter (repeatable), e.g. --pinn-param stop=max")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads for the paper peer (default: all cores, as cusim's PINN uses)")
    ap.add_argument("--out", type=Path, default=None, help="JSON; default benchmarks/results/quality-<device>.json")
    ap.add_argument("--markdown", type=Path, default=None, help="write the markdown summary here")
    ap.add_argument("--resume", action="store_true", help="keep the samples already in --out and skip them")
    ap.add_argument("--order", default="sets", choices=["sets", "samples"],
                    help="sets: every sample of a set, then the next set (default); samples: sample-major, each "
                         "sample of every set before the next sample, so a run cut short has covered every set")
    ap.add_argument("--quick", action="store_true", help="smoke test: sample 1, crop 120, 30 steps")
    ap.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                    help="run nothing: combine the JSONs of a protocol run in pieces (same settings; each "
                         "set, sample and method in one of them) into --out, then print and write as a run does")
    args = ap.parse_args(argv)
    if args.merge and not args.out:
        ap.error("--merge needs --out (the combined JSON)")
    base = QUICK if args.quick else FULL
    for key, v in base.items():
        if getattr(args, key) is None:
            setattr(args, key, v)
    if args.crop < 1 or (args.steps is not None and args.steps < 1) or any(s < 1 for s in args.samples):
        ap.error("--crop, --steps and --samples must be positive")
    params = kv_params(ap, "--pinn-param", args.pinn_param)
    for key in ("steps", "seed"):
        if key in params:
            ap.error(f"--pinn-param {key}=...: use --{key} (the paper peer uses the same value)")
    args.pinn_params = params
    args.methods = list(dict.fromkeys(args.methods))
    return args


# -- metrics --------------------------------------------------------------------------------------
def quality(image: np.ndarray, truth: np.ndarray) -> dict:
    from cusim import metrics  # noqa: PLC0415

    f = metrics.frc(image, truth, threshold="0.5", crop=BORDER)
    if f.cutoff is None:  # the curve stays above 0.5 up to Nyquist
        cutoff, note = 0.5, "never below 0.5 (Nyquist)"
    elif f.frc[0] < f.threshold:  # below 0.5 from the first ring on: no resolution; metrics.frc would
        cutoff, note = 0.0, "below 0.5 from the first ring"  # extrapolate rings 0-1 into nonsense
    else:
        cutoff, note = min(max(f.cutoff, 0.0), 0.5), None
    out = {"psnr_db": metrics.psnr(image, truth, norm="lstsq", crop=BORDER),
           "ssim": metrics.ssim(image, truth, norm="lstsq", crop=BORDER), "frc05": cutoff}
    if note:
        out["frc05_note"] = note
    # the least-squares scale of the fit: a negative one means the metrics scored an inverted image
    img, ref = metrics.crop_border(image, BORDER), metrics.crop_border(truth, BORDER)
    A = np.stack([img.ravel(), np.ones(img.size)], axis=1)
    out["lstsq_scale_sign"] = int(np.sign(np.linalg.lstsq(A, ref.ravel().astype(np.float64), rcond=None)[0][0]))
    return out


def _sync(device: str) -> None:
    if device == "cuda":
        import torch  # noqa: PLC0415

        torch.cuda.synchronize()


def steps_for(name: str, args) -> int:
    """PINN steps for set ``name``: ``--steps``, else the paper's for that set."""
    return args.steps or PAPER_STEPS_PER_SET.get(name, PAPER_STEPS)


def run_method(method: str, ds, args, device: str, steps: int) -> dict:
    """One reconstruction of ``ds`` with its quality against the ground truth and its cost."""
    import cusim  # noqa: PLC0415

    if method == "paper":
        import torch  # noqa: PLC0415

        from benchmarks.peers.paper_pinn import paper_pinn  # noqa: PLC0415

        torch.set_num_threads(args.threads or C.cpu_count())  # cusim's PINN resets the thread count
        _sync(device)
        t0 = time.perf_counter()
        image, loss = paper_pinn(ds, steps=steps, seed=args.seed, device=device, conv=args.paper_conv)
        _sync(device)
        runtime = time.perf_counter() - t0
        rec = {"runtime_s": runtime, "steps_run": int(len(loss)), "final_loss": float(loss[-1])}
    elif method == "cusim":
        res = cusim.reconstruct(ds, "pinn", device=device, steps=steps, seed=args.seed, **args.pinn_params)
        image = res.image
        steps_run = res.extra.get("steps_run", 0 if res.loss is None else len(res.loss))
        rec = {"runtime_s": res.runtime_s, "steps_run": int(steps_run), "stop_reason": res.extra.get("stop_reason"),
               "final_loss": res.final_loss, "margin": res.extra.get("margin_camera")}
    else:  # widefield, iterative: cusim's defaults
        res = cusim.reconstruct(ds, method, device=device)
        image = res.image
        rec = {"runtime_s": res.runtime_s, "steps_run": int(res.extra.get("steps_run", 0) or 0)}
        if res.extra.get("stop_reason"):
            rec["stop_reason"] = res.extra["stop_reason"]
    return {**quality(np.asarray(image, dtype=np.float64), ds.ground_truth), **rec}


# -- bookkeeping ----------------------------------------------------------------------------------
def settings_of(args, device: str) -> dict:
    return {"crop": args.crop, "steps": args.steps or "paper", "paper_conv": args.paper_conv, "seed": args.seed,
            "device": device,
            "pinn_params": args.pinn_params, "border_px": BORDER, "norm": "lstsq", "frc_threshold": 0.5,
            "quick": bool(args.quick)}


def _mean(values):
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else None


def _done(d) -> bool:
    """Whether a method's record on a sample holds a result (a failed run holds its reason instead)."""
    return bool(d) and "psnr_db" in d


def summarise(records: list[dict], sets: list[str], methods: list[str]) -> dict:
    """Per set and method: the means over the samples and their count."""
    out = {}
    for name in sets:
        rows = [r for r in records if r["set"] == name]
        if not rows:
            continue
        out[name] = {"samples": sorted(r["sample"] for r in rows)}
        for m in methods:
            got = [r["methods"][m] for r in rows if _done(r["methods"].get(m))]
            if not got:
                continue
            out[name][m] = {k: _mean([g[k] for g in got]) for k in ("psnr_db", "ssim", "frc05", "runtime_s",
                                                                      "steps_run")}
            out[name][m]["n"] = len(got)
            if m == "cusim":
                out[name][m]["stop_reasons"] = sorted({g.get("stop_reason") or "" for g in got})
    return out


def paired(records: list[dict], name: str, a: str, b: str, key: str = "psnr_db") -> tuple[float | None, int]:
    """Mean of ``a - b`` (``key``) over the samples of set ``name`` that both methods finished, and how many.

    Bars compare methods on the same samples: a run cut short, or run in pieces (``--merge``), may hold
    more samples of one method than of another, and means over different samples compare nothing."""
    d = [r["methods"][a][key] - r["methods"][b][key] for r in records if r["set"] == name
         and all(_done(r["methods"].get(m)) for m in (a, b))]
    return (float(np.mean(d)) if d else None), len(d)


def best_peer(records: list[dict], name: str) -> dict | None:
    """Issue 19's comparison on set ``name``: on every sample where cusim and at least one of :data:`PEERS`
    finished, cusim minus the best of those peers by PSNR, and cusim's SSIM minus the highest SSIM among them.
    Returns the per-sample rows, their mean and worst PSNR difference, the mean SSIM difference, and how many
    samples each peer ran on (a peer not run is not a peer beaten); None where no sample has both."""
    rows = []
    for r in sorted((r for r in records if r["set"] == name), key=lambda r: r["sample"]):
        m = r["methods"]
        peers = {p: m[p] for p in PEERS if _done(m.get(p))}
        if not _done(m.get("cusim")) or not peers:
            continue
        best = max(peers, key=lambda p: peers[p]["psnr_db"])
        rows.append({"sample": r["sample"], "best": best, "peers": sorted(peers),
                     "cusim": m["cusim"]["psnr_db"], "best_psnr": peers[best]["psnr_db"],
                     "psnr_diff": m["cusim"]["psnr_db"] - peers[best]["psnr_db"],
                     "ssim_diff": m["cusim"]["ssim"] - max(p["ssim"] for p in peers.values())})
    if not rows:
        return None
    return {"rows": rows, "n": len(rows), "mean": float(np.mean([x["psnr_diff"] for x in rows])),
            "worst": float(min(x["psnr_diff"] for x in rows)),
            "ssim": float(np.mean([x["ssim_diff"] for x in rows])),
            "ran": {p: sum(p in x["peers"] for x in rows) for p in PEERS}}


def _ran(bp: dict) -> str:
    return ", ".join(f"{p} on {k} of {bp['n']}" for p, k in bp["ran"].items())


def bars(summary: dict, records: list[dict]) -> list[dict]:
    """The issue's bars per set, each with PASS / MISS / NOT MEASURED (differences over common samples)."""
    out = []

    def add(name, text, value_n, want, unit):
        value, n = value_n
        status = "NOT MEASURED" if value is None else ("PASS" if value >= want else "MISS")
        out.append({"set": name, "bar": text, "value": value, "want": want, "unit": unit, "status": status, "n": n})

    for name, s in summary.items():
        c = s.get("cusim")
        add(name, f"cusim - paper PSNR >= {BAR_PAPER_PSNR:g} dB", paired(records, name, "cusim", "paper"),
            BAR_PAPER_PSNR, "dB")
        add(name, f"cusim - paper SSIM >= {BAR_PAPER_SSIM:g}", paired(records, name, "cusim", "paper", "ssim"),
            BAR_PAPER_SSIM, "")
        add(name, f"cusim - widefield PSNR >= {BAR_WF_PSNR:g} dB", paired(records, name, "cusim", "widefield"),
            BAR_WF_PSNR, "dB")
        if "iterative" in s:  # the classical peer: within BAR_ITERATIVE dB of cusim's own FISTA+TV, or better
            add(name, f"cusim - iterative PSNR >= {BAR_ITERATIVE:g} dB", paired(records, name, "cusim", "iterative"),
                BAR_ITERATIVE, "dB")
        if name in FRC_SETS:
            add(name, f"cusim FRC 0.5 cut-off >= {BAR_FRC:g} cycles/px", (c["frc05"], c["n"]) if c else (None, 0),
                BAR_FRC, " cycles/px")
        bp = best_peer(records, name)
        if bp:  # issue 19's three bars, against the peers that ran
            ran = f" [peers run: {_ran(bp)}]"
            add(name, f"cusim - best peer PSNR >= {BAR_BEST_MEAN:g} dB (mean){ran}", (bp["mean"], bp["n"]),
                BAR_BEST_MEAN, "dB")
            add(name, f"cusim - best peer PSNR >= {BAR_BEST_WORST:g} dB (worst sample){ran}", (bp["worst"], bp["n"]),
                BAR_BEST_WORST, "dB")
            add(name, f"cusim SSIM - best peer's >= {BAR_BEST_SSIM:g} (mean){ran}", (bp["ssim"], bp["n"]),
                BAR_BEST_SSIM, "")
    return out


def bar_line(b: dict) -> str:
    if b["value"] is None:
        return f"{b['status']}  {b['set']}: {b['bar']} (method not run)"
    sign = "+" if " - " in b["bar"] else ""
    n = f" ({b['n']} samples)" if b.get("n") is not None else ""
    return f"{b['status']}  {b['set']}: {b['bar']}: measured {b['value']:{sign}.3f}{b['unit']}{n}"


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_set_table(name: str, records: list[dict], summary: dict, methods: list[str]) -> None:
    def cell(d):
        if not d or "psnr_db" not in d:
            return "failed" if d else "-"
        return f"{d['psnr_db']:.2f} / {d['ssim']:.3f} / {d['frc05']:.3f} / {d['runtime_s']:.1f}"

    stop = "cusim" in methods
    cols = ["sample"] + list(methods) + (["cusim steps, stop"] if stop else [])
    rows = []
    for r in sorted((r for r in records if r["set"] == name), key=lambda r: r["sample"]):
        row = [str(r["sample"])] + [cell(r["methods"].get(m)) for m in methods]
        if stop:
            c = r["methods"].get("cusim", {})
            row.append(f"{c.get('steps_run', '-')}, {c.get('stop_reason') or '-'}")
        rows.append(row)
    s = summary.get(name, {})
    rows.append(["mean"] + [cell(s.get(m)) for m in methods] + ([""] if stop else []))
    C.print_table(f"{name}: PSNR dB / SSIM / FRC 0.5 cut-off cycles/px / runtime s "
                  f"(lstsq fit, {BORDER} px border)", cols, rows)


RAN_ON = ("device_name", "git_commit")  # what each result records of where it was measured (a resume mixes runs)


def _ran_on_lines(payload: dict) -> list[str]:
    """A line naming every machine and commit the results were measured on, where a resume mixed several."""
    seen: dict[tuple, int] = {}
    for r in payload.get("samples", []):
        for d in r["methods"].values():
            key = tuple((d.get("ran_on") or {}).get(k) for k in RAN_ON)
            seen[key] = seen.get(key, 0) + 1
    if len(seen) < 2:
        return []
    return ["- measured on (resumed runs): " + "; ".join(f"{dev} at {(commit or '?')[:7]} ({n} results)"
                                                         for (dev, commit), n in seen.items())]


def markdown(payload: dict) -> str:
    s, env, summary = payload["settings"], payload["environment"], payload["sets"]
    methods = payload["methods"]
    extra = [m for m in methods if m not in ("widefield", "paper", "cusim")]

    def pair(d, m):
        x = d.get(m)
        return "-" if not x else f"{x['psnr_db']:.2f} / {x['ssim']:.3f}"

    def diff(name, a, b):  # over the samples both methods finished
        (dp, n), (ds, _) = (paired(payload["samples"], name, a, b, k) for k in ("psnr_db", "ssim"))
        common = f" ({n} common)" if dp is not None and n < len(summary[name]["samples"]) else ""
        return "-" if dp is None else f"{dp:+.2f} dB / {ds:+.3f}{common}"

    per_set = ", ".join(f"{k}: {v['samples']}" for k, v in summary.items())
    lines = ["# Reconstruction quality on the PINN-paper data", ""]
    if s.get("quick"):
        lines += ["**Smoke test (`--quick`): tiny crop and few steps; these are NOT quality results.**", ""]
    lines += [
        f"- device: {env.get('device')} ({env.get('device_name')}), torch {env.get('torch')}, "
        f"{env.get('cpu_count')} CPU cores",
        f"- date: {env.get('date')}, commit {env.get('git_commit')}",
        f"- command: `{payload['command']}`",
        *_ran_on_lines(payload),
        f"- settings: central {s['crop']} x {s['crop']} fine-pixel crop, "
        + ("the paper's steps (1000, LPSIM 1500)" if s["steps"] == "paper" else f"{s['steps']} steps")
        + f", seed {s['seed']}, cusim PINN params {json.dumps(s['pinn_params'])} (otherwise defaults); paper peer: "
        f"benchmarks/peers/paper_pinn.py, convolutions {s.get('paper_conv', 'direct')}",
        f"- metrics: ground truth min-max normalised, reconstruction fitted by least-squares scale and offset; "
        f"PSNR (dB) and SSIM with a {s['border_px']} px border left out; FRC 0.5 cut-off against the ground "
        "truth in cycles per fine pixel (0.5 = never crossed)",
        f"- samples per set: {per_set or 'none'}",
    ]
    lines += [f"- note: {n}" for n in payload.get("notes", [])]
    inverted = [f"{r['set']} #{r['sample']} {m}" for r in payload["samples"] for m, d in r["methods"].items()
                if d.get("lstsq_scale_sign", 1) < 0]
    if inverted:
        lines.append(f"- WARNING: negative least-squares scale (the image is anti-correlated with the ground truth "
                     f"and was scored inverted): {', '.join(inverted)}")
    head = ["set", "widefield PSNR/SSIM", "paper PSNR/SSIM", "cusim PSNR/SSIM"] + \
        [f"{m} PSNR/SSIM" for m in extra] + ["cusim - paper", "cusim - widefield",
                                              "FRC 0.5 widefield / paper / cusim", "cusim steps, stop"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, d in summary.items():
        frc = " / ".join("-" if m not in d else f"{d[m]['frc05']:.3f}" for m in ("widefield", "paper", "cusim"))
        stop = "-" if "cusim" not in d else \
            f"{d['cusim']['steps_run']:.0f}, {'; '.join(d['cusim']['stop_reasons'])}"
        row = [name, pair(d, "widefield"), pair(d, "paper"), pair(d, "cusim")] + [pair(d, m) for m in extra] + \
            [diff(name, "cusim", "paper"), diff(name, "cusim", "widefield"), frc, stop]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Runtime per sample (s, mean): " + "; ".join(
        f"{name}: " + ", ".join(f"{m} {d[m]['runtime_s']:.1f}" for m in methods if m in d)
        for name, d in summary.items())]
    best = {name: bp for name in summary if (bp := best_peer(payload["samples"], name))}
    if best:
        lines += ["", f"## cusim against the best peer ({' or '.join(PEERS)}, by PSNR per sample)", "",
                  "Per sample where cusim and at least one peer finished; SSIM against the highest of the peers'. "
                  "A peer that did not run is not counted as beaten: the peers run are listed.", "",
                  "| set | samples | peers run | mean cusim - best peer dB | worst sample dB | mean SSIM difference |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {bp['n']} | {_ran(bp)} | {bp['mean']:+.2f} | {bp['worst']:+.2f} | {bp['ssim']:+.3f} |"
                  for name, bp in best.items()]
        lines += ["", "| set | sample | cusim PSNR | best peer | its PSNR | cusim - best peer dB | SSIM difference |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {x['sample']} | {x['cusim']:.2f} | {x['best']} | {x['best_psnr']:.2f} | "
                  f"{x['psnr_diff']:+.2f} | {x['ssim_diff']:+.3f} |" for name, bp in best.items() for x in bp["rows"]]
    lines += ["", "## Bars", ""]
    lines += [f"- {bar_line(b)}" for b in payload["bars"]]
    return "\n".join(lines) + "\n"


def merge(paths: list[Path]) -> dict:
    """One payload from the JSONs of a run made in pieces; ``ValueError`` (one line) where they disagree."""
    payloads = []
    for path in paths:
        try:
            payloads.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable quality JSON ({exc})") from None
        if payloads[-1].get("benchmark") != NAME or "settings" not in payloads[-1]:
            raise ValueError(f"{path}: not a benchmarks.quality JSON")
    first = payloads[0]
    records: dict[tuple, dict] = {}
    for path, pl in zip(paths, payloads):
        if pl["settings"] != first["settings"]:
            raise ValueError(f"{path} was made with settings {pl['settings']}, {paths[0]} with "
                             f"{first['settings']}: only pieces of one protocol merge")
        for r in pl.get("samples", []):
            rec = records.setdefault((r["set"], r["sample"]), {**r, "methods": {}})
            for m, d in r["methods"].items():
                if m in rec["methods"]:
                    raise ValueError(f"{path}: {r['set']} #{r['sample']} {m} is in two of the pieces")
                rec["methods"][m] = d
    out = sorted(records.values(), key=lambda r: (SETS.index(r["set"]) if r["set"] in SETS else len(SETS),
                                                  r["set"], r["sample"]))
    methods = [m for m in METHODS if any(m in r["methods"] for r in out)]
    sets = list(dict.fromkeys(r["set"] for r in out))
    summary = summarise(out, sets, methods)
    return {"benchmark": NAME, "command": "merged: " + " && ".join(pl["command"] for pl in payloads),
            "settings": first["settings"], "methods": methods, "environment": first["environment"],
            "notes": list(dict.fromkeys(n for pl in payloads for n in pl.get("notes", []))),
            "merged_from": [str(p) for p in paths], "samples": out, "sets": summary, "bars": bars(summary, out)}


def report(payload: dict, out: Path, markdown_path: Path | None) -> int:
    """Print the bars, say where the JSON is, write the markdown; 1 if any reconstruction failed."""
    print()
    for b in payload["bars"]:
        print(bar_line(b))
    print(f"\nJSON: {out}")
    if markdown_path:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(markdown(payload))
        print(f"markdown: {markdown_path}")
    failed = [(r["set"], r["sample"], m) for r in payload["samples"] for m, d in r["methods"].items()
              if "psnr_db" not in d]
    if failed:
        print(f"quality: {len(failed)} reconstruction(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0


# -- main -----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.merge:
        try:
            payload = merge(args.merge)
        except ValueError as exc:
            print(f"quality: {exc}", file=sys.stderr)
            return 2
        write_json_atomic(args.out, payload)
        for name in payload["sets"]:
            print_set_table(name, payload["samples"], payload["sets"], payload["methods"])
        return report(payload, args.out, args.markdown)
    from cusim.backend import resolve_device  # noqa: PLC0415
    from cusim.importers import import_paper  # noqa: PLC0415
    from cusim.recon import METHODS as RECON_METHODS  # noqa: PLC0415

    device = resolve_device(args.device)
    if device == "cuda":
        import torch  # noqa: PLC0415

        if not torch.cuda.is_available():
            print("quality: CuPy sees a GPU but torch does not; the PINNs need torch with CUDA", file=sys.stderr)
            return 2
    if args.threads:
        import torch  # noqa: PLC0415

        torch.set_num_threads(args.threads)
    notes, methods = [], list(args.methods)
    if "iterative" in methods and "iterative" not in RECON_METHODS:
        notes.append(f"iterative skipped: cusim.recon lists {list(RECON_METHODS)}, no 'iterative' yet")
        methods.remove("iterative")
    for n in notes:
        print(f"NOTE {n}")
    out = args.out or C.RESULTS / f"{NAME}-{C.device_tag(device)}.json"
    settings = settings_of(args, device)
    records: list[dict] = []
    if args.resume and out.exists():
        old = json.loads(out.read_text())
        if old.get("settings") != settings:
            print(f"quality: {out} was made with other settings {old.get('settings')}; run without --resume or "
                  "with another --out", file=sys.stderr)
            return 2
        records = old.get("samples", [])  # all of them, also sets and samples not asked for this time
        before = {k: old.get("environment", {}).get(k) for k in RAN_ON}
        for r in records:  # each result keeps where it was measured (the header names this run's machine)
            for d in r["methods"].values():
                d.setdefault("ran_on", before)
        print(f"resuming from {out}: {len(records)} sample(s) already there, measured on {before['device_name']} "
              f"at {(before['git_commit'] or '?')[:7]}")
    command = "python -m benchmarks.quality " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None
                                                                                  else argv))
    payload = {"benchmark": NAME, "command": command, "settings": settings, "methods": methods,
               "environment": C.environment(device, "float32"), "notes": notes}
    here = {k: payload["environment"].get(k) for k in RAN_ON}
    if args.resume and out.exists():
        payload["resumed_from"] = [*old.get("resumed_from", []),
                                   {"command": old.get("command"), "environment": old.get("environment")}]

    def save():
        present = {m for r in records for m in r["methods"]} | set(methods)
        payload["methods"] = [m for m in METHODS if m in present]
        sets = sorted(set(args.sets) | {r["set"] for r in records},
                      key=lambda n: (SETS.index(n) if n in SETS else len(SETS), n))
        payload["samples"] = records
        payload["sets"] = summarise(records, sets, payload["methods"])
        payload["bars"] = bars(payload["sets"], records)
        payload["environment"]["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        write_json_atomic(out, payload)

    pairs = ([(n, s) for n in args.sets for s in args.samples] if args.order == "sets"
             else [(n, s) for s in args.samples for n in args.sets])
    for i, (name, sample) in enumerate(pairs):
        rec = next((r for r in records if r["set"] == name and r["sample"] == sample), None)
        todo = [m for m in methods  # what the sample lacks, and what failed before (a resume retries it)
                if rec is None or m not in rec["methods"] or rec["methods"][m].get("status") == "failed"]
        if todo:
            ds = import_paper(args.data / name, sample).crop_center(args.crop)
            if rec is None:
                rec = {"set": name, "sample": sample, "crop": args.crop, "K": ds.K,
                       "fine_shape": list(ds.fine_shape), "methods": {}}
                records.append(rec)
            for m in todo:
                try:
                    rec["methods"][m] = run_method(m, ds, args, device, steps_for(name, args))
                except Exception as exc:  # noqa: BLE001 -- record and go on; a long run keeps the rest
                    rec["methods"][m] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                rec["methods"][m]["ran_on"] = here
                d = rec["methods"][m]
                msg = (f"{d['psnr_db']:.2f} dB, SSIM {d['ssim']:.3f}, FRC {d['frc05']:.3f}, {d['runtime_s']:.1f} s"
                       + (" (NEGATIVE lstsq scale: an inverted image was scored)" if d.get("lstsq_scale_sign", 1) < 0
                          else "") if "psnr_db" in d else d["reason"])
                print(f"{name} #{sample} {m}: {msg}", flush=True)
            save()
        if args.order == "sets" and (i + 1 == len(pairs) or pairs[i + 1][0] != name):  # the set is done
            save()
            print_set_table(name, records, payload["sets"], payload["methods"])
    save()
    if args.order == "samples":
        for name in args.sets:
            print_set_table(name, records, payload["sets"], payload["methods"])
    return report(payload, out, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
