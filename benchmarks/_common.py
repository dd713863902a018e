"""Shared helpers for the benchmark scripts (DESIGN section 5).

- timing: warm-up, then the median over repeats. CPU code is timed with the wall clock
  (``time.perf_counter``); GPU code never is: CuPy code goes through ``cupyx.profiler.benchmark``
  (CUDA events) and torch code through ``torch.cuda.Event``.
- :func:`environment`: the provenance record stored with every result.
- :func:`write_json`: ``benchmarks/results/<name>-<device>.json``.
- :func:`print_table`: a readable table (``rich`` when installed, plain text otherwise).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# Peak HBM bandwidth (B/s) of devices whose driver does not report the memory clock.
KNOWN_BANDWIDTH = [  # (substring of the device name, bytes/s); first match wins
    ("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100 NVL", 3.9e12), ("H100", 3.35e12),
    ("A100-SXM4-80GB", 2.039e12), ("A100", 2.0e12), ("L40S", 8.64e11), ("A10", 6.0e11),
]


def _summary(times_s: list[float], clock: str) -> dict:
    ms = [t * 1e3 for t in times_s]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
            "repeats": len(ms), "clock": clock, "times_ms": ms}


def time_cpu(fn, repeats: int, warmup: int = 1) -> dict:
    """Median wall-clock time of ``fn()`` on the CPU after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return _summary(times, "time.perf_counter")


def time_cupy(fn, repeats: int, warmup: int = 1) -> dict:
    """Median GPU time of CuPy code ``fn()`` from ``cupyx.profiler.benchmark`` (CUDA events)."""
    from cupyx.profiler import benchmark  # noqa: PLC0415

    res = benchmark(fn, n_repeat=repeats, n_warmup=warmup)
    return _summary([float(t) for t in res.gpu_times[0]], "cupyx.profiler.benchmark (CUDA events)")


def time_torch_cuda(fn, repeats: int, warmup: int = 1) -> dict:
    """Median GPU time of torch code ``fn()`` between ``torch.cuda.Event`` records."""
    import torch  # noqa: PLC0415

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return _summary(times, "torch.cuda.Event")


def skipped(reason: str) -> dict:
    return {"status": "skipped", "reason": reason}


def failed(exc: Exception) -> dict:
    return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}


def time_checked_cpu(fn, check, repeats: int, warmup: int = 1, budget: float | None = None) -> dict:
    """Time a CPU peer: one first call (skipped if it exceeds ``budget`` s), ``check()`` (returns
    its error, raises on disagreement), then :func:`time_cpu`. Failures are reported, never timed."""
    try:
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        if budget is not None and first > budget:
            return skipped(f"one call took {first:.1f} s > --peer-budget {budget:g} s; run without --quick")
        err = check()
        return {"status": "ok", "self_check_rel_err": err, **time_cpu(fn, repeats, max(warmup - 1, 0))}
    except Exception as exc:  # noqa: BLE001
        return failed(exc)


def target_line(text: str, value, want: float, unit: str = "x") -> str:
    """``TARGET <text>: measured <value> -> PASS|MISS``, or NOT MEASURED when ``value`` is None."""
    if value is None:
        return f"TARGET {text}: NOT MEASURED (see the table; no PASS/MISS without a number)"
    return f"TARGET {text}: measured {value:.2f}{unit} -> {'PASS' if value >= want else 'MISS'}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def gpu_name() -> str:
    import cupy  # noqa: PLC0415

    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def peak_bandwidth() -> tuple[float, str]:
    """Peak memory bandwidth of the current CUDA device (B/s) and where the number came from."""
    import cupy  # noqa: PLC0415

    rt = cupy.cuda.runtime
    dev = cupy.cuda.Device().id
    props = rt.getDeviceProperties(dev)
    clock_khz, bus_bits = props.get("memoryClockRate", 0), props.get("memoryBusWidth", 0)
    source = "cudaDeviceProp memoryClockRate x 2 x memoryBusWidth/8"
    if not clock_khz:
        try:  # CUDA 13 dropped the field from the struct; the attribute may remain
            clock_khz, bus_bits = rt.deviceGetAttribute(36, dev), rt.deviceGetAttribute(37, dev)
            source = "cudaDevAttrMemoryClockRate x 2 x cudaDevAttrGlobalMemoryBusWidth/8"
        except Exception:  # noqa: BLE001
            clock_khz = 0
    if clock_khz and bus_bits:
        return clock_khz * 1e3 * 2 * bus_bits / 8, source
    name = gpu_name()
    for key, bw in KNOWN_BANDWIDTH:
        if key.lower() in name.lower():
            return bw, f"table of known devices ({key}: {bw / 1e12:.2f} TB/s; driver reports no clock)"
    raise RuntimeError(f"peak bandwidth of {name!r} is unknown (no memory clock, not in the table)")


