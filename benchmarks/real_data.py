"""Real data without patterns: dlsim-microtubules (Jin et al. 2020), estimated patterns, compared with the
source's own SIM reconstruction.

    python -m benchmarks.real_data [--pinn] [--device auto|cpu|cuda]

Imports ``../shared/data/real/dlsim-microtubules/raw_normal_light.tif`` with the options of docs/data.md
(3 angles x 5 phases, binning 2 back to the camera grid, upsample 2 to the 256 grid of the reference),
estimates the patterns (``cusim.estimate``), reconstructs with widefield, Wiener, iterative and (with
``--pinn``) the PINN, and prints the Pearson correlation of each with
``reference_sim_normal_light.tif`` (same 256 x 256 grid, 8 px border left out). The source gives no
optics; NA 1.49, 525 nm and 44 nm camera pixels (after binning) are assumed as in docs/data.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DLSIM = ROOT.parent / "shared" / "data" / "real" / "dlsim-microtubules"
BORDER = 8


def pearson(img, ref, border: int = BORDER) -> float:
    a = np.asarray(img, np.float64)[border:-border, border:-border].ravel()
    b = np.asarray(ref, np.float64)[border:-border, border:-border].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DLSIM)
    ap.add_argument("--pinn", action="store_true", help="also run the PINN (minutes on a CPU)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args(argv)

    import tifffile  # noqa: PLC0415

    import cusim  # noqa: PLC0415
    from cusim.importers import import_stack  # noqa: PLC0415
    from cusim.recon import with_estimated_patterns  # noqa: PLC0415

    ds = import_stack(args.data / "raw_normal_light.tif", angles=3, phases=5, order="angle-major", binning=2,
                      upsample=2, na=1.49, wavelength_nm=525, pixel_size_nm=44)
    ref = tifffile.imread(args.data / "reference_sim_normal_light.tif")
    est_ds, est = with_estimated_patterns(ds)
    print(est.summary())
    methods = ["widefield", "wiener", "iterative"] + (["pinn"] if args.pinn else [])
    for m in methods:
        t0 = time.perf_counter()
        res = cusim.reconstruct(ds if m == "widefield" else est_ds, m, device=args.device)
        stop = f", {res.extra['stop_reason']}" if "stop_reason" in res.extra else ""
        print(f"{m:10s} r = {pearson(res.image, ref):.4f}  ({time.perf_counter() - t0:.1f} s{stop})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
