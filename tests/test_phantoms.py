"""Phantoms: seeded, float32 in [0, 1] with max 1, and each looks like what it claims to be."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cusim import phantoms
from cusim.phantoms import PHANTOMS

NAMES = sorted(PHANTOMS)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_range_shape(name):
    a = phantoms.make(name, (48, 80), seed=3)
    assert a.shape == (48, 80) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(a, PHANTOMS[name]((48, 80), seed=3))
    assert not np.array_equal(a, phantoms.make(name, (48, 80), seed=4))


def test_make_unknown_name_lists_the_allowed():
    with pytest.raises(ValueError, match=r"phantom: .*'actin'.*'ccp'.*'er'.*'filaments'"):
        phantoms.make("mitochondria", (32, 32))


@pytest.mark.parametrize("kwargs, name", [
    (dict(shape=(0, 32)), "shape"), (dict(shape=(32,)), "shape"),
])
def test_bad_shape(kwargs, name):
    for fn in PHANTOMS.values():
        with pytest.raises(ValueError, match=name):
            fn(**kwargs)


def test_beads_refuse_a_field_with_no_room_inside_their_border():
    # they keep 3 px from the border: (5, 3) was numpy's "high - low < 0", (6, 6) put 1 of 3 beads on one pixel
    for shape in ((5, 3), (6, 6), (6, 40)):
        with pytest.raises(ValueError, match="shape: beads keep 3 px from the border; expected at least 7 x 7"):
            phantoms.beads(shape, n=3)
    assert phantoms.beads((7, 7), n=1).max() == pytest.approx(1.0)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="radius_px"):
        phantoms.ccp((32, 32), radius_px=(5, 2))
    with pytest.raises(ValueError, match="prune"):
        phantoms.er((32, 32), prune=1.0)
    with pytest.raises(ValueError, match="pair_fraction"):
        phantoms.actin((32, 32), pair_fraction=2)
    with pytest.raises(ValueError, match="n:"):
        phantoms.filaments((32, 32), n=0)


def test_filaments_are_thin_lines():
    bright = phantoms.filaments((128, 128), seed=0) > 0.2
    assert bright.mean() < 0.25  # most of the field is dark
    # lines ~1 px wide: a 3 x 3 erosion removes almost all of them (what is left are crossings)
    assert ndimage.binary_erosion(bright, np.ones((3, 3))).sum() < 0.05 * bright.sum()


def test_ccp_rings_are_hollow_and_separate():
    one = phantoms.ccp((64, 64), n=1, radius_px=(8, 8), seed=2)
    cy, cx = (int(round(c)) for c in ndimage.center_of_mass(one))
    assert one[cy, cx] < 0.5 * one.max()  # a projected shell: centre ~1/3 of the rim
    many = phantoms.ccp((128, 128), n=10, radius_px=(3, 6), seed=1)
    _, count = ndimage.label(many > 0.05)
    assert count == 10  # placed without overlap


def test_er_has_three_way_junctions_and_closed_polygons():
    v, edges = phantoms._er_graph((128, 128), 20.0, 0.0, np.random.default_rng(0))
    inside = (v[:, 0] >= 0) & (v[:, 0] < 128) & (v[:, 1] >= 0) & (v[:, 1] < 128)
    degree = np.bincount(edges.ravel(), minlength=len(v))[inside]
    assert degree.max() == 3 and np.mean(degree == 3) > 0.95
    img = phantoms.er((128, 128), mesh_px=20.0, seed=0)
    _, holes = ndimage.label(img < 0.1)
    assert holes >= 20  # ~40 polygons of 20 px in 128 x 128, a few merged by pruning


def _structure(img):
    """Coherence (0 isotropic .. 1 one direction) and line direction in degrees (0 = along +column,
    positive towards +row, as the phantoms' headings) from the image's structure tensor."""
    gy, gx = np.gradient(img.astype(np.float64))
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    gradient_deg = np.rad2deg(0.5 * np.arctan2(2 * jxy, jxx - jyy))
    return np.hypot(jxx - jyy, 2 * jxy) / (jxx + jyy), (gradient_deg + 90) % 180


def _angle_between(a, b):
    d = abs(a - b) % 180
    return min(d, 180 - d)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_actin_bundles_are_straight_aligned_or_crossing(seed):
    coherence, direction = _structure(phantoms.actin((128, 128), angle_deg=20, cross_fraction=0.0, seed=seed))
    assert coherence > 0.7 and _angle_between(direction, 20) < 15
    assert _structure(phantoms.filaments((128, 128), seed=seed))[0] < 0.5
    coherence, cross = _structure(phantoms.actin((128, 128), angle_deg=20, cross_fraction=1.0, seed=seed))
    assert coherence > 0.7 and 30 < _angle_between(cross, 20) <= 90


def test_actin_pairs_are_two_close_parallel_lines():
    a = phantoms.actin((64, 64), n=1, angle_deg=0.0, spread_deg=0.0, stiffness=0.0, pair_fraction=1.0, seed=5)
    profile = a[:, 32]
    peaks = [i for i in range(1, 63) if profile[i] > max(profile[i - 1], profile[i + 1]) and profile[i] > 0.3]
    assert len(peaks) == 2 and 2 <= peaks[1] - peaks[0] <= 5
