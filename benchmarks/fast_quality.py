"""Is quality traded for speed? cusim's fast PINN step against its float32 step, same seed.

    python -m benchmarks.fast_quality [--samples 1 2 3] [--crop 240] [--device cpu|cuda] [--seed 0]

Issue 6's bar: on SIM/microtubules samples 1-3 the fast path's PSNR is within 0.2 dB of the float32
path's with the same seed. Both run ``cusim.reconstruct(ds, "pinn")`` with the defaults (1000 steps at
most, the discrepancy stop); the fast one adds :data:`cusim.recon.pinn.FAST`. Data and metrics are
those of :mod:`benchmarks.quality` (the central ``--crop`` fine-pixel crop; least-squares fit to the
min-max normalised ground truth; 10 px border). On the GPU use ``--crop 480`` (the whole sample).
Writes ``benchmarks/results/fast_quality-<device>.json`` and ``.md``; about 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks import _common as C
from benchmarks.quality import DATA, quality

SET, BAR_DB = "SIM/microtubules", 0.2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fast_quality", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--samples", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--crop", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args(argv)
    import cusim  # noqa: PLC0415
    from cusim.importers import import_paper  # noqa: PLC0415
    from cusim.recon.pinn import FAST  # noqa: PLC0415

    rows, records, worst = [], [], 0.0
    for sample in args.samples:
        ds = import_paper(args.data / SET, sample).crop_center(args.crop)
        rec = {"sample": sample}
        for name, params in (("float32", {}), ("fast", FAST)):
            res = cusim.reconstruct(ds, "pinn", device=args.device, seed=args.seed, **params)
            rec[name] = {**quality(res.image, ds.ground_truth), "runtime_s": res.runtime_s,
                         "steps_run": res.extra["steps_run"], "stop_reason": res.extra["stop_reason"]}
            print(f"{SET} #{sample} {name}: {rec[name]['psnr_db']:.2f} dB, {rec[name]['steps_run']} steps, "
                  f"{res.runtime_s:.1f} s", flush=True)
        d = rec["fast"]["psnr_db"] - rec["float32"]["psnr_db"]
        worst = max(worst, abs(d))
        records.append({**rec, "psnr_diff_db": d})
        f32, fast = rec["float32"], rec["fast"]
        rows.append([str(sample), f"{f32['psnr_db']:.2f} / {f32['ssim']:.3f}", f"{fast['psnr_db']:.2f} / {fast['ssim']:.3f}",
                     f"{d:+.2f}", f"{f32['steps_run']} / {fast['steps_run']}",
                     f"{f32['runtime_s']:.0f} / {fast['runtime_s']:.0f}"])
    cols = ["sample", "float32 PSNR/SSIM", "fast PSNR/SSIM", "fast - float32 dB", "steps", "runtime s"]
    title = f"fast vs float32 PINN, {SET} {args.crop}x{args.crop} crop, seed {args.seed} ({args.device})"
    C.print_table(title, cols, rows)
    target = C.target_max_line(f"fast path within {BAR_DB:g} dB PSNR of float32 on every sample (largest |diff|)",
                               worst, BAR_DB, " dB")
    print(target)
    env = C.environment(args.device, "float32; fast: U-Net inner levels bfloat16")
    payload = {"benchmark": "fast_quality", "command": " ".join(["python -m benchmarks.fast_quality", *sys.argv[1:]]),
               "environment": env, "settings": {**vars(args), "data": str(args.data), "fast": FAST},
               "samples": records, "targets": [target]}
    print(f"wrote {C.write_json('fast_quality', args.device, payload)}")
    md = (f"_{env['device_name']}, torch {env['torch']}; `{payload['command']}`_\n\n"
          + C.markdown_table(title, cols, rows) + f"\n- {target}\n")
    print(f"wrote {C.write_markdown('fast_quality', args.device, md)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
