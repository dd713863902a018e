"""Shared fixtures: the shared data folder, and the `gpu` marker that skips cleanly without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from cusim.backend import gpu_available

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


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
