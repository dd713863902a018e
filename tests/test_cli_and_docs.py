"""The CLI's demo, run as a user would (the docs' examples: tests/test_docs_examples.py)."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from cusim import load
from cusim.cli import app


def test_demo_reconstructs_with_the_pinn_and_writes_file_and_figure(tmp_path):
    out = tmp_path / "d"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--size", "64", "--steps", "60", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ds = load(out / "demo.h5")
    assert set(ds.recons) == {"widefield", "pinn"} and ds.ground_truth.shape == (64, 64)
    gain = float(re.search(r"([+-][0-9.]+)\s+dB\s+over\s+widefield", res.output).group(1))
    assert gain > 3.0  # even 60 steps on a 64 x 64 field beat the widefield image clearly


def test_demo_runs_the_fast_step_where_asked_and_says_which_step_ran(tmp_path, monkeypatch):
    from cusim import demo

    runs = {}
    for flag in ("--fast", "--no-fast"):
        out = tmp_path / flag
        res = CliRunner().invoke(app, ["demo", "--out", str(out), "--size", "48", "--steps", "5", "--device", "cpu",
                                       flag])
        assert res.exit_code == 0, res.output
        runs[flag] = (" ".join(res.output.split()), load(out / "demo.h5").recons["pinn"].attrs["params"])
    assert "the fast step" in runs["--fast"][0] and runs["--fast"][1]["precision"] == "bfloat16"
    assert "the float32 step" in runs["--no-fast"][0] and runs["--no-fast"][1]["precision"] == "float32"
    # unasked, the CPU's own bfloat16 support decides
    for native, precision in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(demo, "native_bfloat16_cpu", lambda native=native: native)
        res = demo.pinn_demo(tmp_path / str(native), size=48, steps=5, device="cpu")
        assert res["fast"] is native
        assert load(res["file"]).recons["pinn"].attrs["params"]["precision"] == precision


def test_demo_replaces_only_what_an_earlier_demo_wrote_unless_forced(tmp_path):
    """A user's own dataset named demo.h5 in --out was replaced without --force (the demo had no --force)."""
    import hashlib  # noqa: PLC0415

    import cusim  # noqa: PLC0415

    mine = cusim.io.save(cusim.simulate(shape=(32, 32), seed=3), tmp_path / "demo.h5")
    digest = hashlib.sha256(mine.read_bytes()).hexdigest()
    args = ["demo", "--out", str(tmp_path), "--size", "32", "--steps", "2", "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0, res.output
    assert "demo.h5 exists and no earlier cusim demo wrote it; use --force" in " ".join(res.output.split())
    assert hashlib.sha256(mine.read_bytes()).hexdigest() == digest and not (tmp_path / "demo.png").exists()
    for extra in (["--force"], []):  # forced once; then the file is a demo's own, replaced without it
        res = CliRunner().invoke(app, args + extra)
        assert res.exit_code == 0, res.output
        assert load(tmp_path / "demo.h5").attrs["made_by"] == "cusim demo"
    # a demo of an older cusim (no made_by) is still a demo's own
    import h5py  # noqa: PLC0415

    with h5py.File(tmp_path / "demo.h5", "a") as f:
        del f.attrs["made_by"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "demo.h5", "a") as f:  # one interrupted before its PINN finished: widefield alone
        del f.attrs["made_by"], f["recon/pinn"], f["recon/pinn_loss"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output


def test_demo_bad_options_exit_1_with_one_line(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--size", "17", "--out", str(tmp_path)])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "--size" in res.output
    res = CliRunner().invoke(app, ["demo", "--device", "tpu", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "error: --device: expected one of" in res.output  # the option, not "device"
    res = CliRunner().invoke(app, ["demo", "--time-limit", "-1", "--out", str(tmp_path)])
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0 and "--time-limit: expected" in res.output


def test_demo_ends_its_steps_at_the_time_limit_and_says_so(tmp_path):
    from cusim import demo
    from cusim.recon.config import DEMO_TIME_LIMIT, FAST

    # a limit every step passes: the first block of steps ends the run (the default limit, DEMO_TIME_LIMIT, is 50 s):
    # one step in float32, FAST's sync_every in the fast step (the demo's default where the CPU has native bfloat16,
    # so both are named here: the test must not depend on the host's CPU)
    for flag, block in (("--no-fast", 1), ("--fast", FAST["sync_every"])):
        res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / flag), "--size", "48", "--steps", "30",
                                       "--device", "cpu", "--time-limit", "1e-9", flag])
        text = " ".join(res.output.split())
        assert res.exit_code == 0, res.output
        assert f"{block} steps in" in text and f"stopped by time limit (1e-09 s) at step {block}" in text, (flag, text)
        assert load(tmp_path / flag / "demo.h5").recons["pinn"].attrs["params"]["time_limit"] == 1e-9
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "free"), "--size", "48", "--steps", "3",
                                   "--device", "cpu", "--time-limit", "0"])  # 0: no limit
    assert res.exit_code == 0 and "3 steps in" in res.output, res.output
    assert load(tmp_path / "free" / "demo.h5").recons["pinn"].attrs["params"]["time_limit"] is None
    # the library's demo applies the default limit too
    lib = demo.pinn_demo(tmp_path / "lib", size=48, steps=2, device="cpu")
    assert load(lib["file"]).recons["pinn"].attrs["params"]["time_limit"] == DEMO_TIME_LIMIT == 50.0


