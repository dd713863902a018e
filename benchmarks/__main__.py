"""The benchmark suite of cusim: every benchmark times cusim and its peer in one process (DESIGN section 5).

    python -m benchmarks [--quick] [--device cpu|cuda|auto] [--only NAME ...] [--threads N]
                         [--repeats N] [--warmup N] [--steps N] [--default-stop] [--results DIR]

Benchmarks (``--only``): operators (forward+adjoint, :mod:`benchmarks.bench_operators`), pinn_step,
pinn_full, pinn_default (the default reconstruction of a linear, a nonlinear and an LPSIM sample, wall clock;
on the CPU only with ``--default-stop``), scaling (:mod:`benchmarks.bench_pinn`), wiener, iterative
(:mod:`benchmarks.bench_recon`);
and, only when named: batch (inputs per minute over 1, 2 (CPU) or 1, 2, 4 (GPU) Dask workers,
:mod:`benchmarks.bench_batch`; needs the dask extra) and resolution (line pairs for every pattern family,
:mod:`benchmarks.resolution`: a quality benchmark, tens of PINN runs; ``--quick`` is its smoke test;
``--results`` is its folder).
Each writes ``<results>/<name>-<device>.json`` (device, versions, dtype, shapes, every repeat) and
``<name>-<device>.md`` (the table), prints its table and TARGET lines. Exit 0, 1 when an
implementation failed, 2 on bad usage (``--device cuda`` without a GPU). ``--size N`` (testing)
replaces the data by its central N x N crop and the scaling sizes by N and 2N.

Example: ``python -m benchmarks --quick --device cpu --only pinn_step``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import _common as C

NAMES = ["operators", "pinn_step", "pinn_full", "pinn_default", "wiener", "iterative", "scaling"]
EXTRA = ["batch", "resolution"]  # run only when named in --only (batch needs the dask extra)


def _runner(name: str):
    from benchmarks import bench_pinn, bench_recon  # noqa: PLC0415

    if name == "batch":  # needs the dask extra; imported only when asked for
        from benchmarks import bench_batch  # noqa: PLC0415

        return bench_batch.run
    return {"pinn_step": bench_pinn.run_step, "pinn_full": bench_pinn.run_full,
            "pinn_default": bench_pinn.run_default, "scaling": bench_pinn.run_scaling,
            "wiener": bench_recon.run_wiener, "iterative": bench_recon.run_iterative}[name]


def resolve(device: str) -> str | None:
    """``cpu``, or ``cuda`` when CuPy and torch both see a GPU; None for ``cuda`` without one."""
    from cusim.backend import gpu_available  # noqa: PLC0415

    if device == "cpu":
        return "cpu"
    import torch  # noqa: PLC0415

    ok = gpu_available() and torch.cuda.is_available()
    return "cuda" if ok else (None if device == "cuda" else "cpu")


def run_operators(args) -> tuple[int, list[str], str]:
    """bench_operators' own main on this device; ``--size`` swaps its cases for one small case."""
    from benchmarks import bench_operators as B  # noqa: PLC0415

    argv = ["--device", args.device] + (["--quick"] if args.quick else [])
    argv += ["--repeats", str(args.repeats)] if args.repeats else []
    argv += ["--warmup", str(args.warmup)] if args.warmup is not None else []
    cases, passes_case = B.CASES, B.PASSES_CASE
    if args.size:
        B.CASES = [B.Case(f"{args.size}x{args.size} K=9 s=4", args.size, 9, 4)]
        B.PASSES_CASE = B.CASES[0].label
    try:
        rc = B.main(argv)
    finally:
        B.CASES, B.PASSES_CASE = cases, passes_case
    path = C.RESULTS / f"{B.NAME}-{C.device_tag(args.device)}.json"
    data = json.loads(path.read_text())
    rows = []
    for case in data["cases"]:
        res = case["results"]
        for impl in (k for k in res if k in B.SHOW):
            r, rr = res[impl], B._ratio(res, impl) if impl != "cusim" else None
            rows.append([case["label"], B.SHOW[impl], _ms(r), f"{rr:.2f}x" if rr else "", r.get("reason", "")])
    bw = next((c["results"].get("bandwidth") for c in data["cases"] if "bandwidth" in c["results"]), None)
    notes = [f"bandwidth: achieved fraction {bw['achieved_fraction']:.2f} of the bound {bw['bound_ms']:.3f} ms"
             ] if bw and "achieved_fraction" in bw else []
    tables = [(f"operator forward+adjoint, float32, median ms ({args.device})",
               ["case", "implementation", "median ms", "peer/cusim", "note"], rows)]
    for case in data["cases"]:
        if case["results"].get("passes"):
            tables.append((f"cusim pass by pass at {case['label']} ({args.device}; each pass timed alone)",
                           B.PASS_COLUMNS, B.pass_rows(case["results"]["passes"])))
    md = _markdown(data["environment"], tables, data["targets"], notes, args.command)
    C.write_markdown("operators", args.device, md)
    return rc, data["targets"], md


