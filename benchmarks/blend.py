"""Does averaging the PINN's image with FISTA + TV's beat both? (issue 19 experiment)

    python -m benchmarks.blend --items NL_SIM/ccp:1 SIM/microtubules:2 sim/linear:10 ... [--crop 240] [--cache DIR]
        [--pinn-param KEY=VALUE ...] [--weights 0.25 0.5 0.75] [--sigmas 1] [--ensemble-seeds 1 ...] [--out JSON]

Per item (the central ``--crop`` of a PINN-paper sample, the protocol of ``benchmarks.quality``): cusim's default
PINN and its default FISTA + TV (both with their default margin), each image kept in ``--cache`` (an ``.npz`` per
item and PINN setting, so a rerun only scores). Then the blends ``w * P' + (1 - w) * F`` of
``cusim.recon.pinn.blend_images`` (what ``--blend iterative --blend-weight w`` returns from the same two images),
where ``P'`` is the PINN image mapped onto FISTA's by a least-squares scale and offset over the interior (the
PINN's image has the scale of its closed-form gain; nothing of the ground truth is used to blend), each scored like the methods
themselves (least-squares fit to the ground truth, 10 px border, PSNR / SSIM / FRC 0.5).
An item ``sim/<family>:<snr>`` is ``cusim.simulate``'s 128 x 128 filaments of that pattern family at that SNR (seed 7).

With ``--ensemble-seeds 1 ...`` the networks of those seeds (each run once and cached like the first) join it: the
ensemble ``ens<N>`` is the mean of the N networks' images, which is what ``ensemble=N`` computes (its members are
the separate runs: tests/test_pinn.py), scored alone and blended like one network's image.

With ``--pinn-param blend=iterative`` the PINN run blends itself: its PINN part is scored as ``pinn`` and its image
as ``run_blend``; ``fista`` is FISTA + TV at its defaults.

With ``--versus [KEY=VALUE ...]`` each item is also scored for a second PINN setting (no values: the default run;
cached or run like the first), and ``--markdown`` writes this run minus that one per sample and per set: the
image returned, the network's image alone, every scored blend against the other run's image returned, and
the ratio of the steps run. E.g. a stopping rule against the default, from the cache alone::

    python -m benchmarks.blend --items SIM/microtubules:1 ... --pinn-param stop=validation --weights 0.5 \
        --sigmas 1 --versus --no-run --markdown stop.md

With ``--versus-table MD`` the other run is a recorded one: its scores per sample come from a per-sample table
``--markdown`` wrote (``--versus-column``: the image returned, default "default PINN"; the network's image from
the "PINN alone" column where there is one; no steps), e.g. ``benchmarks/results/heldout_default-cpu.md``, the
default PINN on the held-out samples 6-10, so a new setting there needs only its own runs. ``--peers-table MD``
does the same for ``--peers``: the paper's method's scores from such a table's "paper's method" column, so the
per-sample table (without ``--versus``) differences every image to the better of it and FISTA + TV. Both may
be given: the recorded samples from the table, newer runs from the JSON (which wins where both have a sample).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import _common as C
from benchmarks.quality import BORDER, DATA, kv_params, quality, steps_for, write_json_atomic
from cusim.recon.pinn import blend_images

NAME = "blend"
SIM_SHAPE, SIM_SEED = (128, 128), 7


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.blend", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--items", nargs="+", required=True, metavar="SET:SAMPLE")
    ap.add_argument("--crop", type=int, default=240)
    ap.add_argument("--steps", type=int, default=None, help="PINN step cap; default the paper's (1000, LPSIM 1500)")
    ap.add_argument("--pinn-param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--weights", nargs="+", type=float, default=[0.25, 0.5, 0.75])
    ap.add_argument("--sigmas", nargs="+", type=float, default=[],
                    help="also score every weight with the blend's low-pass of these widths (--blend-sigma)")
    ap.add_argument("--cache", type=Path, default=C.RESULTS / "blend-cache")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-run", action="store_true", help="score the cached images only")
    ap.add_argument("--markdown", type=Path, default=None, help="write the per-sample and per-set tables here")
    ap.add_argument("--analyse", action="store_true",
                    help="also print where each method's error lies: dark / mid / bright pixels of the truth, and "
                         "frequency bands (Hann-windowed error power and the two errors' correlation per band)")
    ap.add_argument("--ensemble-seeds", nargs="+", type=int, default=[], metavar="SEED",
                    help="also score the ensemble of the PINN run with the network runs of these seeds (each its own "
                         "cached run with seed=SEED, blend=none): the mean of the networks' images (what ensemble=N "
                         "returns unblended), and that mean blended with FISTA + TV at every weight and sigma")
    ap.add_argument("--peers", nargs="+", type=Path, default=[], metavar="JSON",
                    help="benchmarks.quality JSON (same crop) whose 'paper' runs join the tables as the paper's method; "
                         "the difference columns are then to the better of it and FISTA + TV")
    ap.add_argument("--peers-table", type=Path, default=None, metavar="MD",
                    help="like --peers, but the paper's method's scores come from --peers-column of a per-sample "
                         "markdown table, e.g. benchmarks/results/heldout_default-cpu.md (samples it has no score "
                         "for stay without one); with --peers too, a sample the JSON has takes the JSON's score")
    ap.add_argument("--peers-column", default="paper's method",
                    help="--peers-table's column of the paper's method (default: %(default)s)")
    ap.add_argument("--versus", nargs="*", default=None, metavar="KEY=VALUE",
                    help="also score the PINN run with these --pinn-param values instead (none: the default run), "
                         "and tabulate this run minus that one (--markdown)")
    ap.add_argument("--versus-table", type=Path, default=None, metavar="MD",
                    help="like --versus, but the other run's scores come from a per-sample table a --markdown run "
                         "wrote (columns set, sample and 'PSNR / SSIM' cells), e.g. a recorded default run")
    ap.add_argument("--versus-column", default="default PINN",
                    help="--versus-table's column of the image returned (default: %(default)s); its network's "
                         "image is the column named 'PINN alone ...' where there is one")
    args = ap.parse_args(argv)
    if args.versus_table is not None:
        if args.versus is not None:
            ap.error("--versus-table: give it or --versus, not both")
        if not args.versus_table.is_file():
            ap.error(f"--versus-table: {args.versus_table}: no such file (a per-sample table of --markdown)")
    for path in args.peers:
        if not path.is_file():
            ap.error(f"--peers: {path}: no such file (a benchmarks.quality JSON)")
    if args.peers_table is not None:
        if not args.peers_table.is_file():
            ap.error(f"--peers-table: {args.peers_table}: no such file (a per-sample markdown table)")
    args.pinn_params = kv_params(ap, "--pinn-param", args.pinn_param)
    args.versus_params = None if args.versus is None else kv_params(ap, "--versus", args.versus)
    if args.versus_params is not None and _tag(args.versus_params) == _tag(args.pinn_params):
        ap.error(f"--versus: the same PINN setting as the run itself ({_tag(args.pinn_params)}); expected another")
    base = args.pinn_params.get("seed", 0)
    if base in args.ensemble_seeds or len(set(args.ensemble_seeds)) < len(args.ensemble_seeds):
        ap.error(f"--ensemble-seeds: expected seeds other than the run's own ({base}) and each once, "
                 f"got {args.ensemble_seeds}")
    return args


def _tag(params: dict) -> str:
    return "default" if not params else "_".join(f"{k}-{v}" for k, v in sorted(params.items()))


def _dataset(name: str, sample: int, args, seed: int = SIM_SEED):
    import cusim  # noqa: PLC0415
    from cusim.importers import import_paper  # noqa: PLC0415

    if name.startswith("sim/"):  # cusim simulate's filaments, 128 x 128 fine, 2x, at SNR ``sample``, seed 7
        return cusim.simulate(shape=SIM_SHAPE, family=name[4:], snr=float(sample), seed=seed)
    return import_paper(args.data / name, sample).crop_center(args.crop)


def _save(path: Path, out: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)


def images(name: str, sample: int, args) -> dict:
    """The item's PINN, FISTA + TV and widefield images and its truth, from the cache or computed (and cached);
    the widefield image (cheap) is added to a cache that lacks it, also with ``--no-run``."""
    import cusim  # noqa: PLC0415
    from cusim.recon.config import PINNConfig  # noqa: PLC0415

    sim = name.startswith("sim/")
    stem = f"sim_{name[4:]}_snr{sample}" if sim else f"{name.replace('/', '_')}_{sample}_crop{args.crop}"
    # --steps is part of the key: a cap of 5 steps cached was reused for --steps 60 (the JSON said 60)
    cap = getattr(args, "steps", None)  # callers of other benchmarks (second_member) pass no --steps
    path = args.cache / f"{stem}_{_tag(args.pinn_params)}{f'_steps{cap}' if cap else ''}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
        if "widefield" not in out:
            out["widefield"] = np.asarray(cusim.reconstruct(_dataset(name, sample, args), "widefield").image,
                                          np.float32)
            _save(path, out)
        return out
    if args.no_run:
        raise FileNotFoundError(f"{path}: not cached (run without --no-run)")
    ds = _dataset(name, sample, args)
    steps = cap or (PINNConfig.steps if sim else steps_for(name, argparse.Namespace(steps=None)))
    t0 = time.perf_counter()
    pinn = cusim.reconstruct(ds, "pinn", device="cpu", steps=steps, **args.pinn_params)
    t1 = time.perf_counter()
    fista = cusim.reconstruct(ds, "iterative", device="cpu")
    t2 = time.perf_counter()
    blended = {}
    if "blend_parts" in pinn.extra:  # a blended run: its PINN part is the PINN, its image the blend
        blended = {"blended": np.asarray(pinn.image, np.float32)}
        pinn.image = pinn.extra["blend_parts"]["pinn"]
    out = {"pinn": np.asarray(pinn.image, np.float32), "fista": np.asarray(fista.image, np.float32), **blended,
           "widefield": np.asarray(cusim.reconstruct(ds, "widefield").image, np.float32),
           "truth": np.asarray(ds.ground_truth, np.float32),
           "pinn_steps": np.int64(pinn.extra.get("steps_run", 0)), "pinn_s": np.float64(t1 - t0),
           "fista_s": np.float64(t2 - t1)}
    _save(path, out)
    return out


def members(name: str, sample: int, args) -> list[np.ndarray]:
    """The network images (blend none) of the same item for every seed of ``--ensemble-seeds``, each from its own
    cached run (``--pinn-param`` plus ``seed`` and ``blend=none``); empty where one is not cached under
    ``--no-run`` (the row then has no ensemble)."""
    out = []
    for seed in args.ensemble_seeds:
        sub = argparse.Namespace(**{**vars(args), "pinn_params": {**args.pinn_params, "seed": seed, "blend": "none"}})
        try:
            out.append(images(name, sample, sub)["pinn"])
        except FileNotFoundError:
            return []
    return out


def score(im: dict, weights: list[float], sigmas: list[float] = (), others: list[np.ndarray] = ()) -> dict:
    """PSNR / SSIM / FRC of every image of an item: widefield, pinn, fista, the blends ``blend{w}`` and
    ``blend{w}s{sigma}``, the run's own blend; with ``others`` (further networks' images of the same item) the
    ensemble ``ens{N}``, the mean of the N networks' images, and its blends ``ens{N}_blend{w}[s{sigma}]``."""
    truth = im["truth"].astype(np.float64)
    p, f = im["pinn"].astype(np.float64), im["fista"].astype(np.float64)
    res = {"widefield": quality(im["widefield"].astype(np.float64), truth), "pinn": quality(p, truth),
           "fista": quality(f, truth)}
    images = {"": p}
    if len(others):  # what ensemble=N returns before its blend: the mean of the members' images
        images[f"ens{len(others) + 1}_"] = np.mean([p, *(o.astype(np.float64) for o in others)], axis=0)
        res[f"ens{len(others) + 1}"] = quality(images[f"ens{len(others) + 1}_"], truth)
    for tag, q in images.items():
        for w in weights:  # the arithmetic of cusim run --method pinn --blend iterative --blend-weight w
            res[f"{tag}blend{w:g}"] = quality(blend_images(q, f, w).astype(np.float64), truth)
            for sg in sigmas:  # ... with --blend-sigma sg
                res[f"{tag}blend{w:g}s{sg:g}"] = quality(blend_images(q, f, w, sigma=sg).astype(np.float64), truth)
    if "blended" in im:  # the run's own blend (a --pinn-param blend=iterative run)
        res["run_blend"] = quality(im["blended"].astype(np.float64), truth)
    return res


