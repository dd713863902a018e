"""Shared fixtures: the shared data folder, and the `gpu` marker that skips cleanly without a GPU; and, under
pytest-xdist (`-n auto`, the README's test command), one worker per core this process may use, each pinned to its
own share of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cusim.backend import gpu_available

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MAX_WORKERS = 8  # pytest -n auto


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook; without xdist it is never called
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core of this process's CPU affinity (xdist's own count is the machine's
    physical cores, which a container or `taskset` may not give us), at most MAX_WORKERS: with `--dist loadfile`
    the longest test file (a few minutes on one core) bounds the run, so more workers would each load torch for
    little gain; on a larger machine each worker then gets several cores. `-n logical` keeps xdist's meaning."""
    if config.option.numprocesses != "auto":
        return None
    from cusim._threads import available_cores  # noqa: PLC0415

    return min(available_cores(), MAX_WORKERS)


def pytest_configure(config):
    """In an xdist worker: run on this worker's share of the cores (worker i of n takes every n-th core from
    the i-th; with more workers than cores, core i modulo their number), so cusim's default thread count (the
    process's affinity) is that share and the workers never add threads beyond one per worker and core.
    Subprocesses the tests start (the CLI, Dask workers) inherit it."""
    worker = getattr(config, "workerinput", None)
    if worker is None or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    index, count = int(worker["workerid"].removeprefix("gw")), int(worker["workercount"])
    if count > 1:
        os.sched_setaffinity(0, cores[index::count] or [cores[index % len(cores)]])


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Every device-generic test runs on the CPU, and on CUDA where a GPU exists."""
    return request.param


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder {SHARED_DATA} is missing; clone cusim beside ../shared")
    return SHARED_DATA
