"""Many inputs and long time series on a Dask cluster: :func:`reconstruct_many`.

This is the one module that knows Dask (DESIGN section 3); a reconstruction below it stays a plain function
of one dataset. The work is split into tasks, each one input, or one chunk of consecutive time points of a
long series:

- A chunk is a warm-start chain of its own, as :func:`cusim.reconstruct` runs a series: its first time
  point starts cold (for the PINN: fresh weights from ``seed``), the rest warm-start from the point
  before. So the first point of every chunk is exactly the reconstruction of that point started cold,
  and the chunks of one series may run on different workers at once.
- Workers read their input by path (on a cluster the files must be on a file system the workers share
  with the client) and return the image; the client puts the chunks of a series together in time order
  and writes ``/recon/<name>`` once per input, atomically and under the writers' lock (:mod:`cusim.io`),
  with the provenance of :meth:`cusim.recon.Result.to_recon` plus the ``worker`` and ``host`` it ran on
  (and ``time_chunks`` for a series that was split). An interrupted client therefore never leaves a
  half-written file.
- ``resume`` skips an input whose output already holds ``/recon/<name>`` with the same method and
  settings (the recorded ``params``, :func:`cusim.recon.recorded_params`, and for the PINN the same split
  of a series into chunks, whose time points warm-start one another); an existing one with other
  settings is replaced only with ``force``.
- A failing input is a result with ``status="failed"`` and a one-line ``error``; the others go on.
- Threads: each task sets cusim's thread count (:mod:`cusim._threads`) to ``threads`` if given, else to
  the cores of its worker divided by the task slots (worker threads) on that host, so several workers on
  one machine do not oversubscribe it.

Without a ``client`` a local cluster is started for the call (:func:`local_client`) and closed after it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import math
import re
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

H5_SUFFIXES = (".h5", ".hdf5")
STATUSES = ("done", "skipped", "failed")


@dataclass
class InputResult:
    """What happened to one input: ``status`` done | skipped | failed, where the result went (``target``),
    steps and stop reason (iterative methods), compute time in the tasks and the worker(s)."""

    path: Path
    target: Path
    method: str
    status: str = "pending"
    runtime_s: float | None = None
    steps: int | None = None
    stop: str | None = None
    worker: str = ""
    error: str | None = None
    time_chunks: list = field(default_factory=list)


# -- inputs ----------------------------------------------------------------------------------------
def expand_inputs(specs) -> list[Path]:
    """The input files named by ``specs``: a file, a folder (its ``*.h5`` / ``*.hdf5`` files) or a glob
    pattern (``data/*.h5``, quoted against the shell), each in sorted order, duplicates dropped. A spec
    that names nothing is a ValueError."""
    out, seen = [], set()
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in H5_SUFFIXES and q.is_file()
                           and not q.name.startswith("."))
            if not found:
                raise ValueError(f"{spec}: is a folder without .h5 / .hdf5 files to run")
        elif glob.has_magic(str(spec)) and not p.exists():
            found = sorted(Path(q) for q in glob.glob(str(spec)) if Path(q).is_file())
            if not found:
                raise ValueError(f"{spec}: no file matches this pattern")
        else:
            found = [p]  # a missing file is that input's failure, reported with the others
        for q in found:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                out.append(q)
    if not out:
        raise ValueError("inputs: expected at least one file, folder or pattern")
    return out


def plan_chunks(T: int, size: int) -> list[tuple[int, int]]:
    """Consecutive time ranges ``(t0, t1)`` of at most ``size`` points covering ``0..T``."""
    return [(t0, min(t0 + size, T)) for t0 in range(0, T, max(1, size))]


# -- the cluster -----------------------------------------------------------------------------------
def _gpu_count() -> int:
    from .backend import gpu_available  # noqa: PLC0415

    if not gpu_available():
        return 0
    import cupy  # noqa: PLC0415

    return int(cupy.cuda.runtime.getDeviceCount())


@contextlib.contextmanager
def local_client(workers: int | None = None, device: str = "auto"):
    """A ``distributed.Client`` of a local cluster sized to this machine, closed on exit.

    With a GPU (``device`` auto or cuda) and no ``workers``: one worker per GPU, through dask-cuda's
    ``LocalCUDACluster`` when it is installed (``cusim[dask-cuda]``). With ``workers``: that many
    single-threaded worker processes, on a GPU machine all sharing the GPU(s) CUDA shows them (worth it
    where the step is host-bound: docs/performance.md, "Many inputs"). On the CPU by default one worker
    process per core this process may use; cusim's threads are split among them.
    """
    import logging  # noqa: PLC0415

    from ._syserrors import import_extra  # noqa: PLC0415
    from ._threads import available_cores  # noqa: PLC0415
    from ._validate import check_int  # noqa: PLC0415

    distributed = import_extra("distributed", "dask", "reconstructing several inputs on a Dask cluster")
    Client, LocalCluster = distributed.Client, distributed.LocalCluster
    if workers is not None:
        check_int("workers", workers, 1)
    gpus = _gpu_count() if device != "cpu" else 0
    # CRITICAL: a failing input is one "failed:" line of ours; at ERROR each also printed Dask's "Compute Failed"
    # with the worker's traceback
    quiet = {"silence_logs": logging.CRITICAL, "dashboard_address": None}
    cluster = None
    with warnings.catch_warnings():  # the scheduler's HTTP server (no dashboard) takes another port than 8787 if
        warnings.filterwarnings("ignore", message="Port .* is already in use")  # that one is taken: not the user's
        if gpus and workers is None:
            try:
                from dask_cuda import LocalCUDACluster  # noqa: PLC0415

                cluster = LocalCUDACluster(threads_per_worker=1, **quiet)
            except ImportError:
                workers = gpus
        if cluster is None:
            cluster = LocalCluster(n_workers=workers or gpus or available_cores(), threads_per_worker=1,
                                   processes=True, **quiet)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _host_slots(client) -> tuple[dict[str, int], int]:
    """(worker address -> task slots (threads) of all workers on that worker's host, all slots of the cluster)."""
    info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
    workers = info["workers"]
    per_host: dict[str, int] = {}
    for w in workers.values():
        per_host[w["host"]] = per_host.get(w["host"], 0) + int(w.get("nthreads", 1))
    return {addr: per_host[w["host"]] for addr, w in workers.items()}, sum(per_host.values())


def _takes_n_workers(client) -> bool:
    import inspect  # noqa: PLC0415

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


# -- one task ----------------------------------------------------------------------------------------
def _task_threads(threads: int | None, slots: dict[str, int]) -> int:
    from ._threads import available_cores, set_threads  # noqa: PLC0415

    if threads is None:
        try:
            from distributed import get_worker  # noqa: PLC0415

            worker = get_worker()
            share = slots.get(worker.address) or worker.state.nthreads
        except (ImportError, ValueError, AttributeError):  # not in a worker (a synchronous scheduler)
            share = 1
        threads = max(1, available_cores() // max(1, share))
    return set_threads(threads)


def _run_task(path: str, chunk, method: str, device: str, estimate_patterns: bool, params: dict,
              threads: int | None, slots: dict[str, int]) -> dict:
    """Load ``path``, keep the time points ``chunk = (t0, t1)`` of a series (None: all), reconstruct;
    returns the Result with the worker and host it ran on."""
    from . import recon  # noqa: PLC0415
    from .io import load  # noqa: PLC0415

    _task_threads(threads, slots)
    ds = load(path)
    estimate = estimate_patterns
    if chunk is not None:
        if estimate_patterns:  # the series' patterns, from its time point 0 as one run of it estimates them
            estimate = recon.with_estimated_patterns(ds)[1]  # (each chunk's own first point: other patterns)
        t0, t1 = chunk
        gt = ds.ground_truth
        ds = dataclasses.replace(ds, raw=ds.raw[t0:t1], recons={},
                                 ground_truth=gt[t0:t1] if gt is not None and gt.ndim == 3 else gt)
    try:
        res = recon.reconstruct(ds, method, device=device, estimate_patterns=estimate, **params)
    except ValueError as e:  # "time point 0" of a chunk that starts at t0 is the series' time point t0
        if chunk is None or not chunk[0]:
            raise
        text = re.sub(r"\btime point (\d+)", lambda m: f"time point {int(m.group(1)) + chunk[0]}", str(e))
        try:
            again = type(e)(text)
        except TypeError:
            again = ValueError(text)
        raise again from None
    from .report import image_metrics  # noqa: PLC0415

    # scored as cusim run scores one file (default border and normalisation), per chunk: _assemble averages them
    metrics = image_metrics(ds, res.image)
    try:
        from distributed import get_worker  # noqa: PLC0415

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = "local"
    T = ds.T if ds.is_series else 1
    return {"result": res, "worker": worker, "host": socket.gethostname(), "metrics": metrics, "T": T}


def _assemble(parts: list[dict]):
    """The Result of a whole input from its chunks' (in time order)."""
    from .recon import Result  # noqa: PLC0415

    rs = [p["result"] for p in parts]
    if len(rs) == 1:
        return rs[0]
    losses = [r.loss for r in rs if r.loss is not None]
    extra = dict(rs[-1].extra)  # what a result records "of the last time point" (sigma, camera, ...): the last chunk's
    if "steps_run" in extra:
        extra["steps_run"] = int(sum(r.extra.get("steps_run", 0) for r in rs))
    if "stop_reason" in extra:
        extra["stop_reason"] = "; ".join(str(r.extra.get("stop_reason", "")) for r in rs)
    return Result(np.concatenate([r.image for r in rs]), rs[0].method, rs[0].params,
                  ", ".join(dict.fromkeys(r.device for r in rs)), float(sum(r.runtime_s for r in rs)),
                  np.concatenate(losses) if losses else None, extra)


def _write(job: InputResult, parts: list[dict], name: str, out_dir, force: bool) -> None:
    from .io import add_recon, save_recon_as  # noqa: PLC0415

    res = _assemble(parts)
    extra = res.recorded_extra()  # as `cusim run` on one file records it
    metrics = _combined_metrics(parts)
    if metrics is not None:
        extra["metrics"] = metrics
    where = {"worker": ", ".join(dict.fromkeys(p["worker"] for p in parts)),
             "host": ", ".join(dict.fromkeys(p["host"] for p in parts))}
    if len(parts) > 1:
        where["time_chunks"] = [list(c) for c in job.time_chunks]
    rec = res.to_recon(**extra, **where)
    if out_dir is None:
        add_recon(job.path, name, rec, force=force)
    else:
        save_recon_as(job.path, job.target, name, rec, force=force)
    job.status, job.runtime_s, job.worker = "done", res.runtime_s, where["worker"]
    job.steps, job.stop = res.extra.get("steps_run"), res.extra.get("stop_reason")


def _combined_metrics(parts: list[dict]) -> dict | None:
    """The chunks' metrics as one run over the whole series scores it: each a mean over its time points, so the
    whole's is their mean weighted by time points (an FRC cut-off of None, beyond Nyquist, in any: None)."""
    ms = [p.get("metrics") for p in parts]
    if not ms or any(m is None for m in ms):
        return None
    w = np.array([p.get("T", 1) for p in parts], dtype=np.float64)
    out = dict(ms[-1])
    for key in ("psnr_db", "ssim", "nrmse"):
        out[key] = float(np.average([m[key] for m in ms], weights=w))
    cut = [m["frc_cutoff_cycles_per_px"] for m in ms]
    out["frc_cutoff_cycles_per_px"] = None if None in cut else float(np.average(cut, weights=w))
    out.pop("time_points", None)
    if w.sum() > 1:  # as report.image_metrics records a series' mean
        out["time_points"] = int(w.sum())
    return out


# -- planning ----------------------------------------------------------------------------------------
def _message(path: Path, exc: BaseException) -> str:
    """One line for a failed input, naming it."""
    from ._syserrors import describe_os_error, out_of_memory  # noqa: PLC0415

    if isinstance(exc, OSError):
        text = describe_os_error(exc, path)
    elif (oom := out_of_memory(exc)) is not None:
        text = oom
    elif isinstance(exc, ValueError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    for named in dict.fromkeys((str(path), str(Path(path).resolve()))):  # a worker names the resolved path
        if text.startswith(named):
            return f"{path}{text[len(named):]}"
    return f"{path}: {text}"


def _canonical(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _plan(job: InputResult, name: str, expected: dict, resume: bool, force: bool, slots_total: int,
          time_chunk: int | None) -> None:
    """Decide, from the files' headers only, whether ``job`` runs (and in which chunks), is skipped
    (``resume``, same settings) or fails now (unreadable, or a result of other settings without ``force``)."""
    from .io import DatasetError, acquisition, peek  # noqa: PLC0415

    try:
        shape, attrs = peek(job.path, name)
        if job.target != job.path:
            if job.target.exists():
                attrs = peek(job.target, name)[1]
                mine, theirs = acquisition(job.path), acquisition(job.target)
                if mine != theirs:  # another acquisition's file: its write would refuse it after the compute
                    differ = ", ".join(f"{k} {theirs[k]} against {mine[k]}" for k in mine if mine[k] != theirs[k])
                    job.status, job.error = "failed", (
                        f"{job.target}: exists already and holds another acquisition than {job.path} ({differ}); "
                        "choose another --out folder")
                    return
            elif attrs is not None and not force:  # the new file starts as a copy of the input, this result too
                job.status, job.error = "failed", (
                    f"{job.target}: /recon/{name}: exists already in the input {job.path}, which the new file "
                    "copies; use --force to replace it in the copy, or another --name")
                return
            else:
                attrs = None
    except DatasetError as e:
        job.status, job.error = "failed", _message(job.path, e)
        return
    if len(shape) == 4 and shape[0] > 1:
        T = shape[0]
        size = time_chunk or math.ceil(T / max(1, slots_total))
        job.time_chunks = plan_chunks(T, size)
    else:
        job.time_chunks = [None]
    if attrs is not None:
        same = attrs.get("method") == job.method and _canonical(attrs.get("params")) == _canonical(expected)
        other_split = None
        if job.method == "pinn":  # its time points warm-start within a chunk: another split, another result
            split = [list(c) for c in job.time_chunks] if len(job.time_chunks) > 1 else None
            if same and _canonical(attrs.get("time_chunks")) != _canonical(split):
                other_split = (attrs.get("time_chunks"), split)
            same = same and other_split is None
        if resume and same:
            job.status = "skipped"
            job.worker, job.runtime_s = str(attrs.get("worker", "")), attrs.get("runtime_s")
            return
        if not force:
            if other_split is not None:  # the same settings; the number of workers set another split
                def chunks(c):
                    return "the whole series" if c is None else f"time points {c}"
                why = (f"with the same settings fitted over {chunks(other_split[0])}, now {chunks(other_split[1])} "
                       "(the PINN's warm starts restart at each chunk, which --workers or time_chunk sets); "
                       f"{'run with' if resume else 'add --resume and'} that run's --workers to skip it, ")
            else:
                why = ("with the same settings; " if same else "with other settings; ")
            job.status, job.error = "failed", (
                f"{job.target}: /recon/{name}: exists already {why}use --force to replace it"
                + ("" if same or other_split is not None else " (--resume skips only results of the same settings)")
                + " or another --name")
            return


def reconstruct_many(paths, method: str = "widefield", client=None, *, name: str | None = None,
                     out_dir=None, force: bool = False, resume: bool = False, time_chunk: int | None = None,
                     device: str = "auto", estimate_patterns: bool = False, threads: int | None = None,
                     workers: int | None = None, on_result=None, **params) -> list[InputResult]:
    """Reconstruct every input of ``paths`` (files, folders, glob patterns: :func:`expand_inputs`) with
    ``method`` on a Dask cluster; returns one :class:`InputResult` per input, in input order.

    ``client``: a ``distributed.Client`` (the user's own, e.g. in a notebook); None starts a local cluster
    for this call (:func:`local_client`, ``workers`` processes). Each result is added to its input as
    ``/recon/<name>`` (default: the method), or with ``out_dir`` written to ``out_dir/<input's name>``
    (a copy of the input with the result; the input is only read). ``time_chunk``: most time points per
    task of a series (default: the series split evenly over the cluster's task slots). ``on_result(r)``
    is called on the client as each input is done, skipped or failed. ``params`` are the method's
    settings, checked once here before any work (ValueError); the PINN's checkpoints are not used here.
    """
    from . import recon  # noqa: PLC0415

    if method not in recon.METHODS:
        raise ValueError(f"method: expected one of {list(recon.METHODS)}, got {method!r}")
    if estimate_patterns and method not in recon.PATTERN_METHODS:
        raise ValueError(f"estimate_patterns: method {method!r} uses no patterns")
    from ._validate import check_int  # noqa: PLC0415

    for key, value in (("time_chunk", time_chunk), ("threads", threads), ("workers", workers)):
        if value is not None:
            check_int(key, value, 1)
    from ._files import resolve  # noqa: PLC0415
    from ._validate import check_choice  # noqa: PLC0415
    from .backend import DEVICES  # noqa: PLC0415
    from .io import check_recon_name  # noqa: PLC0415

    check_choice("device", device, DEVICES)  # its spelling (whether a worker has a GPU is the worker's to say)
    params = {k: v for k, v in params.items() if k not in ("checkpoint", "resume", "callback")}
    expected = recon.recorded_params(method, params, estimate_patterns)  # validates the settings
    name = method if name is None else name  # "" is refused below, not the method's name
    out_dir = None if out_dir is None else Path(out_dir)
    if out_dir is not None and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: expected an existing folder for the results of several inputs")
    jobs = [InputResult(p, p if out_dir is None else out_dir / p.name, method) for p in expand_inputs(paths)]
    check_recon_name(jobs[0].target, name)  # one name for all: refused before any work, not after each input's
    targets = [j.target.resolve() for j in jobs]
    if out_dir is not None and len(set(targets)) < len(targets):
        raise ValueError(f"{out_dir}: two inputs of the same file name would write one result file")
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(local_client(workers, device))
        slots, total = _host_slots(client)
        for job in jobs:
            if out_dir is not None and resolve(job.target) == resolve(job.path):
                job.status, job.error = "failed", (
                    f"{job.target}: is the input itself (the results' folder is the input's own); write the results "
                    "to another folder, or add them to the inputs")
            else:
                _plan(job, name, expected, resume, force, total, time_chunk)
            if job.status != "pending" and on_result is not None:
                on_result(job)
        _run(client, [j for j in jobs if j.status == "pending"], name, out_dir, force, method, device,
             estimate_patterns, params, threads, slots, on_result)
    return jobs


def _run(client, jobs, name, out_dir, force, method, device, estimate_patterns, params, threads, slots,
         on_result) -> None:
    """Submit every task of ``jobs``, write each input once all its chunks are back; on any interruption
    (Ctrl-C) cancel what is left before passing it on."""
    from distributed import as_completed  # noqa: PLC0415

    futures, parts = {}, {}
    for i, job in enumerate(jobs):
        parts[i] = [None] * len(job.time_chunks)
        for c, chunk in enumerate(job.time_chunks):
            fut = client.submit(_run_task, str(job.path.resolve()), chunk, method, device, estimate_patterns, params,
                                threads, slots, pure=False)
            futures[fut] = (i, c)
    try:
        for fut in as_completed(list(futures)):
            i, c = futures[fut]
            job = jobs[i]
            if job.status == "failed":
                continue
            try:
                parts[i][c] = fut.result()
                if any(p is None for p in parts[i]):
                    continue
                _write(job, parts[i], name, out_dir, force)
            except Exception as e:  # noqa: BLE001  (one input's failure, reported; the others go on)
                job.status, job.error = "failed", _message(job.path, e)
                client.cancel([f for f, (j, _) in futures.items() if j == i and not f.done()])
            parts[i] = parts[i] if job.status == "pending" else None
            if on_result is not None:
                on_result(job)
    except BaseException:
        client.cancel(list(futures))
        raise