BANDS = (0.0, 0.02, 0.05, 0.08, 0.11, 0.14, 0.2, 0.3, 0.5, 0.75)  # cycles per fine pixel (radial)


def analyse(im: dict) -> list[str]:
    """Where the PINN's and FISTA's errors lie (both fitted to the min-max normalised truth as the metrics fit
    them, 10 px border off): mean square error on the truth's dark (< 0.05), mid and bright (>= 0.3) pixels,
    and per radial frequency band the error power of each and the correlation of the two errors (a blend
    gains where that correlation is low)."""
    from cusim.metrics import normalise  # noqa: PLC0415

    p, tt = normalise(im["pinn"], im["truth"], "lstsq", crop=BORDER)
    f, _ = normalise(im["fista"], im["truth"], "lstsq", crop=BORDER)
    ep, ef = p - tt, f - tt
    lines = []
    for name, m in (("dark", tt < 0.05), ("mid", (tt >= 0.05) & (tt < 0.3)), ("bright", tt >= 0.3)):
        lines.append(f"  {name:6s} pixels {m.mean():5.1%}: MSE pinn {np.mean(ep[m] ** 2):.2e}, fista "
                     f"{np.mean(ef[m] ** 2):.2e}")
    win = np.outer(np.hanning(tt.shape[0]), np.hanning(tt.shape[1]))
    r = np.hypot(np.fft.fftfreq(tt.shape[0])[:, None], np.fft.fftfreq(tt.shape[1])[None, :])
    fp, ff = np.fft.fft2(ep * win), np.fft.fft2(ef * win)
    sp, sf, x = np.abs(fp) ** 2, np.abs(ff) ** 2, np.real(fp * np.conj(ff))
    for lo, hi in zip(BANDS[:-1], BANDS[1:]):
        m = (r >= lo) & (r < hi)
        lines.append(f"  |f| {lo:.2f}-{hi:.2f}: error power pinn {sp[m].sum():9.3g}, fista {sf[m].sum():9.3g}, "
                     f"pinn/fista {sp[m].sum() / sf[m].sum():5.2f}, correlation {x[m].sum() / np.sqrt(sp[m].sum() * sf[m].sum()):+.2f}")
    return lines


