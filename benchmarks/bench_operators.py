"""Forward+adjoint time of ``cusim.SIMOperator`` against its peers, in one process (DESIGN section 5).

    python -m benchmarks.bench_operators [--quick] [--device cpu|cuda|all] [--repeats N]

The timed unit is one forward pass of ``x`` and one adjoint pass of a camera stack ``r`` (float32).
Peers: :mod:`benchmarks.peers.numpy_direct` (CPU) and :mod:`benchmarks.peers.torch_fft` (torch.fft
with the adjoint by autograd; CPU, and CUDA where torch sees a GPU). Every peer is checked against
``SIMOperator`` before it is timed. On a GPU the script also counts the bytes cusim's passes move and
reports the fraction of the memory-bandwidth bound achieved; at 2048x2048 K = 9 each pass is also timed alone
(:func:`time_passes`), with its bytes and bandwidth. Results: ``benchmarks/results/*.json``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from benchmarks import _common as C
from cusim import SIMOperator
from cusim.backend import gpu_available

NAME = "bench_operators"


@dataclass(frozen=True)
class Case:
    label: str
    n: int  # fine grid n x n
    K: int
    s: int


CASES = [Case("480x480 K=9 s=4", 480, 9, 4), Case("480x480 K=25 s=4", 480, 25, 4),
         Case("2048x2048 K=9 s=4", 2048, 9, 4)]
CPU_TARGET = ("480x480 K=9 s=4", 2.0)  # cusim >= 2x faster than the NumPy peer
GPU_TARGET = ("2048x2048 K=9 s=4", 3.0, 0.5)  # >= 3x faster than torch autograd, >= 50% of bound
PASSES_CASE = GPU_TARGET[0]  # where each pass is also timed alone (time_passes)


def make_inputs(case: Case, seed: int = 0):
    """Seeded float64 inputs: random patterns in [0, 1), a 29x29 Gaussian PSF, object and stack."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((case.K, case.n, case.n))
    yy, xx = np.mgrid[-14:15, -14:15]
    psf = np.exp(-(xx**2 + yy**2) / (2 * 3.0**2))
    x = rng.random((case.n, case.n))
    r = rng.standard_normal((case.K, case.n // case.s, case.n // case.s))
    return patterns, psf, x, r


def bytes_moved(g, itemsize: int = 4) -> list[tuple[str, int]]:
    """Bytes read + written by each pass of cusim's forward+adjoint (one image, ``B = 1``).

    Each kernel reads its inputs and writes its output once; each cuFFT 2-D transform reads and
    writes its array once. ``f``: fine half spectrum (Hp x Wp/2+1), ``c``: camera half spectrum.
    """
    r, c = itemsize, 2 * itemsize
    K, HW, fine = g.K, g.H * g.W, g.Hp * g.Wp
    f, cam, cr = g.Hp * (g.Wp // 2 + 1), g.hp * (g.wp // 2 + 1), g.hp * g.wp
    hw = g.h * g.w
    passes = [
        ("fwd pattern_multiply_pad", HW * r + K * HW * r + K * fine * r),
        ("fwd rfft2 (fine)", K * fine * r + K * f * c),
        ("fwd fold_transfer", K * f * c + f * c + K * cam * c),
        ("fwd irfft2 (camera)", K * cam * c + K * cr * r),
    ]
    if g.off or g.margin:  # the frames are an inner window of the camera grid: cropped, and zero-padded back
        passes += [("fwd crop", 2 * K * hw * r), ("adj zero-pad", K * cr * r + 2 * K * hw * r)]
    passes += [
        ("adj rfft2 (camera)", K * cr * r + K * cam * c),
        ("adj unfold_transfer", K * cam * c + f * c + K * f * c),
        ("adj irfft2 (fine)", K * f * c + K * fine * r),
        ("adj pattern_multiply_sum", K * HW * r + K * HW * r + HW * r),
    ]
    return passes


def time_passes(op, x, r, timer, repeats: int, warmup: int) -> list[dict]:
    """Each pass of ``op``'s forward (on object ``x``) and adjoint (on stack ``r``) timed alone, on the output of
    the pass before it (computed once), with the bytes it moves (:func:`bytes_moved`) and the bandwidth that
    makes: where the time goes, pass by pass (issue 18). ``timer``: ``C.time_cpu`` or ``C.time_cupy``."""
    moved = dict(bytes_moved(op.geometry, op.patterns.dtype.itemsize))
    rows = []
    for which, a in (("forward", x[None]), ("adjoint", r[None])):
        for name, run in op.passes(which):
            t = timer(lambda run=run, a=a: run(a), repeats, warmup)
            rows.append({"pass": name, "median_ms": t["median_ms"], "min_ms": t["min_ms"], "repeats": t["repeats"],
                         "clock": t["clock"], "bytes": moved[name],
                         "bytes_per_s": moved[name] / (t["median_ms"] * 1e-3)})
            a = run(a)
    return rows


PASS_COLUMNS = ["pass", "median ms", "MB moved", "GB/s", "of peak"]


def pass_rows(passes: list[dict]) -> list[list[str]]:
    """The table rows of :func:`time_passes`' result (the fraction of the peak where it is known)."""
    return [[p["pass"], f"{p['median_ms']:.3f}", f"{p['bytes'] / 1e6:.1f}", f"{p['bytes_per_s'] / 1e9:.0f}",
             f"{p['fraction_of_peak']:.2f}" if "fraction_of_peak" in p else ""] for p in passes]


def bench_cpu(case: Case, args) -> dict:
    import torch  # noqa: PLC0415

    from benchmarks.peers import numpy_direct, torch_fft  # noqa: PLC0415

    pat, psf, x, r = make_inputs(case)
    x32, r32, pat32 = x.astype(np.float32), r.astype(np.float32), pat.astype(np.float32)
    op = SIMOperator(pat32, psf, case.s, device="cpu", dtype="float32")
    op64 = SIMOperator(pat, psf, case.s, device="cpu", dtype="float64")  # for the self-checks
    out = {"cusim": {"status": "ok", **C.time_cpu(lambda: (op.forward(x32), op.adjoint(r32)),
                                                  args.repeats, args.warmup)}}
    if case.label == PASSES_CASE:
        out["passes"] = time_passes(op, x32, r32, C.time_cpu, args.repeats, args.warmup)
    npeer = numpy_direct.NumpyDirectSIM(pat32, psf, case.s)
    out["numpy_direct"] = C.time_checked_cpu(lambda: npeer.forward_adjoint(x32, r32),
                                       lambda: numpy_direct.check_against(op64, psf),
                                       args.repeats, args.warmup, args.peer_budget)
    tpeer = torch_fft.TorchFFTSIM(pat32, psf, case.s, device="cpu")
    xt, rt = torch.from_numpy(x32), torch.from_numpy(r32)
    out["torch_fft_autograd"] = C.time_checked_cpu(lambda: tpeer.forward_adjoint(xt, rt),
                                             lambda: torch_fft.check_against(op64, psf),
                                             args.repeats, args.warmup)
    return out


def _rel(a, b) -> float:
    a, b = (np.asarray(v.get() if hasattr(v, "get") else v, dtype=np.float64) for v in (a, b))
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def bench_cuda(case: Case, args) -> dict:
    """cusim on CuPy and the torch peer on CUDA, both checked against the CPU float32 operator."""
    import cupy  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from benchmarks.peers import torch_fft  # noqa: PLC0415

    pat, psf, x, r = make_inputs(case)
    x32, r32, pat32 = x.astype(np.float32), r.astype(np.float32), pat.astype(np.float32)
    ref = SIMOperator(pat32, psf, case.s, device="cpu", dtype="float32")
    out = {}
    try:
        op = SIMOperator(cupy.asarray(pat32), psf, case.s, device="cuda", dtype="float32")
        xc, rc = cupy.asarray(x32), cupy.asarray(r32)
        err = max(_rel(op.forward(xc), ref.forward(x32)), _rel(op.adjoint(rc), ref.adjoint(r32)))
        assert err < 1e-4, f"cusim on CUDA disagrees with cusim on CPU: relative error {err:.3g}"
        out["cusim"] = {"status": "ok", "self_check_rel_err": err, **C.time_cupy(
            lambda: (op.forward(xc), op.adjoint(rc)), args.repeats, args.warmup)}
        if case.label == PASSES_CASE:
            out["passes"] = time_passes(op, xc, rc, C.time_cupy, args.repeats, args.warmup)
    except Exception as exc:  # noqa: BLE001 - report, never invent a number
        out["cusim"], op = C.failed(exc), None
    if not torch.cuda.is_available():
        out["torch_fft_autograd"] = C.skipped(f"torch {torch.__version__} sees no CUDA device")
    else:
        try:
            err = torch_fft.check_against(ref, psf, device="cuda")
            tpeer = torch_fft.TorchFFTSIM(pat32, psf, case.s, device="cuda")
            xt, rt = torch.from_numpy(x32).cuda(), torch.from_numpy(r32).cuda()
            out["torch_fft_autograd"] = {"status": "ok", "self_check_rel_err": err, **C.time_torch_cuda(
                lambda: tpeer.forward_adjoint(xt, rt), args.repeats, args.warmup)}
        except Exception as exc:  # noqa: BLE001
            out["torch_fft_autograd"] = C.failed(exc)
    if op is not None:
        passes = bytes_moved(op.geometry, 4)
        total = sum(b for _, b in passes)
        out["bandwidth"] = {"bytes_total": total, "passes": dict(passes)}
        try:
            bw, source = C.peak_bandwidth()
        except Exception as exc:  # noqa: BLE001
            out["bandwidth"]["error"] = f"{type(exc).__name__}: {exc}"
            return out
        bound_ms = total / bw * 1e3
        out["bandwidth"].update(peak_B_per_s=bw, source=source, bound_ms=bound_ms,
                                achieved_fraction=bound_ms / out["cusim"]["median_ms"])
        for row in out.get("passes", []):
            row["fraction_of_peak"] = row["bytes_per_s"] / bw
    return out


SHOW = {"cusim": "cusim", "numpy_direct": "NumPy peer", "torch_fft_autograd": "torch autograd"}


def _fmt_ms(res: dict) -> str:
    return f"{res['median_ms']:.2f}" if res.get("status") == "ok" else res["status"]


def report(device: str, env: dict, results: dict[str, dict]) -> list[str]:
    """Print the result table of one device; return its target lines."""
    rows = []
    for label, res in results.items():
        for impl in (k for k in res if k in SHOW):
            rr, speed = res[impl], _ratio(res, impl) if impl != "cusim" else None
            ok = rr.get("status") == "ok"
            err = rr.get("self_check_rel_err")
            rows.append([label, SHOW[impl], _fmt_ms(rr), f"{rr['min_ms']:.2f}" if ok else "",
                         str(rr.get("repeats", "")), f"{speed:.2f}x" if speed else "",
                         f"{err:.1e}" if err is not None else "", "" if ok else rr["reason"]])
    C.print_table(f"forward+adjoint, float32, {device}: {env['device_name']}",
                  ["case", "implementation", "median ms", "min ms", "n", "peer/cusim", "self-check",
                   "note"], rows)
    for label, res in results.items():
        if res.get("passes"):
            total = res["cusim"].get("median_ms")
            rows = pass_rows(res["passes"])
            rows.append(["sum of the passes", f"{sum(p['median_ms'] for p in res['passes']):.3f}",
                         f"{sum(p['bytes'] for p in res['passes']) / 1e6:.1f}", "", ""])
            if total:
                rows.append(["forward+adjoint as one call", f"{total:.3f}", "", "", ""])
            C.print_table(f"cusim forward+adjoint pass by pass at {label}, {device}", PASS_COLUMNS, rows)
    lines = []
    if device == "cpu":
        label, want = CPU_TARGET
        res = results.get(label)
        lines.append(C.target_line(f"CPU: cusim >= {want:g}x faster than NumPy peer at {label}",
                             res and _ratio(res, "numpy_direct"), want))
    else:
        label, want, frac = GPU_TARGET
        res = results.get(label)
        lines.append(C.target_line(f"GPU: cusim >= {want:g}x faster than torch autograd at {label}",
                             res and _ratio(res, "torch_fft_autograd"), want))
        bwd = (res or {}).get("bandwidth")
        if bwd and "error" in bwd:
            print(f"bandwidth bound unavailable: {bwd['error']}")
            bwd = None
        if bwd:
            rows = [[k, f"{v / 1e6:.1f}"] for k, v in bwd["passes"].items()]
            rows.append(["total", f"{bwd['bytes_total'] / 1e6:.1f}"])
            C.print_table(f"bytes moved by cusim forward+adjoint at {label} (MB)", ["pass", "MB"], rows)
            print(f"peak bandwidth {bwd['peak_B_per_s'] / 1e12:.2f} TB/s ({bwd['source']}); bound "
                  f"{bwd['bound_ms']:.3f} ms; measured {res['cusim']['median_ms']:.3f} ms; "
                  f"achieved fraction {bwd['achieved_fraction']:.2f}")
        lines.append(C.target_line(f"GPU: cusim >= {frac:.0%} of the bandwidth bound at {label}",
                             bwd and bwd["achieved_fraction"], frac, unit=""))
    return lines


def _ratio(res: dict, peer: str):
    a, b = res.get("cusim", {}), res.get(peer, {})
    if a.get("status") == "ok" and b.get("status") == "ok":
        return b["median_ms"] / a["median_ms"]
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats; NumPy peer under a budget")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 10 CPU / 50 "
                   "GPU; --quick 5 / 20)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 2; --quick 1)")
    p.add_argument("--peer-budget", type=float, default=None, help="skip the NumPy peer where its "
                   "first call takes longer (seconds; default 2 with --quick, no limit otherwise)")
    args = p.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    budget = args.peer_budget if args.peer_budget is not None else (2.0 if args.quick else None)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not gpu_available():
        if args.device == "cuda":
            print("--device cuda: no usable CUDA GPU (CuPy missing or no device)", file=sys.stderr)
            return 2
        print("cuda: skipped (CuPy missing or no CUDA device)")
        devices.remove("cuda")
    targets, failed = [], False
    for device in devices:
        repeats = args.repeats or {("cpu", False): 10, ("cpu", True): 5,
                                   ("cuda", False): 50, ("cuda", True): 20}[device, args.quick]
        run = argparse.Namespace(repeats=repeats, warmup=warmup, peer_budget=budget)
        bench = bench_cpu if device == "cpu" else bench_cuda
        results = {}
        for case in CASES:
            print(f"[{device}] {case.label} ...", flush=True)
            results[case.label] = bench(case, run)
            failed |= any(isinstance(v, dict) and v.get("status") == "failed" for v in results[case.label].values())
        env = C.environment(device, "float32")
        lines = report(device, env, results)
        targets += lines
        payload = {"benchmark": NAME, "unit": "forward+adjoint, float32, one image", "environment": env,
                   "args": {"quick": args.quick, "repeats": repeats, "warmup": warmup,
                            "peer_budget_s": budget},
                   "cases": [{"label": c.label, "fine": [c.n, c.n], "K": c.K, "upsample": c.s,
                              "pad": 0, "psf": "29x29 Gaussian sigma=3", "results": results[c.label]}
                             for c in CASES],
                   "targets": lines}
        print(f"wrote {C.write_json(NAME, device, payload)}")
    print("\n".join(targets))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
