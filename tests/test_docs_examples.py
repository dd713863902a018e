"""Every `cusim ...` command shown in README.md and docs/*.md runs as written, in order, in one folder
beside a link to ../shared (as a user who copies them would); and the README's API block prints what
it says it prints.

The one liberty taken: the PINN's step budget is capped at 2 steps (through PINNConfig), so that the
README's 1000-step examples finish in seconds, and a pattern refinement starts at step 0 within them; every option
is still parsed, validated and used.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

import cusim
from cusim.cli import app
from cusim.recon.config import PINNConfig
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shell_examples(path) -> list[str]:
    """The `cusim` command lines of the shell blocks of a Markdown file (continuations joined, comments
    dropped); command templates such as `cusim import paper <set_dir> --sample N` are not runnable."""
    text = path.read_text()
    out = []
    for lang, body in re.findall(r"^ *```(\w*)\n(.*?)^ *```", text, re.S | re.M):
        if lang not in ("", "bash", "sh", "console"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("cusim ") and not re.search(r"[<\[]", line):
                out.append(line)
    return out


def test_the_docs_have_cli_examples_to_run():
    found = {p.name: len(shell_examples(p)) for p in DOCS}
    assert found["README.md"] >= 8 and found["data.md"] >= 8, found


@pytest.fixture
def two_step_pinn(monkeypatch):
    original = PINNConfig.from_params.__func__

    def capped(cls, params):
        refine = {"refine_start": 0} if params.get("refine_patterns") else {}  # it starts at 100 otherwise
        return original(cls, {**params, "steps": min(int(params.get("steps", 2)), 2), **refine})

    monkeypatch.setattr(PINNConfig, "from_params", classmethod(capped))


def _raw_tif(folder):
    """The README's `raw.tif`: a 3-angle x 5-phase stack of the optics its import line states."""
    ds = cusim.simulate(phantom="filaments", shape=(256, 256), upsample=2, family="linear", n_angles=3, n_phases=5,
                        na=1.49, wavelength_nm=525, pixel_size_nm=65, snr=30, seed=1)
    tifffile.imwrite(folder / "raw.tif", ds.raw.astype(np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("doc", [p for p in DOCS if shell_examples(p)], ids=lambda p: p.name)
def test_every_cli_example_in_the_docs_runs_as_written(doc, tmp_path, monkeypatch, shared_data, two_step_pinn):
    commands = shell_examples(doc)
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(shared_data.parent)  # ../shared, as beside a clone
    _raw_tif(work)
    monkeypatch.chdir(work)
    for line in commands:
        res = CliRunner().invoke(app, shlex.split(line)[1:])
        assert res.exit_code == 0, f"{doc.name}: `{line}` exited {res.exit_code}:\n{res.output}"


def test_readme_operator_example_prints_an_exact_adjoint_and_the_norm():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The operator in your code\n\n```python\n(.*?)```", text, re.S).group(1)
    ns: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, "README.md", "exec"), ns)
    err, norm = (float(v) for v in printed.getvalue().split())
    A = ns["A"]
    assert err < 1e-5  # float32 (DESIGN section 1)
    assert err == pytest.approx(cusim.dottest(A), rel=1e-6)
    # ||A||_2 bounds ||A x|| / ||x|| from above and is reached by A^T A's top eigenvector
    x = ns["x"]
    assert np.linalg.norm(A.forward(x)) / np.linalg.norm(x) <= norm * (1 + 1e-4)
    assert ns["y"].shape == (9, 120, 120) and ns["g"].shape == (480, 480)
    grad = ns["t"].grad
    assert grad is not None and grad.shape == (480, 480) and bool(grad.isfinite().all())