PEERS = ("widefield", "fista", "paper")  # columns scored against, not differenced


def add_peers(rows: list[dict], paths: list[Path], crop: int) -> None:
    """Each row's ``"paper"``: the paper's method on the same set, sample and crop in a ``benchmarks.quality`` JSON
    (the same scoring, :func:`benchmarks.quality.quality`); rows it did not run stay without one."""
    runs = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for rec in data.get("samples", []):
            got = rec["methods"].get("paper")
            if rec.get("crop") == crop and got and "psnr_db" in got:
                runs[(rec["set"], int(rec["sample"]))] = got
    for r in rows:
        if (r["set"], r["sample"]) in runs:
            r["paper"] = runs[(r["set"], r["sample"])]


def _best_peer(r: dict) -> float:
    return max(r[k]["psnr_db"] for k in ("fista", "paper") if k in r)


def markdown(rows: list[dict]) -> str:
    """Per sample PSNR dB / SSIM of every image, each against FISTA + TV (or, where the paper's method ran, the
    better of the two); per set the means. A cell is "-" where the sample has no such image."""
    keys = list(dict.fromkeys(k for r in rows for k in r if isinstance(r[k], dict) and k != "versus"))
    peer = "best peer" if "paper" in keys else "fista"
    diffs = [k for k in keys if k not in PEERS]

    def cell(r, k):
        return f"{r[k]['psnr_db']:.2f} / {r[k]['ssim']:.3f}" if k in r else "-"

    head = "| set | sample | " + " | ".join(keys) + " | " + " | ".join(f"{k} - {peer}" for k in diffs) + " |"
    lines = [head, "|" + " --- |" * (2 + len(keys) + len(diffs))]
    for r in rows:
        b = _best_peer(r)
        lines.append(f"| {r['set']} | {r['sample']} | " + " | ".join(cell(r, k) for k in keys) + " | "
                     + " | ".join(f"{r[k]['psnr_db'] - b:+.2f}" if k in r else "-" for k in diffs) + " |")
    lines += ["", f"Means per set (PSNR dB / SSIM); in brackets the mean difference to the {peer} and the worst "
              "sample's; a column some samples lack averages the samples it has (their count in brackets):",
              "", "| set | samples | " + " | ".join(keys) + " |", "|" + " --- |" * (2 + len(keys))]
    for name in dict.fromkeys(r["set"] for r in rows):
        rs = [r for r in rows if r["set"] == name]
        cells = []
        for k in keys:
            have = [r for r in rs if k in r]
            if not have:
                cells.append("-")
                continue
            d = [r[k]["psnr_db"] - _best_peer(r) for r in have]
            extra = "" if k in PEERS else f" ({np.mean(d):+.2f}; worst {min(d):+.2f})"
            extra += "" if len(have) == len(rs) else f" ({len(have)} of {len(rs)})"
            cells.append(f"{np.mean([r[k]['psnr_db'] for r in have]):.2f} / "
                         f"{np.mean([r[k]['ssim'] for r in have]):.3f}" + extra)
        lines.append(f"| {name} | {', '.join(str(r['sample']) for r in rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch  # noqa: PLC0415

    torch.manual_seed(0)
    items = [(name, int(sample)) for name, _, sample in (item.rpartition(":") for item in args.items)]

    def recorded(option: str, read, path: Path, column: str) -> dict | None:  # a table, or None and one line
        try:
            return read(path, column)
        except ValueError as e:
            print(f"error: {option}: {e}", file=sys.stderr)
            return None

    table = paper = None
    if args.versus_table is not None:
        if (table := recorded("--versus-table", read_table, args.versus_table, args.versus_column)) is None:
            return 1
        missing = [f"{name}:{sample}" for name, sample in items if (name, sample) not in table]
        if missing:
            print(f"error: --versus-table: {args.versus_table} has no {args.versus_column!r} score for "
                  f"{', '.join(missing)}", file=sys.stderr)
            return 1
    if args.peers_table is not None:
        if (paper := recorded("--peers-table", table_column, args.peers_table, args.peers_column)) is None:
            return 1
    rows = []
    for name, sample in items:
        im = images(name, sample, args)
        s = score(im, args.weights, args.sigmas, members(name, sample, args))
        rows.append({"set": name, "sample": sample, "pinn_steps": int(im["pinn_steps"]),
                     "pinn_s": float(im["pinn_s"]), **s})
        if args.versus_params is not None:
            vim = images(name, sample, argparse.Namespace(**{**vars(args), "pinn_params": args.versus_params}))
            rows[-1]["versus"] = {"pinn_steps": int(vim["pinn_steps"]), "pinn_s": float(vim["pinn_s"]),
                                  **score(vim, [], [])}
        elif table is not None:
            rows[-1]["versus"] = table[(name, sample)]
        line = "  ".join(f"{k} {v['psnr_db']:.2f}/{v['ssim']:.3f}" for k, v in s.items())
        print(f"{name} #{sample} ({int(im['pinn_steps'])} steps, {float(im['pinn_s']):.0f} s): {line}", flush=True)
        if args.analyse:
            print("\n".join(analyse(im)))
    for r in rows if paper else ():
        if (r["set"], r["sample"]) in paper:
            r["paper"] = paper[(r["set"], r["sample"])]
    add_peers(rows, args.peers, args.crop)  # after the recorded table: --peers' own runs win
    keys = [k for k in rows[0] if isinstance(rows[0][k], dict) and k != "versus" and all(k in r for r in rows)]
    print("\nmean PSNR / SSIM per set, and the difference to the better of pinn and fista:")
    for name in dict.fromkeys(r["set"] for r in rows):
        rs = [r for r in rows if r["set"] == name]
        means = {k: (np.mean([r[k]["psnr_db"] for r in rs]), np.mean([r[k]["ssim"] for r in rs])) for k in keys}
        best = max(means["pinn"][0], means["fista"][0])
        print(f"{name} ({len(rs)}): " + "  ".join(f"{k} {m[0]:.2f}/{m[1]:.3f} ({m[0] - best:+.2f})"
                                                   for k, m in means.items()))
    if args.markdown:
        args.markdown.write_text(markdown(rows) if "versus" not in rows[0] else versus_markdown(rows))
        print(f"markdown: {args.markdown}")
    if args.out:
        write_json_atomic(args.out, {"benchmark": NAME, "command": "python -m benchmarks.blend " + " ".join(
            argv if argv is not None else sys.argv[1:]), "crop": args.crop, "pinn_params": args.pinn_params,
            "versus_params": args.versus_params,
            "versus_table": None if table is None else [str(args.versus_table), args.versus_column],
            "environment": C.environment("cpu", "float32"), "rows": rows})
    return 0


def _table_rows(path: Path, column: str) -> tuple[list[str], list[dict]]:
    """The header and the rows (column name -> cell) of the first per-sample table of a markdown file (the format
    of :func:`markdown`; ``**`` around a column name is ignored). Raises ValueError naming the file where it has
    no such table, or no ``column``."""
    lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
    start = next((i for i, ln in enumerate(lines) if ln.startswith("| set | sample |")), None)
    if start is None:
        raise ValueError(f"{path}: no per-sample table (a line starting '| set | sample |')")
    head = [c.strip().strip("*").strip() for c in lines[start].strip("|").split("|")]
    if column not in head:
        raise ValueError(f"{path}: no column {column!r} in its per-sample table; it has {head[2:]}")
    rows = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        rows.append(dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))))
    return head, rows


