"""What significance an angle WITHOUT a carrier reaches in `cusim estimate` (the null hypothesis).

    python -m benchmarks.estimate_null [--seeds 0 ... 47] [--snrs 3 5 20] [--sizes 192 256] [--out estimate_null]

Each stack is ``cusim.simulate`` filaments (linear 3 x 3, Poisson and read noise, fine grid ``--sizes``,
upsample 2) whose angle ``seed % 3`` is replaced by the same angle of the same simulation with modulation 0
(uniform light: the object, its noise, no carrier), the other two angles modulated. Estimating it with the
defaults (threshold MIN_PEAK_SNR), this records the best candidate's significance of that angle:

- ``blind``: over the whole spectrum (the first pass, as every angle is searched alone);
- ``lattice``: in the small region where the two found angles put its carrier (the lattice pass of
  :func:`cusim.estimate.estimate_params`, best of both step directions), i.e. what LATTICE_Z must stand above.

The significances are read by wrapping the estimate's candidate choice (``cusim.estimate._choose``), which
sees every candidate set; the lattice pass is made to run to the end (its threshold set unreachable), so every
stack gives one value of each. Prints their quantiles and the share at or above a few thresholds.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from unittest import mock

import numpy as np

from benchmarks import _common as C

NAME = "estimate_null"


def angle_replaced(seed: int, snr: float, size: int, modulation: float, angle: int):
    """A simulated 3 x 3 stack (filaments, ``size`` x ``size`` fine, upsample 2) whose ``angle`` comes from the
    same simulation at ``modulation`` (0: no carrier at all), as float64, and the full simulation (its patterns
    are the truth)."""
    import cusim  # noqa: PLC0415

    ds = cusim.simulate(shape=(size, size), snr=snr, seed=seed, device="cpu")
    other = cusim.simulate(shape=(size, size), snr=snr, seed=seed, modulation=modulation, device="cpu")
    raw = ds.raw.astype(np.float64)
    raw[3 * angle:3 * angle + 3] = other.raw[3 * angle:3 * angle + 3]
    return raw, ds


def null_stack(seed: int, snr: float, size: int):
    """A 3 x 3 stack whose angle ``seed % 3`` has no carrier, the optics, and that angle."""
    raw, ds = angle_replaced(seed, snr, size, 0.0, seed % 3)
    return raw, ds.optics(), seed % 3


def significances(raw, psf, angle: int) -> dict:
    """``blind`` and ``lattice``: the best candidate significance of ``angle`` in each pass (see the module doc);
    ``blind_fit``: the band fit of the blind pass's most significant candidate (the refusal's advice to take a
    weak carrier needs a fit >= MIN_FIT); ``advised``: whether the refusal gave that advice."""
    import cusim.estimate as E  # noqa: PLC0415

    best, choose = [], E._choose

    def recording(corr, cands, *args, **kwargs):
        z = [corr.zscore(c) for c in cands]
        best.append((max(z), corr.score(cands[int(np.argmax(z))])))
        return choose(corr, cands, *args, **kwargs)

    advised = False
    with mock.patch.object(E, "_choose", recording), mock.patch.object(E, "LATTICE_Z", np.inf), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            E.estimate_params(raw, upsample=2, psf=psf)
        except E.EstimationError as e:
            advised = "may be the carrier" in str(e)
    # the first pass searches the three angles in turn; then the lattice pass the one without a carrier, once
    # per step direction
    if len(best) < 4:
        raise RuntimeError(f"expected the first pass and the lattice pass, saw {len(best)} searches")
    return {"blind": best[angle][0], "blind_fit": best[angle][1], "lattice": max(z for z, _ in best[3:]),
            "advised": advised}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(48)))
    p.add_argument("--snrs", type=float, nargs="+", default=[3.0, 5.0, 20.0])
    p.add_argument("--sizes", type=int, nargs="+", default=[192, 256])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=NAME)
    args = p.parse_args(argv)
    from cusim._threads import set_threads  # noqa: PLC0415

    set_threads(args.threads)
    rows = []
    for seed in args.seeds:
        for snr in args.snrs:
            for size in args.sizes:
                r = significances(*null_stack(seed, snr, size))
                rows.append({"seed": seed, "snr": snr, "size": size, **r})
                print(f"seed {seed} SNR {snr:g} {size // 2} camera px: blind {r['blind']:.2f} (fit "
                      f"{r['blind_fit']:.2f}), lattice {r['lattice']:.2f}", flush=True)
    lines = [f"**Significance of an angle without a carrier: {len(rows)} simulated stacks (seeds "
             f"{min(args.seeds)}-{max(args.seeds)}, SNR {', '.join(f'{s:g}' for s in args.snrs)}, "
             f"{', '.join(str(s // 2) for s in args.sizes)} camera px)**", "",
             "| search | median | 90 % | 99 % | max | >= 4 | >= 5 | >= 6 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key in ("blind", "lattice"):
        z = np.array([r[key] for r in rows])
        q = np.quantile(z, [0.5, 0.9, 0.99])
        lines.append(f"| {key} | {q[0]:.2f} | {q[1]:.2f} | {q[2]:.2f} | {z.max():.2f} | "
                     + " | ".join(f"{(z >= t).mean():.3f}" for t in (4, 5, 6)) + " |")
    from cusim.estimate import MIN_FIT, NOISE_Z  # noqa: PLC0415

    advised = sum(r["advised"] for r in rows)
    at4 = sum(r["blind"] >= 4 and r["blind_fit"] >= MIN_FIT for r in rows)
    lines += ["", f"The refusal advised taking that angle's candidate as a weak carrier in {advised} of {len(rows)} "
              f"(NOISE_Z {NOISE_Z:g}); at NOISE_Z 4 it would have in {at4} (significance >= 4 and band fit >= "
              f"{MIN_FIT:g})."]
    text = "\n".join(lines)
    print(text)
    out = C.RESULTS / f"{args.out}-cpu.md"
    out.write_text(text + "\n\n```bash\npython -m benchmarks.estimate_null " + " ".join(argv or sys.argv[1:]) + "\n```\n")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