def device_tag(device: str) -> str:
    """File-name tag of a device: ``cpu`` or ``cuda-<gpu name>``."""
    if device != "cuda":
        return "cpu"
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", gpu_name().lower()).strip("-")


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001
        return None


def environment(device: str, dtype: str) -> dict:
    """Provenance of a result: device, CPU count, library versions, python, dtype, date, commit."""
    env = {
        "device": device,
        "device_name": gpu_name() if device == "cuda" else cpu_name(),
        "cpu_name": cpu_name(),
        "cpu_count": cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": _version("numpy"), "scipy": _version("scipy"),
        "torch": _version("torch"), "cupy": _version("cupy"), "cusim": _version("cusim"),
        "dtype": dtype,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import torch  # noqa: PLC0415

        env["torch_threads"] = torch.get_num_threads()
        env["torch_cuda"] = torch.version.cuda
    except Exception:  # noqa: BLE001
        pass
    try:
        env["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
            timeout=10).stdout.strip() or None
    except Exception:  # noqa: BLE001
        env["git_commit"] = None
    return env


def write_json(name: str, device: str, payload: dict) -> Path:
    """Write ``payload`` to ``benchmarks/results/<name>-<device_tag>.json`` and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{device_tag(device)}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Print a table with ``rich`` if it is installed, else as aligned plain text."""
    try:
        from rich.console import Console  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
    except ImportError:
        widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
        print(f"\n{title}")
        print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
        print("  ".join("-" * w for w in widths))
        for r in rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
        return
    table = Table(title=title, title_justify="left", min_width=len(title) + 4)
    for i, c in enumerate(columns):
        numeric = 0 < i < len(columns) - 1  # first and last columns are text
        table.add_column(c, justify="right" if numeric else "left", overflow="fold", no_wrap=numeric)
    for r in rows:
        table.add_row(*(str(v) for v in r))
    Console(width=max(150, len(title))).print(table)


def target_max_line(text: str, value, limit: float, unit: str = "") -> str:
    """``TARGET <text>: measured <value> -> PASS|MISS`` for an upper bound (PASS when value <= limit)."""
    if value is None:
        return f"TARGET {text}: NOT MEASURED (see the table; no PASS/MISS without a number)"
    return f"TARGET {text}: measured {value:.2f}{unit} -> {'PASS' if value <= limit else 'MISS'}"


def markdown_table(title: str, columns: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table with a bold title line."""
    esc = [[str(v).replace("|", "\\|") for v in r] for r in rows]
    lines = [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc]) + "\n"


def write_markdown(name: str, device: str, text: str) -> Path:
    """Write ``text`` to ``benchmarks/results/<name>-<device_tag>.md`` and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{device_tag(device)}.md"
    path.write_text(text)
    return path


def time_interleaved(fns: dict, repeats: int, warmup: int = 1, device: str = "cpu", budget_s: float | None = None,
                     on_error=failed) -> dict:
    """Time several callables round-robin (a, b, c, a, b, c, ...): on a shared machine a change of load
    then hits every implementation alike. Each gets ``warmup`` untimed calls first; on ``cuda`` each call
    is timed between ``torch.cuda.Event`` records, on the CPU by the wall clock (the warm-up's wall time,
    compilation and cuDNN autotuning included, is kept as ``warmup_s``). An implementation stops
    being timed once its timed calls sum past ``budget_s`` (3 repeats at least). ``on_error(exc)`` is the
    result of one that raises (it leaves the rotation). Returns ``{name: summary}``."""
    cuda = device == "cuda"
    if cuda:
        import torch  # noqa: PLC0415
    out, live, times, warm_s = {}, dict(fns), {k: [] for k in fns}, {}
    for name, fn in list(live.items()):
        t0 = time.perf_counter()
        try:
            for _ in range(warmup):
                fn()
            if cuda:
                torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001
            out[name] = on_error(exc)
            del live[name]
        warm_s[name] = time.perf_counter() - t0
    for _ in range(repeats):
        for name, fn in list(live.items()):
            try:
                if cuda:
                    torch.cuda.synchronize()
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    fn()
                    end.record()
                    end.synchronize()
                    times[name].append(start.elapsed_time(end) / 1e3)
                else:
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001
                out[name] = on_error(exc)
                del live[name]
                continue
            if budget_s is not None and len(times[name]) >= 3 and sum(times[name]) > budget_s:
                del live[name]
    clock = "torch.cuda.Event, interleaved" if cuda else "time.perf_counter, interleaved"
    for name in fns:
        if name not in out:
            out[name] = {"status": "ok", **_summary(times[name], clock), "warmup_s": warm_s.get(name, 0.0)}
    return out