def _cell_score(cell: str) -> dict | None:
    """A 'PSNR / SSIM' cell as ``{"psnr_db", "ssim"}``; None for '-'."""
    psnr, sep, ssim = cell.partition("/")
    return {"psnr_db": float(psnr), "ssim": float(ssim)} if sep else None


def table_column(path: Path, column: str) -> dict:
    """The scores in ``column`` of a per-sample markdown table: ``{(set, sample): {"psnr_db", "ssim"}}``, only
    the samples that have one."""
    _, rows = _table_rows(path, column)
    return {(c["set"], int(c["sample"])): q for c in rows if (q := _cell_score(c[column]))}


def read_table(path: Path, column: str) -> dict:
    """The scores of ``column`` (the image returned) and of the network alone (a column named ``PINN alone ...``,
    or ``pinn`` as this script's own tables name it, where there is one) per ``(set, sample)`` in the first
    per-sample table of a markdown file:
    ``{(set, sample): {"run_blend": {...}, "pinn": {...}, "pinn_steps": None}}``, each score
    ``{"psnr_db", "ssim"}``. Raises ValueError naming the file where it has no such table or column."""
    head, rows = _table_rows(path, column)
    net = next((c for c in head if (c.startswith("PINN alone") or c == "pinn") and " - " not in c), None)
    out = {}
    for cells in rows:
        rec = {"run_blend": _cell_score(cells[column]), "pinn_steps": None}
        if net and _cell_score(cells[net]):
            rec["pinn"] = _cell_score(cells[net])
        if rec["run_blend"]:
            out[(cells["set"], int(cells["sample"]))] = rec
    return out


