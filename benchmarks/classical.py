"""Classical reconstructions on the PINN-paper data: widefield, Wiener, iterative (FISTA+TV, Richardson-Lucy).

    python -m benchmarks.classical [--sets SIM/microtubules ...] [--samples 1 ... 10]
        [--methods widefield wiener fista rl] [--device auto|cpu|cuda] [--markdown FILE]

Protocol of the classical-methods issue: FULL 480 x 480 frames of samples 1-10 of every set of
``../shared/data/pinn-sim-paper`` (known patterns), the ground truth min-max normalised to [0, 1], the
reconstruction mapped onto it by its least-squares scale and offset, PSNR and SSIM with a 20 px border
left out. Methods with cusim's defaults: ``widefield``; ``wiener`` (parameters fitted to the stored
pattern arrays); ``fista`` = ``iterative`` (FISTA, TV prior, discrepancy stop); ``rl`` = ``iterative``
with ``algorithm="rl"``. Wiener does not apply to the plasmonic lattice (LPSIM): it refuses, recorded.
Bars (SIM/microtubules, every sample): Wiener >= widefield + 3 dB, FISTA+TV >= widefield + 6 dB.
JSON to ``benchmarks/results/classical-<device>.json`` (rewritten after every sample).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import _common as C

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "pinn-sim-paper"
SETS = ["SIM/microtubules", "NL_SIM/ccp", "NL_SIM/er", "NL_SIM/factin", "NL_SIM/microtubules",
        "LPSIM/microtubules"]
METHODS = {"widefield": ("widefield", {}), "wiener": ("wiener", {}), "fista": ("iterative", {}),
           "rl": ("iterative", {"algorithm": "rl", "prior": "none"})}
BORDER = 20
BARS = {"wiener": 3.0, "fista": 6.0}  # dB over widefield, SIM/microtubules, every sample


def score(image, truth) -> dict:
    from cusim import metrics  # noqa: PLC0415

    return {"psnr_db": metrics.psnr(image, truth, norm="lstsq", crop=BORDER),
            "ssim": metrics.ssim(image, truth, norm="lstsq", crop=BORDER)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sets", nargs="+", default=SETS)
    ap.add_argument("--samples", nargs="+", type=int, default=list(range(1, 11)))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args(argv)

    import cusim  # noqa: PLC0415
    from cusim.backend import resolve_device  # noqa: PLC0415
    from cusim.importers import import_paper  # noqa: PLC0415

    device = resolve_device(args.device)
    records = []
    payload = {"benchmark": "classical", "environment": C.environment(device, "float32"),
               "protocol": {"crop": "full 480x480", "border": BORDER, "norm": "lstsq"}, "records": records}
    for set_name in args.sets:
        for n in args.samples:
            ds = import_paper(args.data / set_name, n)
            for m in args.methods:
                method, params = METHODS[m]
                rec = {"set": set_name, "sample": n, "method": m}
                try:
                    t0 = time.perf_counter()
                    res = cusim.reconstruct(ds, method, device=device, **params)
                    rec.update(score(res.image, ds.ground_truth), runtime_s=time.perf_counter() - t0,
                               steps_run=res.extra.get("steps_run"), stop=res.extra.get("stop_reason"))
                except ValueError as e:  # e.g. Wiener on the plasmonic lattice
                    rec["refused"] = str(e)
                records.append(rec)
                print(f"{set_name} {n} {m}: " + (f"{rec['psnr_db']:.2f} dB / {rec['ssim']:.3f} "
                      f"({rec['runtime_s']:.1f} s)" if "psnr_db" in rec else f"refused: {rec['refused']}"), flush=True)
            C.write_json("classical", device, payload)
    md = markdown(records, args.sets, args.methods)
    print(md)
    if args.markdown:
        args.markdown.write_text(md)
    return 0 if all(line.startswith("PASS") for line in bar_lines(records)) else 1


def _by(records, set_name, method):
    return [r for r in records if r["set"] == set_name and r["method"] == method and "psnr_db" in r]


def bar_lines(records) -> list[str]:
    out = []
    wf = {r["sample"]: r["psnr_db"] for r in _by(records, "SIM/microtubules", "widefield")}
    for m, want in BARS.items():
        gains = [r["psnr_db"] - wf[r["sample"]] for r in _by(records, "SIM/microtubules", m) if r["sample"] in wf]
        if gains:
            ok = min(gains) >= want
            out.append(f"{'PASS' if ok else 'MISS'} SIM/microtubules {m} - widefield: min {min(gains):+.2f} dB, "
                       f"mean {np.mean(gains):+.2f} dB over {len(gains)} samples (want >= +{want:g} on every sample)")
    return out


def markdown(records, sets, methods) -> str:
    lines = ["| set | samples | " + " | ".join(f"{m} PSNR / SSIM" for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for s in sets:
        cells = []
        for m in methods:
            rs = _by(records, s, m)
            refused = [r for r in records if r["set"] == s and r["method"] == m and "refused" in r]
            cells.append(f"{np.mean([r['psnr_db'] for r in rs]):.2f} / {np.mean([r['ssim'] for r in rs]):.3f}"
                         if rs else ("refused" if refused else "-"))
        n = len({r["sample"] for r in records if r["set"] == s})
        lines.append(f"| {s} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + bar_lines(records)) + "\n"


if __name__ == "__main__":
    sys.exit(main())
