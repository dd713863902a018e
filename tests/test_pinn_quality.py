"""PINN resolution on `cusim simulate` data: the FRC cut-off against widefield (issue 4's resolution bar)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import cusim  # noqa: E402
from cusim import metrics  # noqa: E402
from cusim.recon.widefield import image as widefield  # noqa: E402


def _cutoff(img, truth) -> float:
    c = metrics.frc(img, truth, threshold="1/7", crop=10).cutoff
    return 0.5 if c is None else c  # None: the curve stays above 1/7 up to Nyquist


@pytest.mark.slow
def test_pinn_frc_cutoff_is_at_least_1_7_times_the_widefield_one_on_filaments():
    """Linear SIM at 0.9 x the OTF cut-off, SNR 20: theory allows ~1.9x; measured: PINN above 1/7 up
    to Nyquist (0.5 cycles/px, the grid's limit) against 0.235 for widefield.

    Default settings but 100 steps: the default stop ran this field to its 1000-step cap (200 s of the suite's
    10 minutes on 2 cores), and the cut-off is already at Nyquist by step 100 (measured 2026-12-07 at 100, 150
    and 200 steps; 300 before), so the bar is tested with the same margin in a tenth of the time; the stops are
    tested in test_pinn.py and test_camera_noise.py."""
    ds = cusim.simulate(phantom="filaments", shape=(128, 128), upsample=2, family="linear", pattern_freq=0.9,
                        snr=20.0, seed=0)
    res = cusim.reconstruct(ds, "pinn", device="cpu", steps=100)
    wf = _cutoff(widefield(ds), ds.ground_truth)
    assert 0.2 < wf < 0.27  # the widefield OTF cut-off of these optics is 0.231 cycles per fine pixel
    assert _cutoff(res.image, ds.ground_truth) >= 1.7 * wf
