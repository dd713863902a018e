"""The benchmark peers compute the same model as SIMOperator (so the speed ratios compare like with
like), and the prepared GPU script fails fast and clearly where there is no GPU. No timings here."""

from __future__ import annotations

import json
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


def test_gpu_check_hands_back_the_device_tagged_tables(tmp_path):
    # The hexagonal and fast_quality parts write <name>-cuda-<gpu>.json/.md; the script copied <name>-cuda.* into
    # $OUT, which matched nothing (|| true), so a lent GPU's tables were lost with the machine. Dry run: a stub
    # nvidia-smi and a stand-in Python that writes what those benchmarks write.
    repo, bin_dir, out = tmp_path / "repo", tmp_path / "bin", tmp_path / "out"
    (repo / "benchmarks").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "gpu_check.sh", repo / "benchmarks")
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'Fake GPU, 80 GiB, 1.0'\n")
    (bin_dir / "fakepy").write_text(
        '#!/bin/bash\nfor name in hexagonal_1024 fast_quality; do case "$*" in *"benchmarks.${name%_1024}"*)\n'
        '  mkdir -p benchmarks/results; echo {} > benchmarks/results/$name-cuda-fake-gpu.json\n'
        '  echo table > benchmarks/results/$name-cuda-fake-gpu.md;; esac; done\nexit 0\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    res = subprocess.run(["bash", str(repo / "benchmarks" / "gpu_check.sh"), "hexagonal", "quality"], text=True,
                         capture_output=True, stdin=subprocess.DEVNULL, timeout=120,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "OUT": str(out), "PYTHON": str(bin_dir / "fakepy"),
                              "GPU_CHECK_BUDGET": "100"})
    assert "status 0" in res.stdout, res.stdout + res.stderr
    for name in ("hexagonal_1024", "fast_quality"):
        assert {p.name for p in out.glob(f"{name}-*")} == {f"{name}-cuda-fake-gpu.json", f"{name}-cuda-fake-gpu.md"}


