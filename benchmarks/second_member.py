"""Which second network makes the better pair? (issue 19 experiment, from ``benchmarks.blend``'s cache)

    python -m benchmarks.second_member --items SIM/microtubules:1 ... --pinn-param stop=validation \\
        --second seed=1,blend=none --second input=widefield [--markdown OUT.md]

Per item: the first network is ``benchmarks.blend``'s cached run with ``--pinn-param``; each ``--second`` names
another cached run, the first one's settings updated by its KEY=VALUE pairs. Every arm is blended with the
item's FISTA + TV image at ``--weight`` / ``--sigma`` (the default blend, ``cusim.recon.pinn.blend_images``):
"one network" is the first network alone; each pair is the plain mean of the first network's image and the
second's (what ``ensemble=2`` computes from its two members: tests/test_pinn.py), then blended. Scored like
``benchmarks.blend`` (least-squares fit to the min-max normalised truth, 10 px border). Nothing runs here: a
missing run is one line and exit 1 (run it with ``python -m benchmarks.blend --items ... --pinn-param ...``).

The tables give FISTA + TV's and each arm's PSNR dB / SSIM and, per pair after the first, its difference to the
first pair, then the first pair's differences to one network and to FISTA + TV; the means are per set and per
pattern family (the part of the set's name before "/").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks import _common as C
from benchmarks.blend import _tag, images
from benchmarks.quality import DATA, kv_params, quality
from cusim.recon.pinn import blend_images


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.second_member", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--items", nargs="+", required=True, metavar="SET:SAMPLE")
    ap.add_argument("--crop", type=int, default=240)
    ap.add_argument("--cache", type=Path, default=C.RESULTS / "blend-cache")
    ap.add_argument("--pinn-param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--second", action="append", required=True, metavar="KEY=VALUE[,KEY=VALUE]",
                    help="the second network of a pair: the first run's settings updated by these (repeatable)")
    ap.add_argument("--weight", type=float, default=0.5)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args(argv)

    args.pinn_params = kv_params(ap, "--pinn-param", args.pinn_param)
    args.seconds = [{**args.pinn_params, **kv_params(ap, "--second", s.split(","))} for s in args.second]
    for s, p in zip(args.second, args.seconds):
        if _tag(p) == _tag(args.pinn_params):
            ap.error(f"--second {s}: the first network's own settings; expected another run")
    args.no_run = True
    return args


def _run(args, params: dict, name: str, sample: int) -> dict:
    return images(name, sample, argparse.Namespace(**{**vars(args), "pinn_params": params}))


def rows(args) -> list[dict]:
    out = []
    for item in args.items:
        name, _, sample = item.rpartition(":")
        first = _run(args, args.pinn_params, name, int(sample))
        truth, fista = first["truth"].astype(np.float64), first["fista"]
        p0 = first["pinn"].astype(np.float64)

        def scored(img):
            return quality(blend_images(img, fista, args.weight, sigma=args.sigma).astype(np.float64), truth)

        r = {"set": name, "sample": int(sample), "fista": quality(fista.astype(np.float64), truth),
             "arms": [scored(p0)], "steps": [int(first["pinn_steps"])]}
        for p in args.seconds:
            second = _run(args, p, name, int(sample))
            r["arms"].append(scored((p0 + second["pinn"].astype(np.float64)) / 2))
            r["steps"].append(int(second["pinn_steps"]))
        out.append(r)
    return out


def markdown(args, rs: list[dict]) -> str:
    arms = ["one network"] + [f"pair with {s}" for s in args.second]
    diffs = [f"{a} - {arms[1]}" for a in arms[2:]] + [f"{arms[1]} - one network", f"{arms[1]} - FISTA + TV"]

    def d(r):  # the differences, in the order of ``diffs``
        return [a["psnr_db"] - r["arms"][1]["psnr_db"] for a in r["arms"][2:]] + \
            [r["arms"][1]["psnr_db"] - r["arms"][0]["psnr_db"], r["arms"][1]["psnr_db"] - r["fista"]["psnr_db"]]

    lines = ["| set | sample | FISTA + TV | " + " | ".join(arms) + " | " + " | ".join(diffs) + " | steps |",
             "|" + " --- |" * (4 + len(arms) + len(diffs))]
    for r in rs:
        lines.append(f"| {r['set']} | {r['sample']} | {r['fista']['psnr_db']:.2f} / {r['fista']['ssim']:.3f} | "
                     + " | ".join(f"{a['psnr_db']:.2f} / {a['ssim']:.3f}" for a in r["arms"]) + " | "
                     + " | ".join(f"{x:+.2f}" for x in d(r)) + " | " + " / ".join(map(str, r["steps"])) + " |")
    groups = {}
    for r in rs:
        groups.setdefault(r["set"], []).append(r)
    families = {}
    for r in rs:
        families.setdefault(r["set"].split("/")[0] + " (family)", []).append(r)
    if len(families) < len(groups):
        groups.update(families)
    lines += ["", "Means (PSNR dB / SSIM); the differences' means, worst in brackets:", "",
              "| group | items | FISTA + TV | " + " | ".join(arms) + " | " + " | ".join(diffs) + " |",
              "|" + " --- |" * (3 + len(arms) + len(diffs))]
    for g, grs in groups.items():
        cells = [f"{np.mean([r['fista']['psnr_db'] for r in grs]):.2f} / "
                 f"{np.mean([r['fista']['ssim'] for r in grs]):.3f}"]
        cells += [f"{np.mean([r['arms'][i]['psnr_db'] for r in grs]):.2f} / "
                  f"{np.mean([r['arms'][i]['ssim'] for r in grs]):.3f}" for i in range(len(arms))]
        dd = np.array([d(r) for r in grs])
        cells += [f"{dd[:, j].mean():+.2f} ({dd[:, j].min():+.2f})" for j in range(len(diffs))]
        lines.append(f"| {g} | {len(grs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        rs = rows(args)
    except FileNotFoundError as e:
        path = str(e).split(":")[0]
        print(f"error: {path}: not cached; run it first with python -m benchmarks.blend --items SET:SAMPLE "
              "--pinn-param KEY=VALUE ... (the first run's settings and the pair's)", file=sys.stderr)
        return 1
    text = markdown(args, rs)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
        print(f"markdown: {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
