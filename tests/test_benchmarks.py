"""The benchmark peers compute the same model as SIMOperator (so the speed ratios compare like with
like), and the prepared GPU script fails fast and clearly where there is no GPU. No timings here."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from benchmarks.peers import numpy_direct, torch_fft
from cusim import SIMOperator, optics
from conftest import ROOT


@pytest.fixture
def op_and_psf():
    rng = np.random.default_rng(0)
    psf = optics.gaussian_psf(1.5, size=9)
    return SIMOperator(rng.random((5, 24, 36)), psf, 3, dtype="float64", device="cpu"), psf


def test_numpy_peer_reproduces_the_operator(op_and_psf):
    assert numpy_direct.check_against(*op_and_psf) < 1e-10


def test_torch_peer_reproduces_the_operator_with_autograd_adjoint(op_and_psf):
    op, psf = op_and_psf
    assert torch_fft.check_against(op, psf, device="cpu") < 1e-10


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine runs the real check")
def test_gpu_check_fails_fast_with_one_clear_line_without_a_gpu(tmp_path):
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                         timeout=60, env={"OUT": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 1
    assert "gpu_check: no NVIDIA GPU here" in res.stdout
    assert (tmp_path / "gpu_check.log").exists()