def test_pinn_curve_replays_the_discrepancy_stop_of_a_real_run(shared_data, tmp_path):
    """The curve benchmark's replayed `default` rule (the discrepancy stop at cusim's settings) stops where
    `cusim.reconstruct` with that stop stops, with the same image quality (same seed, same trajectory); a
    looser tau stops earlier on the same run."""
    import json
    import sys

    import torch

    import cusim
    from benchmarks.quality import quality
    from cusim.importers import import_paper

    out = tmp_path / "c.json"
    res = subprocess.run([sys.executable, "-m", "benchmarks.pinn_curve", "--data", str(shared_data / "pinn-sim-paper"),
                          "--items", "SIM/microtubules:1", "--crop", "64", "--steps", "60", "--every", "20",
                          "--device", "cpu", "--threads", str(torch.get_num_threads()), "--rule", "default:",
                          "--rule", "loose:tau=3", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    (rec,) = json.loads(out.read_text())["samples"]
    assert [p["step"] for p in rec["curve"]] == [20, 40, 60]
    ds = import_paper(shared_data / "pinn-sim-paper" / "SIM/microtubules", 1).crop_center(64)
    # the curve is the network's image; its rule "default" is the discrepancy stop at cusim's settings
    run = cusim.reconstruct(ds, "pinn", device="cpu", steps=60, blend="none", stop="discrepancy")
    assert rec["rules"]["default"]["step"] == run.extra["steps_run"] < 60
    assert rec["rules"]["default"]["psnr_db"] == pytest.approx(quality(run.image.astype(np.float64),
                                                                       ds.ground_truth)["psnr_db"], abs=1e-6)
    assert rec["rules"]["loose"]["step"] < rec["rules"]["default"]["step"]


def test_blend_tables_difference_to_the_better_peer_where_the_paper_method_ran(tmp_path):
    """benchmarks.blend --peers: a sample the paper's method ran on is differenced to the better of it and
    FISTA + TV; one it did not run on keeps FISTA + TV, and its paper cell is '-'."""
    import json

    from benchmarks.blend import add_peers, markdown

    def q(psnr, ssim=0.9):
        return {"psnr_db": psnr, "ssim": ssim, "frc05": 0.3}

    rows = [{"set": "S", "sample": 6, "widefield": q(20.0), "fista": q(30.0), "pinn": q(31.0)},
            {"set": "S", "sample": 7, "widefield": q(20.0), "fista": q(30.0), "pinn": q(29.0)}]
    peers = {"samples": [{"set": "S", "sample": 6, "crop": 240, "methods": {"paper": q(30.5, 0.95)}},
                         {"set": "S", "sample": 7, "crop": 120, "methods": {"paper": q(40.0)}}]}  # another crop
    (tmp_path / "q.json").write_text(json.dumps(peers))
    add_peers(rows, [tmp_path / "q.json"], crop=240)
    assert "paper" in rows[0] and "paper" not in rows[1]
    text = markdown(rows)
    assert "| S | 6 | 20.00 / 0.900 | 30.00 / 0.900 | 31.00 / 0.900 | 30.50 / 0.950 | +0.50 |" in text
    assert "| S | 7 | 20.00 / 0.900 | 30.00 / 0.900 | 29.00 / 0.900 | - | -1.00 |" in text
    # means: pinn - best peer (+0.50, -1.00) -> -0.25, worst -1.00; the paper column averages its one sample
    assert "30.00 / 0.900 (-0.25; worst -1.00)" in text and "30.50 / 0.950 (1 of 2)" in text


def test_blend_peers_table_takes_the_papers_method_from_a_recorded_table(tmp_path, capsys):
    """benchmarks.blend --peers-table: the paper's method's scores come from a per-sample markdown table's
    "paper's method" column; a sample where that cell is '-' keeps FISTA + TV as its best peer."""
    import json

    from benchmarks.blend import main, score, table_column
    from cusim.recon.pinn import blend_images

    rng = np.random.default_rng(3)
    truth = rng.random((48, 48)).astype(np.float32)
    noisy = {s: truth + s * rng.standard_normal((48, 48)).astype(np.float32) for s in (0.05, 0.1)}
    im = {"pinn": noisy[0.05], "fista": noisy[0.1], "blended": blend_images(noisy[0.05], noisy[0.1], 0.5),
          "widefield": truth + 0.3, "truth": truth}
    for item in ("S_6", "S_7"):
        np.savez(tmp_path / f"{item}_crop240_default.npz", **im, pinn_steps=np.int64(9), pinn_s=np.float64(1.0),
                 fista_s=np.float64(0.1))
    sc = score(im, [])
    paper = sc["fista"]["psnr_db"] + 0.5  # the better peer where it ran
    table = tmp_path / "recorded.md"
    table.write_text("| set | sample | widefield | paper's method | FISTA + TV |\n| --- | --- | --- | --- | --- |\n"
                     f"| S | 6 | 1.00 / 0.100 | {paper:.2f} / 0.950 | 2.00 / 0.200 |\n"
                     "| S | 7 | 1.00 / 0.100 | - | 2.00 / 0.200 |\n")
    assert table_column(table, "paper's method") == {("S", 6): {"psnr_db": round(paper, 2), "ssim": 0.95}}
    md = tmp_path / "p.md"
    assert main(["--items", "S:6", "S:7", "--weights", "1", "--no-run", "--cache", str(tmp_path), "--peers-table",
                 str(table), "--markdown", str(md)]) == 0
    rows = {ln.split("|")[2].strip(): [c.strip() for c in ln.strip("|").split("|")]
            for ln in md.read_text().splitlines() if ln.startswith("| S | ")}
    head = [c.strip() for c in md.read_text().splitlines()[0].strip("|").split("|")]
    col = head.index("pinn - best peer")
    assert rows["6"][head.index("paper")] == f"{paper:.2f} / 0.950" and rows["7"][head.index("paper")] == "-"
    net = sc["pinn"]["psnr_db"]
    assert float(rows["6"][col]) == pytest.approx(net - round(paper, 2), abs=0.011)
    assert float(rows["7"][col]) == pytest.approx(net - sc["fista"]["psnr_db"], abs=0.011)
    assert main(["--items", "S:6", "--no-run", "--cache", str(tmp_path), "--peers-table", str(table),
                 "--peers-column", "nope"]) == 1
    assert "--peers-table" in capsys.readouterr().err
    # with --peers too: a sample the JSON has (7) takes its score; the table fills the others (6)
    fresh = {"psnr_db": paper + 1.0, "ssim": 0.96, "frc05": 0.3}
    (tmp_path / "q.json").write_text(json.dumps({"samples": [{"set": "S", "sample": 7, "crop": 240,
                                                              "methods": {"paper": fresh}}]}))
    assert main(["--items", "S:6", "S:7", "--weights", "1", "--no-run", "--cache", str(tmp_path), "--peers-table",
                 str(table), "--peers", str(tmp_path / "q.json"), "--markdown", str(md)]) == 0
    rows = {ln.split("|")[2].strip(): [c.strip() for c in ln.strip("|").split("|")]
            for ln in md.read_text().splitlines() if ln.startswith("| S | ")}
    assert rows["6"][head.index("paper")] == f"{paper:.2f} / 0.950"
    assert rows["7"][head.index("paper")] == f"{paper + 1.0:.2f} / 0.960"


def test_blend_scores_the_ensemble_of_cached_seeds_as_ensemble_n_returns_it(tmp_path):
    """benchmarks.blend --ensemble-seeds: the ensemble is the mean of the networks' images (the batched ensemble's
    image: tests/test_pinn.py), blended with FISTA + TV like one network's; a seed not cached under --no-run
    leaves the row without an ensemble; the run's own seed is refused."""
    from benchmarks.blend import members, parse_args, score
    from benchmarks.quality import quality
    from cusim.recon.pinn import blend_images

    rng = np.random.default_rng(0)
    truth = rng.random((48, 48))
    im = {"truth": truth, "widefield": truth + 0.3 * rng.random((48, 48)),
          "fista": truth + 0.1 * rng.standard_normal((48, 48)), "pinn": truth + 0.1 * rng.standard_normal((48, 48))}
    other = truth + 0.1 * rng.standard_normal((48, 48))
    res = score(im, [0.5], [1.0], [other])
    mean = (im["pinn"] + other) / 2
    assert res["ens2"] == quality(mean, truth)
    assert res["ens2_blend0.5s1"] == quality(blend_images(mean, im["fista"], 0.5, sigma=1.0).astype(np.float64),
                                             truth)
    assert res["ens2"]["psnr_db"] > res["pinn"]["psnr_db"] + 1.0  # independent errors average down (~3 dB)
    assert "ens2" not in score(im, [0.5], [1.0])
    args = parse_args(["--items", "S:1", "--ensemble-seeds", "1", "--no-run", "--cache", str(tmp_path)])
    assert members("S", 1, args) == []
    with pytest.raises(SystemExit):
        parse_args(["--items", "S:1", "--ensemble-seeds", "0"])


def test_blend_versus_tabulates_one_pinn_setting_minus_another_from_the_cache(tmp_path):
    """benchmarks.blend --versus: each item's images of a second PINN setting (none given: the default run) are
    scored beside the run's, and --markdown writes this run minus that one: the image returned, the network
    alone, each blend against the other's image returned, the steps ratio; per set and over all sets."""
    from benchmarks.blend import _tag, main, parse_args
    from benchmarks.quality import quality
    from cusim.recon.pinn import blend_images

    rng = np.random.default_rng(1)
    truth = rng.random((48, 48)).astype(np.float32)
    noisy = {s: truth + s * rng.standard_normal((48, 48)).astype(np.float32) for s in (0.05, 0.1, 0.2)}
    runs = {"default": (noisy[0.2], 100), "stop-validation": (noisy[0.05], 250)}
    for item in ("S_1", "T_2"):
        for tag, (pinn, steps) in runs.items():
            blended = blend_images(pinn, noisy[0.1], 0.5)
            np.savez(tmp_path / f"{item}_crop240_{tag}.npz", pinn=pinn, fista=noisy[0.1], blended=blended,
                     widefield=truth + 0.3, truth=truth, pinn_steps=np.int64(steps), pinn_s=np.float64(1.0),
                     fista_s=np.float64(0.1))
    md = tmp_path / "v.md"
    assert main(["--items", "S:1", "T:2", "--pinn-param", "stop=validation", "--weights", "1", "--versus",
                 "--no-run", "--cache", str(tmp_path), "--markdown", str(md)]) == 0
    text = md.read_text()

    def q(im):
        return quality(np.asarray(im, np.float64), truth.astype(np.float64))

    this, other = q(blend_images(noisy[0.05], noisy[0.1], 0.5)), q(blend_images(noisy[0.2], noisy[0.1], 0.5))
    d_ret, d_net = this["psnr_db"] - other["psnr_db"], q(noisy[0.05])["psnr_db"] - q(noisy[0.2])["psnr_db"]
    assert d_ret > 1.0 and d_net > d_ret  # the blend with the same FISTA image narrows the gap
    d_w1 = q(blend_images(noisy[0.05], noisy[0.1], 1.0))["psnr_db"] - other["psnr_db"]
    row = f"| {d_ret:+.2f} / {this['ssim'] - other['ssim']:+.4f} | {d_net:+.2f} | 2.5 |"
    assert f"| S | 1 | {q(noisy[0.2])['psnr_db']:.2f} / {other['psnr_db']:.2f} / {other['ssim']:.3f}, 100 |" in text
    assert row in text and text.count(row) == 2
    assert f"| all | 2 | {d_ret:+.2f} ({d_ret:+.2f}) |" in text and f"| 2.5 | {d_w1:+.2f} ({d_w1:+.2f}) |" in text
    with pytest.raises(SystemExit):  # the same setting on both sides
        parse_args(["--items", "S:1", "--pinn-param", "stop=validation", "--versus", "stop=validation"])
    assert _tag(parse_args(["--items", "S:1", "--pinn-param", "stop=validation", "--versus"]).versus_params) \
        == "default"


def test_blend_versus_table_scores_against_a_recorded_per_sample_table(tmp_path, capsys):
    """benchmarks.blend --versus-table: the other run's scores come from a per-sample markdown table (its image
    returned from --versus-column, its network from the 'PINN alone' column, no steps); the differences equal
    --versus's against the same images to the table's rounding; an item or column the table lacks is one clear
    error and exit 1."""
    from benchmarks.blend import main, read_table, score
    from cusim.recon.pinn import blend_images

    rng = np.random.default_rng(2)
    truth = rng.random((48, 48)).astype(np.float32)
    noisy = {s: truth + s * rng.standard_normal((48, 48)).astype(np.float32) for s in (0.05, 0.1, 0.2)}

    rows = []
    for item, (name, sample) in (("S_1", ("S", 1)), ("T_2", ("T", 2))):
        for tag, pinn, steps in (("default", noisy[0.2], 100), ("stop-validation", noisy[0.05], 250)):
            im = {"pinn": pinn, "fista": noisy[0.1], "blended": blend_images(pinn, noisy[0.1], 0.5),
                  "widefield": truth + 0.3, "truth": truth}
            np.savez(tmp_path / f"{item}_crop240_{tag}.npz", **im, pinn_steps=np.int64(steps),
                     pinn_s=np.float64(1.0), fista_s=np.float64(0.1))
            if tag == "default":
                sc = score(im, [])
                rows.append(f"| {name} | {sample} | {sc['fista']['psnr_db']:.2f} / {sc['fista']['ssim']:.3f} | "
                            f"{sc['pinn']['psnr_db']:.2f} / {sc['pinn']['ssim']:.3f} | "
                            f"{sc['run_blend']['psnr_db']:.2f} / {sc['run_blend']['ssim']:.3f} | +0.00 |")
    table = tmp_path / "recorded.md"
    table.write_text("# a recorded run\n\nsome words\n\n| set | sample | FISTA + TV | PINN alone (`--blend none`) | "
                     "**default PINN** | default PINN - best peer |\n| --- | --- | --- | --- | --- | --- |\n"
                     + "\n".join(rows) + "\n\n| set | samples | means |\n| --- | --- | --- |\n")
    rec = read_table(table, "default PINN")
    assert set(rec) == {("S", 1), ("T", 2)} and rec[("S", 1)]["pinn_steps"] is None
    common = ["--items", "S:1", "T:2", "--pinn-param", "stop=validation", "--weights", "1", "--no-run", "--cache",
              str(tmp_path)]
    md_table, md_live = tmp_path / "t.md", tmp_path / "l.md"
    assert main(common + ["--versus-table", str(table), "--markdown", str(md_table)]) == 0
    assert main(common + ["--versus", "--markdown", str(md_live)]) == 0

    def cells(path, set_name):  # the per-set means row: returned dB, SSIM, network alone dB, steps ratio
        line = next(ln for ln in path.read_text().splitlines() if ln.startswith(f"| {set_name} | "))
        return [c.strip() for c in line.strip("|").split("|")][2:6]

    got, want = cells(md_table, "all"), cells(md_live, "all")
    assert abs(float(got[0].split()[0]) - float(want[0].split()[0])) <= 0.011
    assert abs(float(got[2]) - float(want[2])) <= 0.011 and float(got[0].split()[0]) > 1.0
    assert got[3] == "-" and want[3] == "2.5"  # the recorded run has no steps
    assert ", 100 |" not in md_table.read_text() and ", - |" in md_table.read_text()
    capsys.readouterr()
    assert main(["--items", "S:1", "U:3", "--pinn-param", "stop=validation", "--no-run", "--cache", str(tmp_path),
                 "--versus-table", str(table)]) == 1
    assert "has no 'default PINN' score for U:3" in capsys.readouterr().err
    assert main(common + ["--versus-table", str(table), "--versus-column", "nope"]) == 1
    assert "no column 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(common + ["--versus-table", str(table), "--versus"])
    # this script's own per-sample tables name the network "pinn" and the image returned "run_blend"; a table
    # without the network's column still scores the image returned
    own = tmp_path / "own.md"
    own.write_text(table.read_text().replace("PINN alone (`--blend none`)", "pinn").replace("**default PINN**",
                                                                                            "run_blend"))
    assert set(read_table(own, "run_blend")[("S", 1)]) == {"run_blend", "pinn", "pinn_steps"}
    assert main(common + ["--versus-table", str(own), "--versus-column", "run_blend", "--markdown", str(md_live)]) == 0
    assert cells(md_live, "all") == got
    bare = tmp_path / "bare.md"
    bare.write_text(table.read_text().replace("PINN alone (`--blend none`)", "FISTA again"))
    assert "pinn" not in read_table(bare, "default PINN")[("S", 1)]
    assert main(common + ["--versus-table", str(bare), "--markdown", str(md_live)]) == 0
    assert cells(md_live, "all")[:2] == got[:2] and cells(md_live, "all")[2] == "-"


def test_fista_curve_rules_pick_where_they_should():
    """benchmarks.fista_curve.picks: the discrepancy rule takes the first iteration at tau, the default that or
    its cap, the held-out rule the least held-out residual once it has not fallen for ``patience`` iterations
    (or by the end), and ``best`` the curve's best PSNR."""
    from benchmarks.fista_curve import picks

    held = [5, 4, 3, 2.5, 2.6, 2.7, 2.8, 2.4, 2.9, 3.0, 3.1, 3.2]  # least at 4, then 8 (after a rise of 3)
    fit = [3, 2, 1.5, 1.2, 1.1, 0.99, 0.95, 0.9, 0.85, 0.8, 0.8, 0.8]  # at tau 1 first at iteration 6
    psnr = [20, 21, 22, 23, 24, 25, 26, 25.5, 25, 24, 23, 22]
    curve = [{"it": i + 1, "fit": f, "held": h, "psnr_db": q, "ssim": 0.5} for i, (f, h, q) in
             enumerate(zip(fit, held, psnr))]
    got = picks(curve, tau=1.0, cap=100, patience=3)
    assert [got[k]["it"] for k in ("best", "discrepancy", "default", "held-out")] == [7, 6, 6, 4]
    assert "at 7" in got["held-out"]["reason"]  # 3 iterations after 4 without a new least
    got = picks(curve, tau=1.0, cap=100, patience=5)  # the rise to 2.8 is forgiven: 8 is the least, then 13 is past
    assert got["held-out"]["it"] == 8 and "by iteration 12" in got["held-out"]["reason"]
    got = picks(curve, tau=0.5, cap=10, patience=3)  # no discrepancy: the default is the cap
    assert got["discrepancy"] is None and got["default"]["it"] == 10 and got["default"]["reason"] == "cap (10)"


def test_fista_curve_runs_a_simulated_item_and_its_default_pick_is_the_default_runs_stop(tmp_path, monkeypatch):
    """One short curve on a simulated field: an entry per iteration, no rule above the curve's best, and the
    default pick where cusim's default FISTA stops on the same data (its discrepancy iteration)."""
    import json

    import cusim
    from benchmarks import _common as C
    from benchmarks import blend, fista_curve

    monkeypatch.setattr(C, "RESULTS", tmp_path)
    assert fista_curve.main(["--items", "sim/linear:4", "--sim-seeds", "1", "--iterations", "30", "--out", "f"]) == 0
    (item,) = json.loads((tmp_path / "f-cpu.json").read_text())["items"]
    assert [p["it"] for p in item["curve"]] == list(range(1, 31))
    best = item["picks"]["best"]["psnr_db"]
    assert all(p is None or p["psnr_db"] <= best for p in item["picks"].values())
    ds = cusim.simulate(shape=blend.SIM_SHAPE, family="linear", snr=4.0, seed=1)
    run = cusim.reconstruct(ds, "iterative", device="cpu")
    assert run.extra["stop_reason"].startswith("discrepancy")
    # 5 % fewer pixels in the fit: the same stop to within two iterations
    assert abs(item["picks"]["default"]["it"] - run.extra["steps_run"]) <= 2


def test_low_light_simulates_the_seed_it_is_given_and_names_it(tmp_path, monkeypatch):
    """`--sim-seed` picks the simulated field (phantom and noise); the record and the table name it."""
    import json

    from benchmarks import _common as C
    from benchmarks import low_light

    monkeypatch.setattr(C, "RESULTS", tmp_path)
    psnr = {}
    for seed in (1, 2):
        assert low_light.main(["--only", "sim", "--no-pinn", "--methods", "widefield", "Wiener", "--sim-size", "48",
                               "--sim-seed", str(seed), "--device", "cpu", "--out", f"s{seed}"]) == 0
        rec = json.loads((tmp_path / f"s{seed}-cpu.json").read_text())["sim"]
        assert rec["seed"] == seed and set(rec["methods"]) == {"widefield", "Wiener"}
        assert f"true patterns, seed {seed}" in (tmp_path / f"s{seed}-cpu.md").read_text()
        psnr[seed] = rec["methods"]["Wiener"]["psnr_db"]
    assert abs(psnr[1] - psnr[2]) > 0.01  # two fields, not one


def test_noise_level_compares_each_estimate_with_the_true_objects_residual(tmp_path, monkeypatch):
    """The benchmark runs end to end; with the whole field watched, the band estimate (filtered frames
    averaged over the window) is the periodic component's spectral one (Parseval), and the ratios are near 1."""
    import json

    from benchmarks import _common as C
    from benchmarks import noise_level

    monkeypatch.setattr(C, "RESULTS", tmp_path)
    assert noise_level.main(["--snrs", "10", "--seeds", "2", "--size", "64", "--paper-sets", "--out", "n"]) == 0
    (rec,) = json.loads((tmp_path / "n-cpu.json").read_text())["records"]
    assert rec["inset"] == 0 and rec["band"] == pytest.approx(rec["p+s"], rel=1e-9)
    assert all(0.7 < rec[k] < 1.3 for k in ("cusim", "p+s", "band"))
    # with a PINN run: where its stop fires with each estimate, on one trajectory
    assert noise_level.main(["--snrs", "10", "--seeds", "2", "--size", "48", "--paper-sets", "--pinn-steps", "30",
                             "--out", "p"]) == 0
    (rec,) = json.loads((tmp_path / "p-cpu.json").read_text())["records"]
    assert set(rec["pinn"]) == {"best", "cusim", "p+s", "band", "truth"}
    assert "the PINN's discrepancy stop with each sigma" in (tmp_path / "p-cpu.md").read_text()
    with pytest.raises(SystemExit, match="leave --sim-inset at 0"):
        noise_level.main(["--pinn-steps", "30", "--sim-inset", "4", "--paper-sets"])


def test_the_periodic_component_drops_the_edge_jump_and_keeps_a_periodic_image():
    from benchmarks.noise_level import periodic_component

    y, x = np.mgrid[0:32, 0:48]
    wave = np.cos(2 * np.pi * (3 * x / 48 + 2 * y / 32))  # periodic on the grid: (almost) nothing to remove
    assert np.corrcoef(periodic_component(wave).ravel(), wave.ravel())[0, 1] > 0.99
    ramp = x.astype(float)  # a jump of 47 at the wrap: its periodic part wraps smoothly
    p = periodic_component(ramp)
    assert abs(p[:, -1] - p[:, 0]).max() < 0.1 * abs(ramp[:, -1] - ramp[:, 0]).max()


def test_camera_loss_runs_each_variant_and_puts_cusims_loss_back(tmp_path, monkeypatch):
    import json

    from benchmarks import _common as C
    from benchmarks import camera_loss
    from cusim.recon import losses

    monkeypatch.setattr(C, "RESULTS", tmp_path)
    before = losses.DataLoss.__call__
    assert camera_loss.main(["--seeds", "2", "--size", "48", "--steps", "20", "--every", "10",
                             "--out", "c"]) == 0
    assert losses.DataLoss.__call__ is before
    recs = {r["variant"]: r for r in json.loads((tmp_path / "c-cpu.json").read_text())["records"]}
    assert set(recs) == set(camera_loss.VARIANTS)
    assert all([s for s, _ in r["curve"]] == [10, 20] for r in recs.values())
    # the variants change the trajectory (each is a different loss), the white one switches to nothing
    assert len({r["at_max"] for r in recs.values()}) >= 4 and recs["white"]["switch"] is None


def test_low_light_merge_refuses_two_simulated_fields(tmp_path, monkeypatch):
    from benchmarks import _common as C
    from benchmarks import low_light

    monkeypatch.setattr(C, "RESULTS", tmp_path)
    for seed in (1, 2):
        assert low_light.main(["--only", "sim", "--no-pinn", "--methods", "widefield", "--sim-size", "32",
                               "--sim-seed", str(seed), "--device", "cpu", "--out", f"s{seed}"]) == 0
    with pytest.raises(SystemExit,
                       match=r"simulated field: seed 2, snr .*, the files before it seed 1, snr .*; merge pieces of one"):
        low_light.main(["--merge", str(tmp_path / "s1-cpu.json"), str(tmp_path / "s2-cpu.json"), "--out", "m"])
    # the same seed at another SNR: it merged both under the first one's heading
    assert low_light.main(["--only", "sim", "--no-pinn", "--methods", "Wiener", "--sim-size", "32", "--sim-seed", "1",
                           "--sim-snr", "1", "--device", "cpu", "--out", "s1dark"]) == 0
    with pytest.raises(SystemExit, match=r"simulated field: photons .*, snr .*, the files before it photons"):
        low_light.main(["--merge", str(tmp_path / "s1-cpu.json"), str(tmp_path / "s1dark-cpu.json"), "--out", "m"])


def test_low_light_filtered_r_sees_through_a_filter_but_not_through_noise():
    """`filtered_r` scores an isotropic filtering of the reference near 1 where the plain r does not, and finds
    nothing in an unrelated image (its 33 coefficients are fitted on the other half of the field)."""
    from scipy.ndimage import gaussian_filter

    from benchmarks.low_light import filtered_r, pearson

    rng = np.random.default_rng(3)
    ref = gaussian_filter(rng.normal(size=(96, 96)), 1.5) + 0.3 * gaussian_filter(rng.normal(size=(96, 96)), 6)
    blurred = gaussian_filter(ref, 2.5)
    assert pearson(blurred, ref) < 0.9 < 0.99 < filtered_r(blurred, ref)
    assert abs(filtered_r(rng.normal(size=ref.shape), ref)) < 0.15
    with pytest.raises(ValueError, match="two images of one shape"):
        filtered_r(ref[:, :90], ref)


def test_second_member_scores_each_pair_as_ensemble_2_returns_it(tmp_path, capsys):
    """benchmarks.second_member: each pair is the plain mean of the first network's image and a second cached
    run's (what ensemble=2 computes), blended with the item's FISTA + TV image like one network's; the table
    differences every pair to the first pair; a run not in the cache is one line and exit 1."""
    from benchmarks.quality import quality
    from benchmarks.second_member import main
    from cusim.recon.pinn import blend_images

    rng = np.random.default_rng(2)
    truth = rng.random((48, 48)).astype(np.float32)
    fista = truth + 0.1 * rng.standard_normal((48, 48)).astype(np.float32)
    nets = {tag: truth + s * rng.standard_normal((48, 48)).astype(np.float32)
            for tag, s in (("stop-validation", 0.1), ("blend-none_seed-1_stop-validation", 0.1),
                           ("input-widefield_stop-validation", 0.02))}
    for tag, pinn in nets.items():
        np.savez(tmp_path / f"S_1_crop240_{tag}.npz", pinn=pinn, fista=fista, widefield=truth + 0.3, truth=truth,
                 pinn_steps=np.int64(100), pinn_s=np.float64(1.0), fista_s=np.float64(0.1))

    def q(img):
        return quality(blend_images(img, fista, 0.5, sigma=1.0).astype(np.float64), truth.astype(np.float64))

    one = q(nets["stop-validation"].astype(np.float64))
    seeds = q((nets["stop-validation"].astype(np.float64) + nets["blend-none_seed-1_stop-validation"]) / 2)
    inputs = q((nets["stop-validation"].astype(np.float64) + nets["input-widefield_stop-validation"]) / 2)
    md = tmp_path / "p.md"
    assert main(["--items", "S:1", "--pinn-param", "stop=validation", "--second", "seed=1,blend=none",
                 "--second", "input=widefield", "--cache", str(tmp_path), "--markdown", str(md)]) == 0
    text = md.read_text()
    f = quality(fista.astype(np.float64), truth.astype(np.float64))
    d_in, d_seed = inputs["psnr_db"] - seeds["psnr_db"], seeds["psnr_db"] - one["psnr_db"]
    d_f = seeds["psnr_db"] - f["psnr_db"]
    assert d_in > 0.5 and d_seed > 0.5  # the cleaner second network; two independent errors average down
    assert (f"| S | 1 | {f['psnr_db']:.2f} / {f['ssim']:.3f} | {one['psnr_db']:.2f} / {one['ssim']:.3f} | "
            f"{seeds['psnr_db']:.2f} / {seeds['ssim']:.3f} | {inputs['psnr_db']:.2f} / {inputs['ssim']:.3f} | "
            f"{d_in:+.2f} | {d_seed:+.2f} | {d_f:+.2f} | 100 / 100 / 100 |") in text
    assert f"| {d_in:+.2f} ({d_in:+.2f}) | {d_seed:+.2f} ({d_seed:+.2f}) | {d_f:+.2f} ({d_f:+.2f}) |" in text
    capsys.readouterr()
    assert main(["--items", "S:1", "--pinn-param", "stop=validation", "--second", "seed=2",
                 "--cache", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed-2_stop-validation.npz: not cached" in err[0]


def test_low_light_records_a_level_too_dark_to_estimate_and_goes_on(shared_data, tmp_path, monkeypatch):
    """At a thousandth of the light no carrier stands out of the noise: the level records the estimator's
    reason, its pattern-based methods show "patterns not estimated", widefield (which needs no patterns) still
    runs, and so do the levels after it, where before the run ended in a traceback and wrote no table."""
    import json

    from benchmarks import _common as C
    from benchmarks import low_light

    monkeypatch.setattr(C, "RESULTS", tmp_path)
    assert low_light.main(["--only", "real", "--no-pinn", "--methods", "widefield", "Wiener", "--fractions", "0.001",
                           "0.1", "--device", "cpu", "--out", "dark"]) == 0
    levels = json.loads((tmp_path / "dark-cpu.json").read_text())["real"]["levels"]
    assert "no carrier peak stands out of the noise" in levels["0.001"]["estimate_error"]
    assert set(levels["0.001"]["methods"]) == {"widefield"} and "estimate_error" not in levels["0.1"]
    assert levels["0.1"]["methods"]["Wiener"]["r"] > levels["0.1"]["methods"]["widefield"]["r"] > 0.4
    table = (tmp_path / "dark-cpu.md").read_text()
    assert "| Wiener | patterns not estimated | 0.7" in table
    # at 1/200 the weakest carrier scores about 8: below the default 10 alone, taken near the lattice of the
    # other two, or alone with --min-peak-snr 5; at 1/500 no angle stands out alone, so there is no lattice
    for fraction, extra, estimated in (("0.005", [], True), ("0.005", ["--min-peak-snr", "5"], True),
                                       ("0.002", [], False)):
        assert low_light.main(["--only", "real", "--no-pinn", "--methods", "Wiener", "--fractions", fraction,
                               "--device", "cpu", "--out", "d", *extra]) == 0
        level = json.loads((tmp_path / "d-cpu.json").read_text())["real"]["levels"][fraction]
        assert ("Wiener" in level["methods"]) is estimated and ("estimate_error" in level) is not estimated


def test_estimate_null_reads_both_passes_significance_of_an_angle_without_a_carrier(tmp_path, monkeypatch):
    from benchmarks import _common as C
    from benchmarks import estimate_null

    raw, psf, angle = estimate_null.null_stack(seed=1, snr=20, size=192)
    r = estimate_null.significances(raw, psf, angle)
    assert 0 < r["lattice"] < 6 and 0 < r["blind"] < 10  # below both thresholds: refused, as the estimate does
    assert 0 <= r["blind_fit"] <= 1 and r["advised"] is False
    monkeypatch.setattr(C, "RESULTS", tmp_path)
    assert estimate_null.main(["--seeds", "1", "--snrs", "20", "--sizes", "192", "--out", "n"]) == 0
    table = (tmp_path / "n-cpu.md").read_text()
    assert f"| lattice | {r['lattice']:.2f} |" in table and "1 simulated stacks" in table
    assert "advised taking that angle's candidate as a weak carrier in 0 of 1" in table


def test_stop_rules_replays_the_library_validation_rule_step_for_step():
    """benchmarks.stop_rules chooses keep_within and keep_jitter by replaying them on recorded residuals: its replay
    must keep the step and end the run where cusim's own rule (pinn._Stopper) does, for each and for both."""
    pytest.importorskip("torch")
    from benchmarks.stop_rules import replay
    from cusim.recon import pinn

    rng = np.random.default_rng(3)
    n = 1600
    for trial in range(20):  # a falling residual, then a flat floor with noise of about one standard error
        mse = np.concatenate([np.linspace(5, 1.05, 30), 1.0 + rng.normal(0, np.sqrt(2 / n), 300)
                              + np.linspace(0, 0.05 * (trial % 3), 300)])
        for c, k in ((0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (0.0, 1.0), (0.0, 2.0), (0.5, 2.0)):
            stop = pinn._Stopper(pinn.PINNConfig(stop="validation", keep_within=c, keep_jitter=k, patience=40),
                                 n_held=n)
            fired = next((s for s, m in enumerate(mse) if stop(s, 0.0, float(m))), None)
            assert replay(mse, se=c, jit=k, n_held=n, patience=40) == (stop.keep, fired), (trial, c, k)
            if c == k == 0:
                assert stop.keep == int(np.argmin(mse[:fired + 1]))


def test_stop_rules_frozen_window_and_moving_average_candidates():
    """Two benchmark-only candidates. ``frozen`` measures keep_jitter's step-to-step change over the window ending at
    the least: a residual that starts to jump after its least widens the ordinary tolerance, not the frozen one.
    ``ma`` takes the least of a trailing mean and keeps the image at the centre of that window."""
    from benchmarks.stop_rules import parse_args, replay

    before = np.linspace(1.0, 0.99, 60)  # least 0.99 at step 59, step-to-step change 0.00017
    after = 1.0 + 0.02 * (np.arange(120) % 2)  # 1.00, 1.02, ...: change 0.02, never below the least
    mse = np.concatenate([before, after])
    assert replay(mse, jit=2, patience=100) == (159, 159)  # tolerance 0.04: the step it ends at (1.00) kept
    assert replay(mse, jit=2, frozen=1, patience=100) == (59, 159)  # tolerance 0.00034: the least's image
    # a one-step dip: the raw least is the dip, the trailing mean's least two steps later, kept at its centre
    dip = np.concatenate([np.linspace(2.0, 1.0, 11), [0.5], np.full(150, 0.9)])  # the dip at step 11
    assert replay(dip, patience=100) == (11, 111)
    assert replay(dip, ma=3, patience=100) == (12, 113)  # means 0.867, 0.8, 0.767 (least, step 13), 0.9, ...
    with pytest.raises(SystemExit):  # ma ignores the tolerances, so asking for both is refused, not dropped
        parse_args(["--replay", "x.json", "--rules", "a:ma=5,jit=2"])


def test_stop_rules_reset_counts_patience_from_the_last_least_that_beat_the_jitter():
    """``reset`` / ``gain`` (benchmark-only candidates): a residual that creeps down by less than its own step-to-step
    jitter keeps setting new leasts, which restart the plain rule's patience every time; with ``reset`` only a least
    lower by more than ``reset`` times that jitter (or ``gain`` of its value) restarts them, so the run ends sooner,
    and the image kept is chosen as without it."""
    from benchmarks.stop_rules import parse_args, replay

    s = np.arange(400)
    # 2.0, then from step 50 on 1.0 creeping down 1e-5 per step; a zigzag of 0.01 throughout (jitter 0.01 per step)
    mse = np.where(s < 50, 2.0, 1.0 - 1e-5 * (s - 50)) + 0.01 * (s % 2)
    assert replay(mse, patience=100)[1] is None  # every even step is a new least: the plain rule never ends
    # the last least that beat 2 x 0.01 is step 50's; 100 steps later it ends, keeping the least so far (step 150's)
    assert replay(mse, reset=2, patience=100) == (150, 150)
    assert replay(mse, gain=3e-3, patience=100) == (150, 150)  # 3e-3 of 1.0 is more than the creep's 1e-3 too
    assert replay(mse, gain=1e-6, patience=100)[1] is None  # ... 1e-6 is less than its 2e-5 per least
    # a clean fall beats 2 x its own step every third step, so it never ends while falling
    assert replay(np.linspace(2.0, 1.0, 300), reset=2, patience=100) == (299, None)
    # cap: the run cut at 120 steps keeps what the rule holds at its last step (the least so far: step 118's)
    assert replay(mse, patience=100, cap=120) == (118, 119)
    assert replay(mse, reset=2, patience=100, cap=400) == (150, 150)  # a rule that ends first is not changed
    with pytest.raises(SystemExit):
        parse_args(["--replay", "x.json", "--rules", "a:ma=5,reset=2"])


def test_stop_rules_compares_a_variant_with_the_default_item_by_item(tmp_path, capsys):
    """``--replay VARIANT --against BASE`` (how a schedule is screened): per group and rule, the variant's returned
    image minus the base's, matched by label, with the steps each run took; items in only one file are counted."""
    from benchmarks.stop_rules import main

    s = np.arange(300)

    def run(label, low_at, psnr):  # a residual with its least at low_at; the returned image's PSNR rises to psnr
        mse = 1.0 + 1e-3 * np.abs(s - low_at)
        return {"label": label, "n_held": 1000,
                "curve": [[int(k) + 1, float(mse[k]), 0.0, psnr * min(1.0, (k + 1) / low_at)] for k in s]}

    base = [run("NL_SIM/ccp #1", 150, 40.0), run("NL_SIM/ccp #2", 100, 30.0), run("SIM/microtubules #1", 50, 20.0)]
    variant = [run("NL_SIM/ccp #1", 100, 41.0), run("NL_SIM/ccp #2", 100, 29.5), run("LPSIM/microtubules #1", 50, 9.0)]
    (tmp_path / "b.json").write_text(json.dumps({"items": base}))
    (tmp_path / "v.json").write_text(json.dumps({"items": variant}))
    assert main(["--replay", str(tmp_path / "v.json"), "--against", str(tmp_path / "b.json"),
                 "--rules", "least:patience=100"]) == 0
    out = capsys.readouterr().out
    # ccp: +1.0 and -0.5 dB, mean +0.25; the base ends 100 steps after its leasts (251, 201), the variant at 201, 201
    assert "| NL_SIM/ccp | 2 | +0.25 / -0.50, 226 -> 201 steps |" in out
    assert "(1 item(s) with no run of the same label in --against, left out)" in out
    assert "SIM/microtubules" not in out and "| all |" not in out  # one matched group: no summary row
    with pytest.raises(SystemExit):
        main(["--against", str(tmp_path / "b.json")])


@pytest.mark.parametrize("grid, overlap", [(1, 0), (2, 0), (2, 8), (3, 4), (3, 16)])
def test_tiled_weights_cover_the_field_once_and_reach_only_into_neighbours(grid, overlap):
    """benchmarks.tiled stitches tiles with linear ramps across their overlaps: the tiles cover the field, each
    reaches ``overlap`` pixels into a neighbour and no further, and the weights sum to 1 at every pixel."""
    from benchmarks.tiled import ramp, tile_boxes

    size = 48 * grid
    boxes = tile_boxes(size, grid, overlap, 4)
    total = np.zeros(size)
    for i, (start, length) in enumerate(boxes):
        assert start == max(0, i * 48 - overlap) and start + length == min(size, (i + 1) * 48 + overlap)
        total[start:start + length] += ramp(length, start, size, overlap)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="multiples of 4"):
        tile_boxes(size, grid, 6, 4)


def test_tiled_stitches_tiles_back_into_the_field(monkeypatch):
    """With every tile reconstructed exactly (its own ground truth), the raw stitch is the field's truth; a tile
    off by a factor and an offset shows in the raw stitch (seams) and not in the aligned one, which maps every tile
    onto the field's FISTA + TV first."""
    import argparse

    import cusim
    from benchmarks.tiled import run_item
    from cusim.recon import Result

    ds = cusim.simulate(phantom="filaments", shape=(96, 96), upsample=2, snr=20, seed=0, device="cpu")
    calls = []

    def exact(tile, method, **kw):
        calls.append(tile.attrs["crop"])
        a, c = (2.0, 0.3) if len(calls) == 4 and off else (1.0, 0.0)
        return Result(image=a * tile.ground_truth + c, method=method, params={}, device="cpu", runtime_s=0.0,
                      extra={"steps_run": 7 * len(calls), "stop_reason": "fake"})

    monkeypatch.setattr(cusim, "reconstruct", exact)
    args = argparse.Namespace(field=80, grid=2, overlap=8, pinn_params={}, whole=False, images=None)
    off = False
    rec = run_item(ds, args, "sim")
    assert [c[2:] for c in calls] == [[48, 48]] * 4  # 40 + 8 each, at the central 80 x 80 crop's corners
    assert rec["tiled_raw"]["psnr_db"] > 80 and rec["tiled"]["steps_max"] == 28 and rec["tiled"]["steps_sum"] == 70
    assert rec["tiled"]["psnr_db"] < rec["tiled_raw"]["psnr_db"]  # aligned to FISTA's image, not to the truth
    calls.clear()
    off = True
    skewed = run_item(ds, args, "sim")
    assert skewed["tiled_raw"]["psnr_db"] < 30
    assert skewed["tiled"]["psnr_db"] == pytest.approx(rec["tiled"]["psnr_db"], abs=1e-6)


def test_blend_caches_a_step_cap_apart(tmp_path):
    # The cache key left out --steps: the images of a 5-step cap were reused for --steps 60.
    import argparse  # noqa: PLC0415

    from benchmarks.blend import images  # noqa: PLC0415

    cached = {k: np.full((4, 4), v, np.float32) for v, k in enumerate(("pinn", "iterative", "widefield", "truth"))}
    np.savez(tmp_path / "sim_linear_snr10_default.npz", **cached)
    args = argparse.Namespace(cache=tmp_path, crop=240, pinn_params={}, no_run=True, steps=None)
    assert images("sim/linear", 10, args)["pinn"][0, 0] == 0  # the default cap: this cache
    with pytest.raises(FileNotFoundError, match="sim_linear_snr10_default_steps60.npz: not cached"):
        images("sim/linear", 10, argparse.Namespace(**{**vars(args), "steps": 60}))
