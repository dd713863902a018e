"""The paper's PINN peer (benchmarks/peers/paper_pinn.py) computes the paper's model, learns, is
deterministic and refuses data it cannot use; the quality benchmark's smoke mode runs end to end."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from benchmarks.peers import paper_pinn as P
from conftest import ROOT
from cusim.importers import import_paper


@pytest.fixture
def one_thread():
    """One torch thread: these tiny problems run faster so on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny(shared_data):
    return import_paper(shared_data / "pinn-sim-paper" / "SIM" / "microtubules", 1).crop_center(40)


def test_forward_model_is_a_same_size_real_space_convolution_with_the_unit_sum_psf():
    rng = np.random.default_rng(0)
    x, patterns = rng.random((12, 15)), rng.random((3, 12, 15))
    psf = rng.random((5, 7))  # asymmetric and non-square: a correlation instead of a convolution would fail
    got = P.forward_model(torch.from_numpy(x), torch.from_numpy(patterns), P.normalised_psf(psf)).numpy()
    want = np.stack([convolve2d(x * p, psf / psf.sum(), mode="same") for p in patterns])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert P.normalised_psf(3 * psf).sum().item() == pytest.approx(1.0)


def test_fft_evaluation_is_the_same_convolution_with_the_same_gradient():
    """conv="fft" (used by the quality runs) must be the paper's function, not a periodic one: a PSF
    wider than half the image would wrap around if the padding were short."""
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.random((14, 17))).requires_grad_()
    patterns, psf = torch.from_numpy(rng.random((3, 14, 17))), P.normalised_psf(rng.random((9, 13)))
    w = torch.from_numpy(rng.standard_normal((3, 14, 17)))
    direct = P.forward_model(x, patterns, psf)
    (gd,) = torch.autograd.grad((direct * w).sum(), x, retain_graph=True)
    fft = P.forward_model(x, patterns, psf, "fft")
    (gf,) = torch.autograd.grad((fft * w).sum(), x, retain_graph=True)
    np.testing.assert_allclose(fft.detach().numpy(), direct.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(gf.numpy(), gd.numpy(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="conv: expected"):
        P.forward_model(x, patterns, psf, "fourier")
    # the SSIM window, the loss's other convolution
    target = torch.from_numpy(rng.random((3, 14, 17)))
    ld = P.ssim_loss(direct, target)
    (gd,) = torch.autograd.grad(ld, x)
    lf = P.ssim_loss(fft, target, "fft")
    (gf,) = torch.autograd.grad(lf, x)
    assert lf.item() == pytest.approx(ld.item(), abs=1e-12) and 0.1 < ld.item() < 1.9
    np.testing.assert_allclose(gf.numpy(), gd.numpy(), rtol=0, atol=1e-10 * float(gd.abs().max()))


def test_ssim_is_the_gaussian_window_ssim_of_tf_and_skimage():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    a = rng.random((2, 30, 34))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    got = P.ssim_per_frame(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    want = [structural_similarity(u, v, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False) for u, v in zip(a, b)]
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_loss_decreases_on_a_tiny_crop(tiny, one_thread):
    image, loss = P.paper_pinn(tiny, steps=10, seed=0)
    assert image.shape == (40, 40) and image.dtype == np.float32 and np.all(image >= 0)
    assert loss.shape == (10,) and np.all(np.isfinite(loss))
    assert loss[-1] < loss[0] - 0.1, loss


def test_same_seed_same_image_and_step_fn_is_the_same_optimisation(tiny, one_thread):
    a, la = P.paper_pinn(tiny, steps=3, seed=5)
    b, lb = P.paper_pinn(tiny, steps=3, seed=5)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    step = P.step_fn(tiny, "cpu", seed=5)
    losses = [step() for _ in range(3)]
    np.testing.assert_array_equal(losses, la)
    assert np.array_equal(step.pinn.image(), a)
    c, _ = P.paper_pinn(tiny, steps=3, seed=6)
    assert not np.array_equal(a, c)


def test_missing_psf_or_patterns_is_a_value_error(tiny):
    with pytest.raises(ValueError, match="PSF"):
        P.paper_pinn(dataclasses.replace(tiny, psf=None), steps=1)
    with pytest.raises(ValueError, match="patterns"):
        P.paper_pinn(dataclasses.replace(tiny, patterns=None, pattern_params=None), steps=1)
    with pytest.raises(ValueError, match="steps"):
        P.paper_pinn(tiny, steps=0)


def test_quality_quick_smoke_writes_json_and_markdown(tmp_path, shared_data):
    out, md = tmp_path / "q.json", tmp_path / "q.md"
    res = subprocess.run([sys.executable, "-m", "benchmarks.quality", "--quick", "--sets", "SIM/microtubules",
                          "--methods", "widefield", "paper", "--steps", "3", "--threads", "1",
                          "--out", str(out), "--markdown", str(md)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(out.read_text())
    (rec,) = data["samples"]
    assert rec["set"] == "SIM/microtubules" and rec["sample"] == 1 and rec["fine_shape"] == [120, 120]
    assert rec["methods"]["paper"]["steps_run"] == 3
    for m in ("widefield", "paper"):
        assert np.isfinite(rec["methods"][m]["psnr_db"]) and 0 < rec["methods"][m]["ssim"] <= 1
    text = md.read_text()
    assert "Smoke test" in text and "| SIM/microtubules |" in text


def test_quality_runs_sample_major_on_request_and_resumes_what_is_missing(tmp_path, shared_data):
    """--order samples reaches every set before the next sample (a GPU run cut short has covered every set);
    --resume then runs only the methods a sample lacks."""
    from benchmarks import quality as Q

    out = tmp_path / "q.json"
    base = ["--quick", "--sets", "SIM/microtubules", "NL_SIM/ccp", "--samples", "1", "2", "--out", str(out)]
    assert Q.main([*base, "--methods", "widefield", "--order", "samples"]) == 0
    data = json.loads(out.read_text())
    assert [(r["set"], r["sample"]) for r in data["samples"]] == [
        ("SIM/microtubules", 1), ("NL_SIM/ccp", 1), ("SIM/microtubules", 2), ("NL_SIM/ccp", 2)]
    first = data["samples"][0]["methods"]["widefield"]
    assert first["ran_on"]["git_commit"] == data["environment"]["git_commit"]
    # another machine's results: a resume keeps where each was measured (the header named only the new machine)
    data["environment"]["device_name"], data["environment"]["git_commit"] = "OTHER MACHINE", "0ld0000"
    for r in data["samples"]:
        r["methods"]["widefield"]["ran_on"] = {"device_name": "OTHER MACHINE", "git_commit": "0ld0000"}
    data["samples"][-1]["methods"]["widefield"] = {"status": "failed", "reason": "killed"}  # retried by a resume
    out.write_text(json.dumps(data))
    assert Q.main([*base, "--methods", "widefield", "iterative", "--resume",
                   "--markdown", str(tmp_path / "q.md")]) == 0  # the default order: sets
    data = json.loads(out.read_text())
    assert all(sorted(r["methods"]) == ["iterative", "widefield"] for r in data["samples"])
    kept = data["samples"][0]["methods"]["widefield"]
    assert {k: v for k, v in kept.items() if k != "ran_on"} == {k: v for k, v in first.items() if k != "ran_on"}
    assert kept["ran_on"]["device_name"] == "OTHER MACHINE"  # kept, not run again, nor credited to this machine
    assert data["resumed_from"][0]["environment"]["device_name"] == "OTHER MACHINE"
    assert "psnr_db" in data["samples"][-1]["methods"]["widefield"]  # run again, scored
    assert "measured on (resumed runs): OTHER MACHINE at 0ld0000 (3 results)" in (tmp_path / "q.md").read_text()


def test_quality_protocol_gives_both_pinns_the_papers_steps_per_set():
    from benchmarks import quality as Q

    args = Q.parse_args([])
    assert Q.steps_for("LPSIM/microtubules", args) == 1500  # the notebooks run plasmonic SIM longer
    assert Q.steps_for("NL_SIM/er", args) == Q.steps_for("SIM/microtubules", args) == 1000
    assert Q.settings_of(args, "cpu")["steps"] == "paper" and args.paper_conv == "fft"
    given = Q.parse_args(["--steps", "40", "--paper-conv", "direct"])
    assert Q.steps_for("LPSIM/microtubules", given) == 40 and Q.settings_of(given, "cpu")["paper_conv"] == "direct"
    assert Q.steps_for("LPSIM/microtubules", Q.parse_args(["--quick"])) == 30


def _piece(path, settings, records):
    payload = {"benchmark": "quality", "command": f"python -m benchmarks.quality --out {path.name}",
               "settings": settings, "environment": {"device": "cpu"}, "samples": records}
    path.write_text(json.dumps(payload))
    return path


def _rec(name, sample, **methods):
    return {"set": name, "sample": sample, "methods": {m: {"psnr_db": p, "ssim": p / 100, "frc05": 0.1,
                                                           "runtime_s": 1.0, "steps_run": 1}
                                                       for m, p in methods.items()}}


def test_cusim_is_compared_with_the_best_peer_that_ran_on_each_sample(tmp_path):
    """Issue 19's comparison: per sample, cusim minus the better of FISTA + TV and the paper's method (whichever
    ran), SSIM against the higher of theirs; a sample without cusim or without any peer is left out, and the
    peers that ran are counted, so a bar met against FISTA + TV alone says so."""
    from benchmarks import quality as Q

    def rec(sample, **m):  # PSNR and SSIM per method
        return {"set": "NL_SIM/er", "sample": sample,
                "methods": {k: {"psnr_db": p, "ssim": q, "frc05": 0.1, "runtime_s": 1.0, "steps_run": 1}
                            for k, (p, q) in m.items()}}

    records = [rec(1, cusim=(33.0, 0.95), iterative=(31.0, 0.93), paper=(32.5, 0.96)),  # the paper is the best
               rec(2, cusim=(34.0, 0.96), iterative=(33.5, 0.94)),  # the paper did not run
               rec(3, iterative=(30.0, 0.90), paper=(29.0, 0.90)),  # cusim did not run: left out
               rec(4, cusim=(30.0, 0.90), widefield=(20.0, 0.5))]  # no peer: left out
    bp = Q.best_peer(records, "NL_SIM/er")
    assert [(x["sample"], x["best"]) for x in bp["rows"]] == [(1, "paper"), (2, "iterative")]
    assert bp["mean"] == pytest.approx((0.5 + 0.5) / 2) and bp["worst"] == pytest.approx(0.5)
    assert bp["ssim"] == pytest.approx((-0.01 + 0.02) / 2)
    assert bp["ran"] == {"iterative": 2, "paper": 1} and Q.best_peer(records, "SIM/microtubules") is None
    got = {b["bar"].split(" [")[0]: (b["status"], b["n"]) for b in Q.bars({"NL_SIM/er": {}}, records)
           if "best peer" in b["bar"]}
    assert got == {"cusim - best peer PSNR >= 1 dB (mean)": ("MISS", 2),
                   "cusim - best peer PSNR >= -0.5 dB (worst sample)": ("PASS", 2),
                   "cusim SSIM - best peer's >= 0 (mean)": ("PASS", 2)}
    settings = Q.settings_of(Q.parse_args([]), "cuda")
    piece = _piece(tmp_path / "a.json", settings, records)
    assert Q.main(["--merge", str(piece), "--out", str(tmp_path / "all.json"), "--markdown", str(tmp_path / "a.md")]) == 0
    text = (tmp_path / "a.md").read_text()
    assert "| NL_SIM/er | 2 | iterative on 2 of 2, paper on 1 of 2 | +0.50 | +0.50 | +0.005 |" in text
    assert "| NL_SIM/er | 1 | 33.00 | paper | 32.50 | +0.50 | -0.010 |" in text


def test_quality_merge_joins_pieces_and_compares_methods_on_common_samples(tmp_path, capsys):
    from benchmarks import quality as Q

    settings = Q.settings_of(Q.parse_args([]), "cuda")
    a = _piece(tmp_path / "a.json", settings, [_rec("NL_SIM/er", s, widefield=20.0, cusim=30.0 + s) for s in (1, 2, 3)])
    b = _piece(tmp_path / "b.json", settings, [_rec("NL_SIM/er", 1, paper=29.0)])  # the paper's piece was cut short
    out, md = tmp_path / "all.json", tmp_path / "all.md"
    assert Q.main(["--merge", str(a), str(b), "--out", str(out), "--markdown", str(md)]) == 0
    merged = json.loads(out.read_text())
    got = [sorted(r["methods"]) for r in merged["samples"]]
    assert got == [["cusim", "paper", "widefield"], ["cusim", "widefield"], ["cusim", "widefield"]]
    bar = next(b for b in merged["bars"] if b["bar"].startswith("cusim - paper PSNR"))
    # over sample 1 only (31 - 29), not the mean of cusim's three samples (32) against the paper's one
    assert bar["value"] == pytest.approx(2.0) and bar["n"] == 1 and bar["status"] == "PASS"
    assert "(1 common)" in md.read_text()
    # pieces of other protocols, or the same sample and method twice, are refused with one line
    other = _piece(tmp_path / "c.json", {**settings, "crop": 480}, [_rec("NL_SIM/er", 2, paper=29.0)])
    assert Q.main(["--merge", str(a), str(other), "--out", str(tmp_path / "x.json")]) == 2
    assert Q.main(["--merge", str(a), str(a), "--out", str(tmp_path / "y.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "only pieces of one protocol merge" in err[0] and "is in two of the pieces" in err[1]
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()