def run_resolution(args) -> int:
    """:mod:`benchmarks.resolution` on this device (its own JSON, table and figure)."""
    from benchmarks import resolution  # noqa: PLC0415

    argv = ["--device", args.device] + (["--quick"] if args.quick else [])
    if args.results is not None:
        tag = C.device_tag(args.device) + ("-quick" if args.quick else "")
        argv += ["--out", str(Path(args.results) / f"resolution-{tag}.json"),
                 "--figure", str(Path(args.results) / f"resolution-{tag}.png")]
    return resolution.main(argv)


def _ms(r: dict) -> str:
    return f"{r['median_ms']:.2f}" if r.get("status") == "ok" else r.get("status", "")


def _markdown(env: dict, tables, targets, notes, command: str) -> str:
    where = f"{env['device']}: {env['device_name']}, {env['cpu_count']} CPU cores"
    head = (f"_{where}; torch {env.get('torch')} ({env.get('torch_threads')} threads), numpy {env.get('numpy')}, "
            f"cupy {env.get('cupy')}; dtype {env['dtype']}; {env['date']}; `{command}`_\n\n")
    body = "\n".join(C.markdown_table(*t) for t in tables)
    tail = "".join(f"\n- {line}" for line in [*notes, *targets])
    return head + body + (tail + "\n" if tail else "")


def _failed(obj) -> bool:
    if isinstance(obj, dict):
        return obj.get("status") == "failed" or any(_failed(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_failed(v) for v in obj)
    return False


def run_one(name: str, args) -> tuple[int, list[str]]:
    sec = _runner(name)(args)
    env = C.environment(args.device, "float32")
    for title, columns, rows in sec["tables"]:
        C.print_table(f"{title}: {env['device_name']}", columns, rows)
    for note in sec.get("notes", []):
        print(note)
    payload = {"benchmark": sec["name"], "unit": sec["unit"], "environment": env,
               "args": {"quick": args.quick, **sec["args"]}, "cases": sec["cases"], "notes": sec.get("notes", []),
               "targets": sec["targets"]}
    print(f"wrote {C.write_json(name, args.device, payload)}")
    C.write_markdown(name, args.device, _markdown(env, sec["tables"], sec["targets"], sec.get("notes", []),
                                                  args.command))
    return (1 if _failed(sec["cases"]) else 0), sec["targets"]


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                epilog="example: python -m benchmarks --quick --device cpu --only pinn_step")
    p.add_argument("--quick", action="store_true", help="fewer repeats, fewer steps and sizes")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    p.add_argument("--only", nargs="+", choices=NAMES + EXTRA, default=None, metavar="NAME",
                   help=f"run only these ({', '.join(NAMES + EXTRA)}; batch and resolution only when named)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of cusim and of the torch peers (default: the cores usable)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (defaults per benchmark)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (defaults per benchmark)")
    p.add_argument("--steps", type=int, default=None, help="pinn_full steps (default 1000 GPU, 20 CPU, 3 --quick)")
    p.add_argument("--default-stop", action="store_true", help="pinn_default on the CPU: time the default "
                   "reconstructions (minutes to hours; always done on a GPU)")
    p.add_argument("--no-paper", action="store_true", help="pinn_step: leave out peer (a), the paper's method "
                   "(its warm-up takes tens of seconds)")
    p.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)  # testing: central N x N crop
    p.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--results", type=Path, default=None, help="results folder (default benchmarks/results)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    args.command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    device = resolve(args.device)
    if device is None:
        print("--device cuda: no usable CUDA GPU (CuPy and torch must both see one)", file=sys.stderr)
        return 2
    import torch  # noqa: PLC0415

    from benchmarks.bench_pinn import DATA  # noqa: PLC0415

    args.device, args.data = device, args.data or DATA
    from cusim._threads import set_threads, threads as cusim_threads  # noqa: PLC0415

    results, threads = C.RESULTS, cusim_threads()
    if args.results is not None:
        C.RESULTS = Path(args.results)
    # cusim's count (its FFT pools and torch, which recon.pinn resets to it), so --threads N holds for cusim and for
    # the torch peers alike (it set torch's alone: cusim's FFTs took every core, and pinn_full undid it for the rest)
    set_threads(args.threads or C.cpu_count())
    print(f"device {device} ({C.gpu_name() if device == 'cuda' else C.cpu_name()}), torch threads "
          f"{torch.get_num_threads()}, float32", flush=True)
    status, targets = 0, []
    try:
        for name in args.only or NAMES:
            if name == "operators":
                rc, lines, _ = run_operators(args)
            elif name == "resolution":
                rc, lines = run_resolution(args), []
            else:
                rc, lines = run_one(name, args)
            status, targets = max(status, rc), targets + lines
    finally:
        set_threads(threads)
        C.RESULTS = results
    print("\n".join(targets))
    return status


if __name__ == "__main__":
    sys.exit(main())
