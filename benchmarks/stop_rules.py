"""Candidate variants of the PINN's validation stop, replayed on one trajectory per item.

    python -m benchmarks.stop_rules [--items sim:SNR:SEED[:PHANTOM] | SET:SAMPLE ...] [--crop 120] [--sim-size 128]
        [--rules NAME:floor=F,se=C,jit=K,frozen=0|1,ma=W,rel=0|1,reset=R,gain=G,cap=N,patience=P ...] [--min-run N] [--cap 1000]
        [--pinn-param KEY=VALUE ...] [--threads N] [--out benchmarks/results/stop_rules-cpu.json]
    python -m benchmarks.stop_rules --replay FILE.json[.gz] ... [--rules ...] [--against BASE.json[.gz] ...]

``--against``: a variant's runs (``--pinn-param``, a schedule say) item by item against the default's runs of the same
items, the paired difference that screens a setting (docs/quality.md, "The schedule").

The validation stop (cusim's default) holds ``holdout`` of the camera pixels out of the loss and, before 2026-12-07,
kept the image of their least residual (rule ``least:`` here), stopping ``patience`` steps after it. At SNR 1 that
least residual came at steps 13-28 while
the image's PSNR peaked at 25-50 (docs/quality.md, "Darker still"). Every candidate here keeps the held-out pixels
and the trajectory (so one run per item serves all of them) and changes only which step's image is kept and when
the run ends:

- ``floor F``: the least held-out residual among steps >= F (and ``patience`` steps after it);
- ``se C``: the LATEST step whose held-out residual is within C standard errors of the least so far (the standard
  error of a mean of n squared unit normals, sqrt(2 / n), n the held-out pixels watched); the run still ends
  ``patience`` steps after the least. Rationale: the held-out residual is measured in the frames, where the
  detail past the passband that later steps add weighs little, and near its least it is flat within its noise
  (``rel=1``: that standard error scaled by the least residual, not sigma^2). ``se`` is ``PINNConfig.keep_within``.
- ``jit K``: the same with a tolerance of K times the held-out residual's median step-to-step change over the last
  ``KEEP_WINDOW`` steps (the larger of the two where both are set): ``PINNConfig.keep_jitter``; ``frozen=1``: that
  window ends at the least so far (benchmark only; not adopted, docs/quality.md);
- ``ma W``: the least of the residual's trailing W-step mean, the image at its window's centre (benchmark only; not
  adopted, docs/quality.md);
- ``reset R`` / ``gain G``: the ``patience`` steps count from the last least lower than the last one that counted by
  more than R times the residual's median step-to-step change (or a share G of it), so a residual creeping down
  within its own jitter ends the run (benchmark only, docs/quality.md, "Issue 19: how many steps a whole sample needs");
- ``cap N``: the run cut at N steps (cusim's ``steps``), keeping what the rule holds there: the image of a shorter
  run, from the same trajectory.

Measured 2026-12-06 (docs/quality.md, "Keeping a later image under the validation stop"): ``se=0.5`` gained on the
chosen-on items but lost 1.83 dB on a held-out NL_SIM/ccp crop, where the residual rose steadily within it. Measured
2026-12-07 ("A tolerance from the residual's own step-to-step change"): ``jit=2`` gained on the chosen-on items, on
fresh simulated fields and on the held-out crops (ccp 7 included): cusim's default since (``keep_jitter`` 2).

Per item: one run of cusim's default PINN (one network, ``stop="validation"``, its default margin and patience)
stepped until every candidate has ended, or ``--cap``; each step's held-out residual, and the PSNR of the network's
image and of the image the run returns (blended with FISTA + TV as ``cusim.reconstruct`` does). Items:
``sim:SNR:SEED[:PHANTOM]`` (``cusim.simulate``, filaments unless named, ``--sim-size`` fine pixels square, linear
3 x 3) or ``SET:SAMPLE`` (a paper-data
crop, ``--crop``). The quality convention is ``benchmarks.quality``'s. CPU only (one trajectory per item, every
step's image scored: a GPU would wait on the host).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import _common as C
from benchmarks.quality import BORDER, DATA, kv_params, quality, write_json_atomic
from cusim.phantoms import PHANTOMS
from cusim.recon.config import KEEP_WINDOW, PINNConfig

NAME = "stop_rules"
DEFAULT_RULES = ["least:", "floor30:floor=30", "floor50:floor=50", "se0.5:se=0.5", "se1:se=1", "se2:se=2",
                 "se1p200:se=1,patience=200", "least_p200:patience=200", "jit1:jit=1", "jit2:jit=2", "jit4:jit=4"]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.stop_rules", description=__doc__.split("\n")[0])
    ap.add_argument("--items", nargs="+", default=["sim:1:20"], metavar="ITEM")
    ap.add_argument("--data", type=Path, default=DATA, help="the pinn-sim-paper folder")
    ap.add_argument("--crop", type=int, default=120)
    ap.add_argument("--sim-size", type=int, default=128)
    ap.add_argument("--rules", nargs="+", default=DEFAULT_RULES, metavar="NAME:KEY=VALUE,...",
                    help="floor=F, se=C, jit=K, frozen=0|1, ma=W, rel=0|1, reset=R, gain=G, cap=N, patience=P (default "
                         "0 for all but patience, cusim's); 'NAME:' alone is the least's image (keep_jitter 0)")
    ap.add_argument("--min-run", type=int, default=0, help="step at least this many times (the curve past the stops)")
    ap.add_argument("--cap", type=int, default=1000, help="the run's step cap (cusim's default steps)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--pinn-param", action="append", default=[], metavar="KEY=VALUE",
                    help="another PINNConfig setting for the run (repeatable), e.g. --pinn-param lr_decay=0.95; "
                         "not ensemble, steps or stop (one network, --cap, the validation stop)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--replay", type=Path, nargs="+", default=None, metavar="JSON",
                    help="no runs: replay --rules on the trajectories these files (.json or .json.gz) recorded and print "
                         "the summary")
    ap.add_argument("--against", type=Path, nargs="+", default=None, metavar="JSON",
                    help="with --replay: the runs there (a variant, e.g. another --pinn-param) item by item against "
                         "these recorded runs of the same items (matched by label), per group and rule")
    args = ap.parse_args(argv)
    if args.against and not args.replay:
        ap.error("--against compares with the runs --replay names: give --replay too")
    args.parsed_rules = {}
    for r in args.rules:
        name, sep, kv = r.partition(":")
        spec = {}
        for pair in filter(None, kv.split(",")):
            key, _, value = pair.partition("=")
            if key not in ("floor", "se", "jit", "patience", "rel", "frozen", "ma", "reset", "gain", "cap"):
                ap.error(f"--rules {name}: expected floor=, se=, jit=, rel=, frozen=, ma=, reset=, gain=, cap= or "
                         f"patience=, got {pair!r}")
            try:
                spec[key] = float(value) if key in ("se", "jit", "reset", "gain") else int(value)
            except ValueError:
                ap.error(f"--rules {name}: {key}= expects a number, got {value!r}")
        if not sep or not name:
            ap.error(f"--rules: expected NAME:KEY=VALUE,..., got {r!r}")
        if spec.get("ma", 0) > 1 and {"se", "jit", "rel", "frozen", "reset", "gain"} & spec.keys():
            ap.error(f"--rules {name}: ma= takes only floor= and patience= (the smoothed residual's least), got {kv!r}")
        args.parsed_rules[name] = spec
    args.pinn_params = kv_params(ap, "--pinn-param", args.pinn_param)
    for key in ("ensemble", "steps", "stop"):
        if key in args.pinn_params:
            ap.error(f"--pinn-param {key}=...: fixed here (one network, --cap, the validation stop)")
    try:
        PINNConfig(**args.pinn_params)
    except (TypeError, ValueError) as e:
        ap.error(f"--pinn-param: {e}")
    args.parsed = []
    for it in args.items:
        parts = it.split(":")
        try:
            if parts[0] == "sim" and len(parts) in (3, 4):
                phantom = parts[3] if len(parts) == 4 else "filaments"
                if phantom not in PHANTOMS:
                    ap.error(f"--items {it}: phantom expected one of {sorted(PHANTOMS)}, got {phantom!r}")
                args.parsed.append(("sim", float(parts[1]), int(parts[2]), phantom))
                continue
            name, sample = it.rsplit(":", 1)
            args.parsed.append(("paper", name, int(sample)))
        except ValueError:
            ap.error(f"--items: expected sim:SNR:SEED[:PHANTOM] or SET:SAMPLE, got {it!r}")
    return args


def replay(mse: np.ndarray, *, floor: int = 0, se: float = 0.0, rel: int = 0, jit: float = 0.0, n_held: int = 1,
           patience: int = PINNConfig.patience, frozen: int = 0, ma: int = 0, reset: float = 0.0,
           gain: float = 0.0, cap: int = 0):
    """The step (0-based) whose image the rule keeps and the step at which it ends the run (None: not within
    ``mse``'s steps) on the held-out residuals ``mse`` of one trajectory. ``rel``: the standard error scaled by
    the least residual so far (the squared residuals' own level), not by sigma^2. ``jit``: keep_jitter's tolerance,
    that many times the median step-to-step change over the last KEEP_WINDOW steps (the larger of the two);
    ``frozen``: that window ends at the least so far, not at the step judged (the steps after the least cannot
    widen the tolerance). ``ma``: the least of the residual's trailing mean over that many steps, keeping the
    image at the centre of its window (the other options do not apply). ``reset`` / ``gain``: the ``patience``
    steps count from the last least that was lower than the one before it that counted by more than ``reset``
    times the median step-to-step change over the last KEEP_WINDOW steps, or ``gain`` of its value (the larger;
    a least by less, the residual creeping down within its own jitter, does not restart them); the image kept
    is chosen as without them. ``cap``: a run of at most that many steps (cusim's ``steps``): where the rule has
    not ended it by then, it ends at the last, keeping what the rule holds there."""
    if cap and len(mse) >= cap:
        pick, end = replay(mse[:cap], floor=floor, se=se, rel=rel, jit=jit, n_held=n_held, patience=patience,
                           frozen=frozen, ma=ma, reset=reset, gain=gain)
        return pick, cap - 1 if end is None else end
    if ma > 1:
        smooth = np.array([np.mean(mse[max(0, s - ma + 1):s + 1]) for s in range(len(mse))])
        pick, end = replay(smooth, floor=floor, patience=patience)
        return max(0, pick - (ma - 1) // 2), end
    unit = se * np.sqrt(2.0 / n_held)
    best, best_step, pick = np.inf, -1, -1
    anchor, anchor_step = np.inf, -1  # the last least that restarted the patience steps

    def median_change(end):
        return float(np.median(np.abs(np.diff(mse[max(0, end - KEEP_WINDOW):end + 1])))) if end > 0 else 0.0

    for s, m in enumerate(mse):
        if s < floor:
            continue
        if m < best:
            best, best_step, pick = m, s, s
        else:
            tol = unit * (best if rel else 1.0)
            if jit:
                tol = max(tol, jit * median_change(best_step if frozen else s))
            if tol and m <= best + tol:
                pick = s
        if reset or gain:
            if anchor == np.inf or m < anchor - max(reset * median_change(s), gain * anchor):
                anchor, anchor_step = m, s
        else:
            anchor_step = best_step
        if s - anchor_step >= patience:
            return pick, s
    return pick, None


def run_item(ds, args, label: str) -> dict:
    from cusim import metrics  # noqa: PLC0415
    from cusim.recon import pinn as P  # noqa: PLC0415
    from cusim.recon.iterative import solve  # noqa: PLC0415

    margin = P.auto_margin(ds)
    cfg = P.PINNConfig(**{**args.pinn_params, "ensemble": 1, "steps": args.cap, "stop": "validation"})
    op = ds.operator(margin_camera=margin, device="cpu")
    t0 = time.perf_counter()
    fista = solve(ds.frames(), op)["image"][op.field]
    fit = P.PINNStep(ds.frames(), op, cfg, watch_inset=P.watch_inset(ds, margin))
    n_held = fit.data_loss.n_held  # the held-out pixels the rule's residual watches
    truth = ds.ground_truth
    mse, p_net, p_blend, images = [], [], [], []
    try:
        for step in range(args.cap):
            x, _loss, m = fit.evaluate()
            img = x.detach()[0][fit.field].float().cpu().numpy().astype(np.float64)
            blended = P.blend_images(img.astype(np.float32), fista, cfg.blend_weight, sigma=cfg.blend_sigma)
            mse.append(float(m))
            p_net.append(metrics.psnr(img, truth, norm="lstsq", crop=BORDER))
            p_blend.append(metrics.psnr(blended.astype(np.float64), truth, norm="lstsq", crop=BORDER))
            images.append(blended)
            if step % 10 == 9 and step + 1 >= args.min_run and all(
                    replay(np.array(mse), n_held=n_held, **r)[1] is not None for r in args.parsed_rules.values()):
                break
            fit.update()
    finally:
        fit.close()
    arr = np.array(mse)
    out = {"label": label, "n_held": n_held, "steps_run": len(mse), "runtime_s": time.perf_counter() - t0,
           "fista": quality(fista.astype(np.float64), truth),
           "best_blended": {"step": int(np.argmax(p_blend)) + 1, "psnr_db": float(max(p_blend))},
           "best_network": {"step": int(np.argmax(p_net)) + 1, "psnr_db": float(max(p_net))},
           "curve": [(s + 1, arr[s], p_net[s], p_blend[s]) for s in range(len(mse))], "rules": {}}
    for name, r in args.parsed_rules.items():
        pick, end = replay(arr, n_held=n_held, **r)
        out["rules"][name] = {"step": pick + 1, "ends": None if end is None else end + 1,
                              "network_psnr_db": p_net[pick], **quality(images[pick].astype(np.float64), truth)}
    return out


def group_of(label: str) -> str:
    """"sim SNR 4" (filaments), "sim SNR 4 ccp" (another phantom) or the paper set's name."""
    if not label.startswith("sim"):
        return label.split(" #")[0]
    head, _, tail = label.partition(" seed ")
    return " ".join([head, *tail.split()[1:]])


def summarise(items: list[dict], rules: dict) -> list[str]:
    """Per group (simulated SNR, paper set) and rule, replayed on the recorded trajectories: the mean and the
    worst difference in PSNR (the image the run returns) against the validation stop's image before keep_jitter
    (the least held-out residual's, rule ``least:``), and how many runs the rule ended at its last step (the kept step is
    the step it fired at). The last column is the curve's best, the most any rule could gain; the last row, with
    more than one group, every item. Each cell also gives the mean step at which the rule ends the run (the steps
    recorded where it did not end; in the last column, the curve's best step)."""
    rows = {}
    for it in items:
        c = np.array(it["curve"])
        mse, returned = c[:, 1], c[:, 3]
        least = returned[replay(mse, n_held=it["n_held"])[0]]
        row = {}
        for name, r in rules.items():
            pick, end = replay(mse, n_held=it["n_held"], **r)
            row[name] = (returned[pick] - least, end is not None and pick == end, end is None,
                         len(mse) if end is None else end + 1)
        row["best"] = (returned.max() - least, False, False, int(np.argmax(returned)) + 1)
        rows.setdefault(group_of(it["label"]), []).append(row)
    def cell(rs, n):
        d = [r[n][0] for r in rs]
        at_end, unended = sum(r[n][1] for r in rs), sum(r[n][2] for r in rs)
        return (f"{np.mean(d):+.2f} / {min(d):+.2f}, {np.mean([r[n][3] for r in rs]):.0f} steps"
                + (f" ({at_end} at end)" if at_end else "") + (f" ({unended} not ended)" if unended else ""))

    return group_table(rows, [*rules, "best"], cell)


def group_table(rows: dict, names: list[str], cell) -> list[str]:
    """A markdown table: one row per group of ``rows`` (group -> per-item dicts), then "all" where there is more
    than one group; ``cell(items, name)`` writes each column's cell."""
    out = ["| group | n | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 2)]
    if len(rows) > 1:
        rows = {**rows, "all": [r for rs in rows.values() for r in rs]}
    return out + [f"| {g} | {len(rs)} | " + " | ".join(cell(rs, n) for n in names) + " |" for g, rs in rows.items()]


def compare(items: list[dict], base: list[dict], rules: dict) -> list[str]:
    """Item by item (matched by label), the runs in ``items`` (a variant: another schedule, say) against ``base``
    (the same items at the defaults): per group and rule, the mean and worst difference in PSNR of the image the run
    returns (variant minus base) and the mean step the rule ends the run at, base -> variant (the steps recorded
    where it did not end); the last column, the curves' best. Items in only one of the two are left out (and
    counted in the last line)."""
    by_label = {it["label"]: it for it in base}
    rows, unmatched = {}, 0
    for it in items:
        b = by_label.get(it["label"])
        if b is None:
            unmatched += 1
            continue
        curves = [(np.array(rec["curve"]), rec["n_held"]) for rec in (b, it)]
        row = {"best": (curves[1][0][:, 3].max() - curves[0][0][:, 3].max(),
                        *(int(np.argmax(c[:, 3])) + 1 for c, _ in curves))}
        for name, r in rules.items():
            (pb, eb), (pv, ev) = (replay(c[:, 1], n_held=n, **r) for c, n in curves)
            row[name] = (curves[1][0][pv, 3] - curves[0][0][pb, 3],
                         *(len(c) if e is None else e + 1 for (c, _), e in zip(curves, (eb, ev))))
        rows.setdefault(group_of(it["label"]), []).append(row)
    out = group_table(rows, [*rules, "best"], lambda rs, n: (
        f"{np.mean([r[n][0] for r in rs]):+.2f} / {min(r[n][0] for r in rs):+.2f}, "
        f"{np.mean([r[n][1] for r in rs]):.0f} -> {np.mean([r[n][2] for r in rs]):.0f} steps"))
    if unmatched:
        out.append(f"({unmatched} item(s) with no run of the same label in --against, left out)")
    return out


def line(rec: dict, names: list[str]) -> str:
    cells = " | ".join(f"{n} {rec['rules'][n]['psnr_db']:.2f}@{rec['rules'][n]['step']}" for n in names)
    b = rec["best_blended"]
    return (f"{rec['label']}: {cells} | best {b['psnr_db']:.2f}@{b['step']} | FISTA {rec['fista']['psnr_db']:.2f}"
            f" | {rec['steps_run']} steps, {rec['runtime_s']:.0f} s")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replay:
        import json  # noqa: PLC0415

        import gzip  # noqa: PLC0415

        def load(paths):
            return [it for path in paths for it in json.loads(
                gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_text())["items"]]

        items = load(args.replay)
        if args.against:
            print("PSNR of the image returned, dB, these runs minus --against's: mean / worst per group; steps base -> these")
            print("\n".join(compare(items, load(args.against), args.parsed_rules)))
            return 0
        print("PSNR of the image returned, dB, against the least held-out residual's: mean / worst per group")
        print("\n".join(summarise(items, args.parsed_rules)))
        return 0
    import torch  # noqa: PLC0415

    import cusim  # noqa: PLC0415
    from cusim.importers import import_paper  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or C.RESULTS / f"{NAME}-cpu.json"
    names = list(args.parsed_rules)
    payload = {"benchmark": NAME, "command": "python -m benchmarks.stop_rules " + " ".join(argv or sys.argv[1:]),
               "settings": {"crop": args.crop, "sim_size": args.sim_size, "rules": args.parsed_rules,
                            "cap": args.cap, "min_run": args.min_run, "pinn_params": args.pinn_params},
               "environment": C.environment("cpu", "float32"), "items": []}
    for item in args.parsed:
        if item[0] == "sim":
            _, snr, seed, phantom = item
            n = args.sim_size
            ds = cusim.simulate(phantom=phantom, shape=(n, n), upsample=2, snr=snr, seed=seed, device="cpu")
            label = f"sim SNR {snr:g} seed {seed}" + ("" if phantom == "filaments" else f" {phantom}")
        else:
            _, name, sample = item
            ds = import_paper(args.data / name, sample).crop_center(args.crop)
            label = f"{name} #{sample}"
        rec = run_item(ds, args, label)
        payload["items"].append(rec)
        write_json_atomic(out, payload)
        print(line(rec, names), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
