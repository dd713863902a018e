"""Wiener and iterative reconstruction times (run by ``python -m benchmarks``), full 480 x 480 fields.

- ``wiener``: ``cusim.reconstruct(ds, "wiener")`` (parameters fitted to the stored pattern arrays, the
  plan, the filter). Peer: on a GPU, the same call on the CPU (NumPy), in the same process; on the CPU
  there is no independent Wiener peer (cusim's CPU Wiener is itself the NumPy reference), said so.
- ``iterative``: cusim's default (FISTA + TV, discrepancy stop) is run once end to end to learn its
  iteration count ``n``; then ``iterative.solve(..., stop="max", n_iter=n)`` is timed with cusim's
  operator and with peer (b) (:class:`~benchmarks.peers.torch_fft_pinn.AutogradOperator`: the same model
  in ``torch.fft``, adjoint by autograd): the same solver, the physics differs.

CPU: wall-clock medians; GPU: CUDA events (``cupyx.profiler.benchmark`` for the Wiener; ``torch.cuda.Event``
on the legacy default stream, which CuPy's work also uses, for the iterative pair). cusim and its
iterative peer are timed round-robin so that the load of a shared machine hits both alike.
"""

from __future__ import annotations

import time

from benchmarks import _common as C
from benchmarks.bench_pinn import CASES, _fmt, _guarded, _status, free_gpu, load_case, ratio
from benchmarks.peers.torch_fft_pinn import AutogradOperator, TorchFFTPhysics, check_against


def _timer(device: str):
    return C.time_cpu if device == "cpu" else C.time_cupy


def _repeats(args, cpu_full: int, cpu_quick: int, gpu: int) -> int:
    return args.repeats or (gpu if args.device == "cuda" else (cpu_quick if args.quick else cpu_full))


def run_wiener(args) -> dict:
    import cusim  # noqa: PLC0415

    dev = args.device
    repeats = _repeats(args, 5, 2, 20)
    warmup = args.warmup if args.warmup is not None else 1
    cases, rows = [], []
    for set_name, sample in CASES:
        ds = load_case(set_name, sample, args.data, args.size)
        label = f"{ds.fine_shape[0]}x{ds.fine_shape[1]} K={ds.K}"
        print(f"[{dev}] wiener {label} ...", flush=True)
        out = {"cusim": _guarded(lambda: {"status": "ok", **_timer(dev)(
            lambda: cusim.reconstruct(ds, "wiener", device=dev), repeats, warmup)})}
        if dev == "cuda":
            out["cusim_cpu"] = _guarded(lambda: {"status": "ok", **C.time_cpu(
                lambda: cusim.reconstruct(ds, "wiener", device="cpu"), max(3, repeats // 4), 1)})
        else:
            out["cusim_cpu"] = C.skipped("no independent CPU Wiener peer: cusim's CPU path is the NumPy reference")
        free_gpu(dev)
        r = ratio(out, "cusim_cpu")
        cases.append({"label": label, "set": set_name, "sample": sample, "fine": list(ds.fine_shape), "K": ds.K,
                      "results": out, "ratios": {"cusim_cpu/cusim": r}})
        for k, name in (("cusim", f"cusim ({dev})"), ("cusim_cpu", "peer: cusim on the CPU")):
            rows.append([label, name, _fmt(out[k]), str(out[k].get("repeats", "")),
                         f"{r:.2f}x" if k != "cusim" and r else "", out[k].get("reason", "")])
    return {"name": "wiener", "unit": "one reconstruction, ms", "cases": cases, "targets": [],
            "args": {"repeats": repeats, "warmup": warmup, "size": args.size},
            "tables": [(f"Wiener reconstruction, median ms ({dev})",
                        ["case", "implementation", "median ms", "n", "peer/cusim", "note"], rows)]}


def run_iterative(args) -> dict:
    import cusim  # noqa: PLC0415
    from cusim.recon import iterative  # noqa: PLC0415

    dev = args.device
    repeats = _repeats(args, 3, 1, 5)
    warmup = args.warmup if args.warmup is not None else 1
    cases, rows = [], []
    for set_name, sample in CASES:
        ds = load_case(set_name, sample, args.data, args.size)
        label = f"{ds.fine_shape[0]}x{ds.fine_shape[1]} K={ds.K}"
        print(f"[{dev}] iterative {label} ...", flush=True)
        t0 = time.perf_counter()
        default = cusim.reconstruct(ds, "iterative", device=dev)
        first_s = time.perf_counter() - t0
        n = int(default.extra["steps_run"])
        frames = ds.frames()
        op = ds.operator(device=dev)
        peer = AutogradOperator(TorchFFTPhysics.like(op, ds.get_patterns(), ds.optics()), op)
        cfg = iterative.IterativeConfig(stop="max", n_iter=n)
        out = C.time_interleaved({"cusim": lambda: iterative.solve(frames, op, cfg),
                                  "torch_fft_autograd": lambda: iterative.solve(frames, peer, cfg)},
                                 repeats, warmup, dev, on_error=_status)
        for res in out.values():
            res["n_iter"] = n
        if out["torch_fft_autograd"].get("status") == "ok":
            out["torch_fft_autograd"]["self_check_rel_err"] = _guarded(
                lambda: check_against(op, ds.get_patterns(), ds.optics()))
        free_gpu(dev)
        r = ratio(out, "torch_fft_autograd")
        cases.append({"label": label, "set": set_name, "sample": sample, "fine": list(ds.fine_shape), "K": ds.K,
                      "default_run": {"wall_s_first_call": first_s, "steps_run": n,
                                      "stop_reason": default.extra.get("stop_reason")},
                      "results": out, "ratios": {"torch_fft_autograd/cusim": r}})
        for k, name in (("cusim", "cusim FISTA+TV"), ("torch_fft_autograd", "peer (b) physics, same FISTA")):
            rows.append([label, name, str(n), _fmt(out[k]), str(out[k].get("repeats", "")),
                         f"{r:.2f}x" if k != "cusim" and r else "", out[k].get("reason", "")])
    return {"name": "iterative", "unit": "one reconstruction, ms", "cases": cases, "targets": [],
            "args": {"repeats": repeats, "warmup": warmup, "size": args.size},
            "tables": [(f"iterative reconstruction (FISTA + TV, n_iter of cusim's discrepancy stop), median ms ({dev})",
                        ["case", "implementation", "iterations", "median ms", "n", "peer/cusim", "note"], rows)]}
