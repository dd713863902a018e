"""The CLI's demo and the README's API example, run as a user would."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from cusim.cli import app
from conftest import ROOT


def test_readme_api_example_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The operator in your code\n\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})


def test_demo_writes_the_figure_and_reports_the_adjoint_check(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--size", "64", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    png = tmp_path / "d" / "forward_model.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    err = float(re.search(r"relative error ([0-9.e+-]+)", res.output).group(1))
    assert err < 1e-5


def test_demo_bad_options_exit_1_with_one_line(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--size", "17", "--out", str(tmp_path)])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "--size" in res.output
    res = CliRunner().invoke(app, ["demo", "--device", "tpu", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "device: expected one of" in res.output
