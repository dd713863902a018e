"""The CLI's demo and the README's API example, run as a user would."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from cusim import load
from cusim.cli import app
from conftest import ROOT


def test_readme_api_example_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The operator in your code\n\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})


def test_demo_reconstructs_with_the_pinn_and_writes_file_and_figure(tmp_path):
    out = tmp_path / "d"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--size", "64", "--steps", "60", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ds = load(out / "demo.h5")
    assert set(ds.recons) == {"widefield", "pinn"} and ds.ground_truth.shape == (64, 64)
    gain = float(re.search(r"([+-][0-9.]+)\s+dB\s+over\s+widefield", res.output).group(1))
    assert gain > 3.0  # even 60 steps on a 64 x 64 field beat the widefield image clearly


def test_demo_bad_options_exit_1_with_one_line(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--size", "17", "--out", str(tmp_path)])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "--size" in res.output
    res = CliRunner().invoke(app, ["demo", "--device", "tpu", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "device: expected one of" in res.output