def test_old_option_spellings_still_work_for_one_release_with_a_note(tmp_path):
    from cusim import io, simulate

    path = io.save(simulate(shape=(48, 48), seed=0), tmp_path / "s.h5")
    res = CliRunner().invoke(app, ["run", str(path), "--method", "iterative", "--reg", "0.01", "--margin", "0",
                                   "--iterations", "3", "--metrics-border", "4"])
    assert res.exit_code == 0, res.output
    assert "note: --reg is deprecated" in res.output and "use --prior-weight" in res.output
    assert "note: --margin is deprecated" in res.output and "use --margin-camera" in res.output
    rec = load(path).recons["iterative"].attrs
    assert rec["params"]["prior_weight"] == 0.01 and rec["params"]["margin_camera"] == 0
    assert rec["params"]["prior"] == "tv" and rec["params"]["n_iter"] == 3  # every setting, resolved
    res = CliRunner().invoke(app, ["run", str(path), "--method", "iterative", "--reg", "0.01",
                                   "--prior-weight", "0.02", "--metrics-border", "4", "--force"])
    assert res.exit_code == 1 and "give only --prior-weight" in res.output


def test_options_of_another_method_are_refused_not_ignored(tmp_path):
    from cusim import io, simulate

    path = io.save(simulate(shape=(48, 48), seed=0), tmp_path / "s.h5")
    for args, flag in ((["--method", "wiener", "--steps", "5"], "--steps"),
                       (["--method", "widefield", "--wiener-w", "0.1"], "--wiener-w"),
                       (["--method", "pinn", "--iterations", "5"], "--iterations"),
                       (["--method", "wiener", "--prior", "tv"], "--prior")):
        res = CliRunner().invoke(app, ["run", str(path), *args])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {flag}: only for"), res.output
    res = CliRunner().invoke(app, ["run", str(path), "--method", "pinn", "--lr", "-1"])
    assert res.exit_code == 1 and "--lr: expected a finite number > 0, got -1" in res.output
    assert "pinn" not in load(path).recons


def test_options_that_do_not_parse_exit_1_naming_what_was_given():
    """Typer's own usage errors are bad input like any other: exit 1 (not click's 2), the value named."""
    cases = [(["run", "x.h5", "--steps", "abc"], "--steps", "'abc'"),
             (["run", "x.h5", "--roi", "1", "2", "3", "-o", "y.h5"], "--roi", "'1 2 3 -o'"),  # -o taken as the 4th
             (["estimate", "x.h5", "--min-peak-snr=x"], "--min-peak-snr", "'x'"),
             (["import", "stack", "a.tif", "--angles", "x"], "--angles", "'x'"),
             (["run", "x.h5", "--nope"], "--nope", "No such option"),
             (["run", "x.h5", "-m"], "-m", "requires an argument"),
             (["runn"], "runn", "Did you mean 'run'")]
    for args, where, what in cases:
        res = CliRunner().invoke(app, args)
        text = " ".join(res.output.replace("│", " ").split())
        assert res.exit_code == 1, (args, res.output)
        assert where in text and what in text and "Traceback" not in text, (args, text)
    for bare in ([], ["import"]):  # a bare group prints its help, as before
        res = CliRunner().invoke(app, bare)
        assert res.exit_code == 2 and "Usage:" in res.output
    res = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "--roi" in res.output and "Y X H W" in res.output


def test_the_command_list_gives_each_command_its_first_paragraph_on_one_line():
    """`cusim --help` lists every command with its docstring's first paragraph as one sentence; Typer's rich list
    kept the docstring's line breaks, so a wide terminal showed 'and compare' / 'with the widefield ...' on two."""
    import inspect

    import typer

    group = typer.main.get_command(app)
    res = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0
    rows = [" ".join(line.replace("│", " ").split()) for line in res.output.splitlines()]
    for name, cmd in group.commands.items():
        first = " ".join(inspect.cleandoc(cmd.help).split("\n\n")[0].split())
        assert f"{name} {first}" in rows, (name, first)


def test_options_that_would_change_nothing_in_this_run_are_refused(tmp_path):
    """Each ran, changed nothing and was recorded as applied: --blend-sigma with --blend none, --warm-start-steps on
    one time point, --no-graph on the CPU; --name "" fell back to /recon/pinn; --margin-camera -1 named
    margin_camera after the file."""
    import cusim  # noqa: PLC0415

    path = cusim.io.save(cusim.simulate(shape=(32, 32), seed=0), tmp_path / "a.h5")
    pinn = ["run", str(path), "--method", "pinn", "--steps", "2", "--device", "cpu"]
    for extra, says in ((["--blend", "none", "--blend-sigma", "2"], "--blend-sigma: only with --blend iterative"),
                        (["--warm-start-steps", "3"], "--warm-start-steps: " + str(path) + " holds one time point"),
                        (["--no-graph"], "--no-graph: the CUDA graph is captured on CUDA only; this run is on the CPU"),
                        (["--name", ""], "/recon/: invalid name"),
                        (["--margin-camera", "-1"], "error: --margin-camera: expected an integer >= 0, got -1"),
                        (["--refine-patterns"], "--refine-patterns: the patterns are refined from step 100 on")):
        res = CliRunner().invoke(app, pinn + extra)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1 and says in lines[0], (extra, res.output)
    assert not load(path).recons
    # with --device auto the run may be on a GPU: --no-graph is not refused there (here: the CPU, where it is moot)
    res = CliRunner().invoke(app, ["run", str(path), "--method", "pinn", "--steps", "2", "--device", "auto",
                                   "--no-graph", "--blend", "none"])
    assert res.exit_code == 0, res.output