def _returned(r: dict) -> dict:
    """The scores of the image ``cusim run --method pinn`` returned: the run's own blend, else the network's."""
    return r["run_blend"] if "run_blend" in r else r["pinn"]  # a recorded run may lack its network's image


def versus_markdown(rows: list[dict]) -> str:
    """This run against ``--versus``'s, per sample and per set: PSNR dB / SSIM of the network's image alone and of
    the image returned, and steps, for each; the differences (this run minus the other) of the image returned,
    the network's image and every scored blend (``blend{w}[s{sigma}]``, against the other's image returned);
    the ratio of the steps run. Per set and over all rows: the mean difference (the worst sample's in brackets)."""
    blends = [k for k in rows[0] if k.startswith("blend") and all(k in r for r in rows)]

    def both(q, steps):  # a recorded run (--versus-table) may lack its network's image and its steps: "-"
        net = f"{q['pinn']['psnr_db']:.2f}" if "pinn" in q else "-"
        return f"{net} / {_returned(q)['psnr_db']:.2f} / {_returned(q)['ssim']:.3f}, {'-' if steps is None else steps}"

    def diffs(r):
        v = r["versus"]
        d = {"returned": _returned(r)["psnr_db"] - _returned(v)["psnr_db"],
             "ssim": _returned(r)["ssim"] - _returned(v)["ssim"],
             "pinn": r["pinn"]["psnr_db"] - v["pinn"]["psnr_db"] if "pinn" in v else None,
             "steps": None if v["pinn_steps"] is None else r["pinn_steps"] / max(v["pinn_steps"], 1)}
        d.update({k: r[k]["psnr_db"] - _returned(v)["psnr_db"] for k in blends})
        return d

    def fmt(x, spec):
        return "-" if x is None else f"{x:{spec}}"

    lines = ["| set | sample | other: network / returned (PSNR dB / SSIM), steps | this run: the same | returned: "
             "this - other (dB / SSIM) | network alone (dB) | steps ratio |", "|" + " --- |" * 7]
    for r in rows:
        d = diffs(r)
        lines.append(f"| {r['set']} | {r['sample']} | {both(r['versus'], r['versus']['pinn_steps'])} | "
                     f"{both(r, r['pinn_steps'])} | {d['returned']:+.2f} / {d['ssim']:+.4f} | {fmt(d['pinn'], '+.2f')} | "
                     f"{fmt(d['steps'], '.1f')} |")
    lines += ["", "Means (the worst sample in brackets); each blend column is that blend of this run's images minus "
              "the other run's image returned:", "",
              "| set | samples | returned: this - other dB | SSIM | network alone dB | steps ratio | "
              + " | ".join(blends) + " |", "|" + " --- |" * (6 + len(blends))]
    groups = {name: [r for r in rows if r["set"] == name] for name in dict.fromkeys(r["set"] for r in rows)}
    if len(groups) > 1:
        groups["all"] = rows
    for name, rs in groups.items():
        ds = [diffs(r) for r in rs]

        def mean(k, spec="+.2f", worst=True):  # over the samples that have it ("-" where none has)
            v = [d[k] for d in ds if d[k] is not None]
            if not v:
                return "-"
            return (f"{np.mean(v):{spec}}" + (f" ({min(v):{spec}})" if worst else "")
                    + ("" if len(v) == len(ds) else f" ({len(v)} of {len(ds)})"))

        lines.append(f"| {name} | {len(rs)} | {mean('returned')} | {mean('ssim', '+.4f', False)} | "
                     f"{mean('pinn', worst=False)} | {mean('steps', '.1f', False)} | "
                     + " | ".join(mean(k) for k in blends) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
