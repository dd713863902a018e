"""Resolution you can trust: line pairs at known spacings, for every pattern family (issue 23).

    python -m benchmarks.resolution [--device auto|cpu|cuda] [--snr 10 20 50] [--cases linear ...]
        [--methods widefield wiener iterative pinn] [--size 160] [--seed 0] [--resume] [--quick]
        [--parts resolution hallucination] [--merge PIECE.json ...]
        [--out benchmarks/results/resolution-<device>.json] [--figure docs/resolution-<device>.png]
        [--pinn-param KEY=VALUE ...] [--saturation S]   (experiments: their settings are recorded)
    python -m benchmarks --only resolution [--device ...] [--quick]

Protocol. ``cusim.simulate`` (ideal widefield optics NA 1.2, 520 nm, 100 nm camera pixels; upsample 4, so
25 nm fine pixels; pattern frequency 0.9 x the OTF cut-off; angle offset 10 degrees; Poisson and read
noise at ``--snr``) of the ``line_pairs`` target (:func:`cusim.phantoms.line_pairs`): :data:`SPACINGS_PX`
at :data:`N_ORIENTATIONS` orientations (0, 60, 120 degrees), lines of FWHM 1 fine pixel, on a
``--size`` x ``--size`` fine grid. Cases (:data:`CASES`): linear SIM (3 x 3), nonlinear SIM (saturation 3)
with its first harmonic only (5 x 5 frames) and with two (5 angles x 7 phases: 2 x 3 + 1 phases
separate orders up to 3), the hexagonal lattice (5 x 5 shifts). Methods at cusim's defaults:
``cusim.reconstruct(ds, method, device=...)`` for widefield, wiener (sinusoidal families only),
iterative (FISTA + TV) and pinn.

Measurement (:mod:`cusim.resolution`): each reconstruction is mapped onto the truth by the
least-squares scale and offset (``cusim.metrics.normalise``, ``norm="lstsq"``); the contrast of every
pair is measured across it (averaged along the lines); per spacing the contrast is averaged over the
orientations; the smallest spacing resolved is the first crossing of the Rayleigh contrast (0.26) from
the coarse end, interpolated (and of 0, Sparrow). Theory: Abbe's ``1 / f_max``, ``f_max`` = detection
cut-off + the highest pattern frequency present (amplitude >= 1 % of the mean, from the dataset's
pattern parameters or arrays, harmonics included); the bars are on it. For the same contrast, a pair
imaged noise-free through a transfer of cut-off ``f_max`` is resolved down to ``0.76 / f_max`` when
that transfer is flat (perfect deconvolution) and ``1.17 / f_max`` when it is the ideal OTF (none):
both are reported (``cusim.resolution.theory_spacing``).

Hallucination check (SNR 20): a second target of line pairs only coarser than the widefield limit
(:data:`HALLU_SPACINGS_PX`), lines of Gaussian profile wide enough (:data:`HALLU_WIDTH_PX`) that the truth
holds (almost) nothing beyond the detection cut-off ``f_b``; a method passes when the fraction of its
reconstruction's energy beyond ``f_b`` (mean removed, Hann window, 8 px border left out) stays below
:data:`HALLU_MAX`.

Writes the JSON after every reconstruction (``--resume`` skips those already in it), a markdown table
(``benchmarks/results/resolution-<device>.md``) and the figure (contrast against spacing per method and
case at SNR 20, theory drawn). ``--quick``: a smoke test (96 px, fewer spacings, SNR 20, 30 PINN steps),
not a result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import _common as C

NAME = "resolution"
ROOT = Path(__file__).resolve().parents[1]
# Ladder of spacings (fine px of 25 nm): ~15 % apart, from below the 2-harmonic nonlinear limit (2.7 px)
# to the widefield limit (10.1 px at the Rayleigh contrast)
SPACINGS_PX = tuple(float(v) for v in np.round(np.geomspace(2.2, 10.2, 12), 2))
N_ORIENTATIONS = 3
UPSAMPLE, SATURATION = 4, 3.0
CASES = {  # name -> simulate() arguments
    "linear": {"family": "linear"},
    "nonlinear-1h": {"family": "nonlinear", "n_harmonics": 1, "saturation": SATURATION, "n_phases": 5},
    "nonlinear-2h": {"family": "nonlinear", "n_harmonics": 2, "saturation": SATURATION, "n_phases": 7},
    "lattice": {"family": "lattice"},
}
METHODS = ["widefield", "wiener", "iterative", "pinn"]
COLORS = {"widefield": "tab:blue", "wiener": "tab:orange", "iterative": "tab:green", "pinn": "tab:red"}
SNRS = [10.0, 20.0, 50.0]
HALLU_SPACINGS_PX, HALLU_WIDTH_PX, HALLU_SNR, HALLU_BORDER = (14.0, 20.0), 12.0, 20.0, 8
HALLU_MAX = 0.01  # energy beyond the truth's band: at most 1 % (about 10 % in amplitude)
BAR_LINEAR, BAR_OTHER = 0.10, 0.15  # PINN within 10 % / 15 % of the theoretical spacing at SNR 20


def _simulate(case: str, snr: float, size: int, seed: int, phantom_params: dict, device: str,
              saturation: float | None = None):
    from cusim.simulate import simulate  # noqa: PLC0415

    setup = dict(CASES[case])
    if saturation is not None and "saturation" in setup:
        setup["saturation"] = saturation
    return simulate(phantom="line_pairs", shape=(size, size), upsample=UPSAMPLE, snr=snr, seed=seed,
                    phantom_params=phantom_params, device=device, **setup)


def theory(ds) -> dict:
    """Detection cut-off, highest pattern frequency and the theoretical spacings of ``ds``."""
    from cusim.resolution import RAYLEIGH, SPARROW, pattern_max_frequency, theory_spacing  # noqa: PLC0415

    fc = ds.optics().cutoff(ds.upsample)
    kmax = pattern_max_frequency(ds.pattern_params if ds.pattern_params is not None else ds.get_patterns())
    f = fc + kmax
    return {"cutoff": fc, "pattern_max_freq": kmax, "f_max": f, "abbe_px": 1 / f, "widefield_abbe_px": 1 / fc,
            "rayleigh_ideal_px": theory_spacing(f, RAYLEIGH), "rayleigh_flat_px": theory_spacing(f, RAYLEIGH, "flat"),
            "sparrow_ideal_px": theory_spacing(f, SPARROW), "widefield_rayleigh_ideal_px": theory_spacing(fc, RAYLEIGH)}


def measure(image, truth, pairs, spacings) -> dict:
    """Per-spacing contrast (mean over orientations) of ``image`` mapped onto ``truth``, and the spacings resolved."""
    from cusim.metrics import normalise  # noqa: PLC0415
    from cusim.resolution import RAYLEIGH, SPARROW, pair_contrast, resolved_spacing  # noqa: PLC0415

    mapped, _ = normalise(image, truth, "lstsq")
    per_pair = [pair_contrast(mapped, p) for p in pairs]
    contrast = [float(np.nanmean([c for c, p in zip(per_pair, pairs) if p.spacing_px == d])) for d in spacings]
    return {"contrast": contrast, "rayleigh_px": resolved_spacing(spacings, contrast, RAYLEIGH),
            "sparrow_px": resolved_spacing(spacings, contrast, SPARROW)}


def _run(ds, case: str, method: str, device: str, quick: bool, pinn_params: dict | None = None):
    import cusim  # noqa: PLC0415

    params = {"steps": 30} if quick and method == "pinn" else {}
    if method == "pinn":
        params |= pinn_params or {}
    if method == "wiener":  # K = 35 has no default split into angles and phases
        params = {k: CASES[case][k] for k in ("n_phases",) if k in CASES[case]} | (
            {"n_angles": 5} if CASES[case]["family"] == "nonlinear" else {})
    t0 = time.perf_counter()
    res = cusim.reconstruct(ds, method, device=device, **params)
    info = {"runtime_s": time.perf_counter() - t0}
    for key in ("steps_run", "stop_reason", "n_iter", "iterations"):
        if key in res.extra:
            info[key] = res.extra[key]
    return res.image, info


def _methods_for(case: str, methods) -> list[str]:
    return [m for m in methods if not (m == "wiener" and CASES[case]["family"] not in ("linear", "nonlinear"))]


def run(args) -> dict:
    from cusim import phantoms  # noqa: PLC0415

    out = Path(args.out)
    data = json.loads(out.read_text()) if args.resume and out.exists() else {}
    settings = {"size": args.size, "seed": args.seed, "spacings_px": list(args.spacings), "quick": args.quick,
                "n_orientations": N_ORIENTATIONS, "upsample": UPSAMPLE}
    if args.pinn_param or args.saturation is not None:  # an experiment, not the defaults: its own settings
        settings.update(pinn_params=args.pinn_param, saturation=args.saturation)
    if data and data.get("settings") != settings:
        raise SystemExit(f"--resume: {out} was made with other settings {data.get('settings')}")
    data.update(settings=settings, environment=C.environment(args.device, "float32"))
    data.setdefault("runs", {})
    data.setdefault("hallucination", {})
    pairs = phantoms.line_pair_layout((args.size, args.size), args.spacings, n_orientations=N_ORIENTATIONS,
                                      seed=args.seed)

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2, default=str) + "\n")

    for path in args.merge:  # pieces of one protocol run in parallel processes
        piece = json.loads(Path(path).read_text())
        if piece.get("settings") != settings:
            raise SystemExit(f"--merge: {path} was made with other settings {piece.get('settings')}")
        for key in ("runs", "hallucination", "theory", "truth", "hallucination_truth"):
            data.setdefault(key, {}).update(piece.get(key, {}))
    if args.merge:
        save()
        return data
    parts = set(args.parts)
    for snr in args.snr[:1]:  # the first SNR (20 by default: the bars are there), then the hallucination check
        if "resolution" in parts:
            _resolution_runs(args, data, snr, pairs, save)
    if "hallucination" in parts:
        _hallucination_runs(args, data, save)
    for snr in args.snr[1:]:
        if "resolution" in parts:
            _resolution_runs(args, data, snr, pairs, save)
    return data


def _resolution_runs(args, data: dict, snr: float, pairs, save) -> None:
    """Every case and method at ``snr`` on the line-pair ladder."""
    for case in args.cases:
        ds = None
        for method in _methods_for(case, args.methods):
            key = f"{case}|{snr:g}|{method}"
            if key in data["runs"]:
                continue
            if ds is None:
                ds = _simulate(case, snr, args.size, args.seed,
                               {"spacings_px": args.spacings, "n_orientations": N_ORIENTATIONS}, args.device,
                               args.saturation)
                data.setdefault("theory", {})[case] = theory(ds)
                data.setdefault("truth", {})[case] = measure(ds.ground_truth, ds.ground_truth, pairs, args.spacings)
            image, info = _run(ds, case, method, args.device, args.quick, args.pinn_param)
            r = data["runs"][key] = {**measure(image, ds.ground_truth, pairs, args.spacings), **info}
            print(f"{case} SNR {snr:g} {method}: resolved {r['rayleigh_px']:.2f} px (Abbe "
                  f"{data['theory'][case]['abbe_px']:.2f}), {info['runtime_s']:.0f} s", flush=True)
            save()


def _hallucination_runs(args, data: dict, save) -> None:
    """Every case and method on the coarse, band-limited target at :data:`HALLU_SNR`."""
    from cusim.resolution import energy_beyond  # noqa: PLC0415

    for case in args.cases:
        ds = None
        for method in _methods_for(case, args.methods):
            key = f"{case}|{method}"
            if key in data["hallucination"]:
                continue
            if ds is None:
                params = {"spacings_px": args.hallu_spacings, "n_orientations": N_ORIENTATIONS, "width_px": HALLU_WIDTH_PX}
                ds = _simulate(case, HALLU_SNR, args.size, args.seed, params, args.device, args.saturation)
                f_b = ds.optics().cutoff(ds.upsample)
                data.setdefault("hallucination_truth", {})[case] = {
                    "f_b": f_b, "fraction": energy_beyond(ds.ground_truth, f_b, HALLU_BORDER)}
            image, info = _run(ds, case, method, args.device, args.quick, args.pinn_param)
            frac = energy_beyond(image, data["hallucination_truth"][case]["f_b"], HALLU_BORDER)
            data["hallucination"][key] = {"fraction": frac, "pass": frac <= HALLU_MAX, **info}
            print(f"hallucination {case} {method}: {100 * frac:.3f} % beyond the truth's band", flush=True)
            save()


# -- report ---------------------------------------------------------------------------------------
def _fmt(v: float, coarsest: float | None = None) -> str:
    if np.isfinite(v):
        return f"{v:.2f}"
    return f"> {coarsest:g}" if coarsest else "not resolved"


def _gap(resolved: float, theory_px: float) -> float:
    return resolved / theory_px - 1


def tables(data: dict, snrs, cases, methods):
    """(title, columns, rows) of the resolution table and of the hallucination check; TARGET lines."""
    rows, targets = [], []
    top = max(data["settings"]["spacings_px"])
    for case in cases:
        th = data.get("theory", {}).get(case)
        if th is None:
            continue
        for snr in snrs:
            cells = [data["runs"].get(f"{case}|{snr:g}|{m}") for m in methods]
            if not any(cells):
                continue
            rows.append([case, f"{snr:g}", f"{th['abbe_px']:.2f}",
                         f"{th['rayleigh_flat_px']:.2f} / {th['rayleigh_ideal_px']:.2f}"]
                        + ["n/a" if c is None else f"{_fmt(c['rayleigh_px'], top)} ({_fmt(c['sparrow_px'], top)})"
                           for c in cells])
        pinn = data["runs"].get(f"{case}|20|pinn")
        if pinn is not None:
            bar = BAR_LINEAR if case == "linear" else BAR_OTHER
            gap = _gap(pinn["rayleigh_px"], th["abbe_px"])
            targets.append(C.target_max_line(f"{case} SNR 20: PINN's resolved spacing within {100 * bar:.0f} % of "
                                             f"the Abbe limit {th['abbe_px']:.2f} px (relative excess)",
                                             100 * gap if np.isfinite(gap) else None, 100 * bar, " %"))
        for snr in snrs:
            p, f = data["runs"].get(f"{case}|{snr:g}|pinn"), data["runs"].get(f"{case}|{snr:g}|iterative")
            if p and f:
                ok = p["rayleigh_px"] <= f["rayleigh_px"] * 1.0001
                targets.append(f"TARGET {case} SNR {snr:g}: PINN at least as fine as FISTA+TV: "
                               f"{_fmt(p['rayleigh_px'])} vs {_fmt(f['rayleigh_px'])} px -> {'PASS' if ok else 'MISS'}")
    cols = ["case", "SNR", "Abbe 1/f_max px", "flat / ideal px"] + [f"{m} px" for m in methods]
    res_table = ("smallest spacing resolved, Rayleigh contrast 0.26 (Sparrow, contrast 0), fine px of 25 nm",
                 cols, rows)
    hrows = []
    for case in cases:
        ht = data.get("hallucination_truth", {}).get(case)
        if ht is None:
            continue
        cells = [data["hallucination"].get(f"{case}|{m}") for m in methods]
        hrows.append([case, f"{ht['f_b']:.4f}", f"{100 * ht['fraction']:.4f}"]
                     + ["n/a" if c is None else f"{100 * c['fraction']:.3f} {'pass' if c['pass'] else 'FAIL'}"
                        for c in cells])
        for m, c in zip(methods, cells):
            if c is not None:
                targets.append(C.target_max_line(f"hallucination {case} {m}: energy beyond the truth's band",
                                                 100 * c["fraction"], 100 * HALLU_MAX, " %"))
    hall_table = (f"hallucination check, SNR {HALLU_SNR:g}: % of the energy beyond f_b (the detection cut-off; "
                  f"pass <= {100 * HALLU_MAX:g} %)", ["case", "f_b cyc/px", "truth %"] + methods, hrows)
    return res_table, hall_table, targets


def figure(data: dict, path: Path, cases, methods, snr: float = 20.0) -> Path | None:
    """Contrast against spacing per method, one panel per case, theory (Rayleigh spacing) drawn."""
    import matplotlib  # noqa: PLC0415
    import matplotlib.ticker  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cases = [c for c in cases if c in data.get("theory", {})]
    if not cases:
        return None
    d = np.asarray(data["settings"]["spacings_px"])
    fig, axes = plt.subplots(1, len(cases), figsize=(4 * len(cases), 3.4), sharey=True, squeeze=False)
    for ax, case in zip(axes[0], cases):
        th = data["theory"][case]
        ax.plot(d, data["truth"][case]["contrast"], "k:", label="truth")
        for m in methods:
            r = data["runs"].get(f"{case}|{snr:g}|{m}")
            if r is not None:
                ax.plot(d, r["contrast"], "o-", ms=3, label=m, color=COLORS[m])
        ax.axhline(0.26, color="0.6", lw=0.8)
        ax.axvline(th["abbe_px"], color="k", lw=1, label="Abbe 1/f_max (SIM)")
        ax.axvspan(th["rayleigh_flat_px"], th["rayleigh_ideal_px"], color="0.85", zorder=0,
                   label="0.26 reached, flat..ideal transfer")
        ax.axvline(th["widefield_abbe_px"], color="b", lw=1, ls="--", label="Abbe 1/cut-off (widefield)")
        ax.set_xscale("log")
        ax.set_xticks([2, 3, 4, 5, 6, 8, 10])
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(f"{case}, SNR {snr:g}")
        ax.set_xlabel("spacing (fine px, 25 nm)")
    axes[0][0].set_ylabel("contrast (P - V) / P")
    axes[0][0].set_ylim(-0.3, 1.2)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _key_value(p: argparse.ArgumentParser, text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        p.error(f"--pinn-param: expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a word, e.g. stop=max


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.resolution", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    p.add_argument("--snr", nargs="+", type=float, default=None, help="SNRs (default 20 10 50, 20 first)")
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    p.add_argument("--size", type=int, default=160, help="fine-grid side (default 160: 40 x 40 camera pixels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parts", nargs="+", choices=["resolution", "hallucination"], default=["resolution", "hallucination"],
                   help="the line-pair ladder, the hallucination check, or both (default)")
    p.add_argument("--merge", nargs="+", type=Path, default=[], metavar="PIECE.json",
                   help="run nothing: add these pieces (same settings) to --out (with --resume) and report")
    p.add_argument("--resume", action="store_true", help="skip reconstructions already in --out")
    p.add_argument("--quick", action="store_true", help="smoke test: 96 px, 5 spacings, SNR 20, 30 PINN steps")
    p.add_argument("--pinn-param", nargs="+", default=[], metavar="KEY=VALUE",
                   help="experiment: PINN settings other than the defaults (e.g. steps=2500 lr_every=125)")
    p.add_argument("--saturation", type=float, default=None,
                   help=f"experiment: the nonlinear cases' saturation (default {SATURATION:g})")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--figure", type=Path, default=None)
    args = p.parse_args(argv)
    args.spacings, args.hallu_spacings = SPACINGS_PX, HALLU_SPACINGS_PX
    args.pinn_param = dict(_key_value(p, kv) for kv in args.pinn_param)
    if args.quick:
        args.size, args.spacings, args.hallu_spacings = 96, (2.5, 3.5, 5.0, 7.0, 9.0), HALLU_SPACINGS_PX[:1]
        args.snr = args.snr or [20.0]
    args.snr = args.snr or [20.0, 10.0, 50.0]
    return args


def main(argv=None) -> int:
    args = parse(argv)
    from benchmarks.__main__ import resolve  # noqa: PLC0415

    device = resolve(args.device)
    if device is None:
        print("--device cuda: no usable CUDA GPU (CuPy and torch must both see one)", file=sys.stderr)
        return 2
    args.device = device
    tag = C.device_tag(device) + ("-quick" if args.quick else "")
    args.out = args.out or C.RESULTS / f"{NAME}-{tag}.json"
    args.figure = args.figure or ROOT / "docs" / f"resolution-{tag}.png"
    data = run(args)
    for case in [c for c in args.cases if c in data.get("theory", {})]:  # recomputed (pieces may predate a change)
        data["theory"][case] = theory(_simulate(case, 20.0, args.size, args.seed, {"spacings_px": args.spacings,
                                                "n_orientations": N_ORIENTATIONS}, args.device, args.saturation))
    args.out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    res_table, hall_table, targets = tables(data, sorted(args.snr), args.cases, args.methods)
    for t in (res_table, hall_table):
        C.print_table(*t)
    fig = figure(data, args.figure, args.cases, args.methods)
    env = data["environment"]
    md = (f"_{env['device_name']}, {env['cpu_count']} CPU cores, torch {env.get('torch')}; {env['date']}; "
          f"`python -m benchmarks.resolution {' '.join(argv if argv is not None else sys.argv[1:])}`_\n\n"
          + "\n".join(C.markdown_table(*t) for t in (res_table, hall_table))
          + "".join(f"\n- {t}" for t in targets) + (f"\n\nfigure: {fig}\n" if fig else "\n"))
    md_path = args.out.with_suffix(".md")
    md_path.write_text(md)
    print("\n".join(targets))
    print(f"wrote {args.out}, {md_path}" + (f", {fig}" if fig else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
