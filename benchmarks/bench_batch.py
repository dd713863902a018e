"""Throughput of :func:`cusim.batch.reconstruct_many`: inputs per minute on a local Dask cluster of 1 and 2
worker processes on the CPU (1, 2 and 4 on one GPU), its peer being the same run on one worker.

The inputs are simulated linear-SIM stacks (``--size`` fine pixels, default 128; upsample 2, K = 9), each
reconstructed by the PINN with a fixed step budget (``--steps``, stop ``max``) so every run does the same
work. Each worker count gets its own cluster, one untimed warm-up pass (imports, CUDA contexts), then
``--repeats`` timed passes over all inputs (results replaced with force). The time is the wall clock of a
whole pass, start to last write: a throughput of many processes, which CUDA events cannot time. On the
CPU the cores are split among the workers (cusim's threads = cores // workers).

Run: ``python -m benchmarks --only batch [--device cpu|cuda] [--quick] [--steps N] [--size N]``.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import _common as C


def _inputs(folder: Path, n: int, size: int) -> list[Path]:
    import cusim  # noqa: PLC0415
    from cusim import io  # noqa: PLC0415

    return [io.save(cusim.simulate(shape=(size, size), seed=i), folder / f"in{i}.h5") for i in range(n)]


def _pass(paths, client, device: str, threads: int, steps: int) -> float:
    from cusim import batch  # noqa: PLC0415

    t0 = time.perf_counter()
    res = batch.reconstruct_many(paths, "pinn", client, force=True, device=device, threads=threads,
                                 steps=steps, stop="max")
    wall = time.perf_counter() - t0
    bad = [r.error for r in res if r.status != "done"]
    if bad:
        raise RuntimeError(bad[0])
    return wall


def run(args) -> dict:
    from distributed import Client, LocalCluster  # noqa: PLC0415

    dev = args.device
    counts = (1, 2, 4) if dev == "cuda" else (1, 2)
    n_inputs = 4 if args.quick else 8
    size = args.size or 128
    steps = args.steps or ((200 if dev == "cuda" else 30) if not args.quick else 10)
    repeats = args.repeats or (1 if args.quick else 2)
    cores = C.cpu_count()
    cases, rows = [], []
    with tempfile.TemporaryDirectory(prefix="cusim-bench-batch-") as tmp:
        paths = _inputs(Path(tmp), n_inputs, size)
        base = None
        for w in counts:
            threads = max(1, cores // w)
            print(f"[{dev}] batch: {n_inputs} inputs {size}x{size}, pinn {steps} steps, {w} worker(s) x "
                  f"{threads} thread(s) ...", flush=True)
            try:
                with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
                    _pass(paths[:w], client, dev, threads, steps)  # warm-up: imports, CUDA contexts
                    walls = [_pass(paths, client, dev, threads, steps) for _ in range(repeats)]
                wall = statistics.median(walls)
                rate = n_inputs / wall * 60
                if w == 1:  # the column's base: 1 worker's rate, or none (a failed 1-worker pass made 2 the base)
                    base = rate
                out = {"status": "ok", "median_s": wall, "times_s": walls, "inputs_per_min": rate,
                       "clock": "time.perf_counter (whole pass)"}
            except Exception as e:  # noqa: BLE001  (reported in the table and the JSON)
                out = C.failed(e)
            ratio = out["inputs_per_min"] / base if out.get("status") == "ok" and base else None
            cases.append({"label": f"{w} worker(s)", "workers": w, "threads_per_worker": threads, "inputs": n_inputs,
                          "fine": [size, size], "K": 9, "steps": steps, "results": {"cusim": out},
                          "ratios": {"vs 1 worker": ratio}})
            rows.append([f"{w} x {threads} thread(s)", f"{out['median_s']:.1f}" if "median_s" in out else out["status"],
                         f"{out['inputs_per_min']:.1f}" if "inputs_per_min" in out else "",
                         f"{ratio:.2f}x" if ratio else "", str(repeats), out.get("reason", "")])
    return {"name": "batch", "unit": "inputs per minute", "cases": cases, "targets": [],
            "args": {"inputs": n_inputs, "size": size, "steps": steps, "repeats": repeats},
            "notes": [f"{n_inputs} inputs of {size}x{size} fine pixels (K = 9, upsample 2), PINN {steps} steps each "
                      "(stop max); wall clock of a whole pass over all inputs, median of the repeats"],
            "tables": [(f"cusim run over many inputs on a local Dask cluster ({dev})",
                        ["workers", "pass s", "inputs/min", "vs 1 worker", "n", "note"], rows)]}
