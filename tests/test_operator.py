"""SIMOperator: exact adjoint, forward against a direct real-space model, batching, validation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import convolve2d

import cusim
from cusim import optics, patterns
from cusim.operators import SIMOperator, dottest, power_norm

FAMILIES = ["linear", "nonlinear", "hexagonal", "lattice", "speckle", "array"]


def make_patterns(family: str, shape, rng) -> np.ndarray:
    if family == "linear":
        return patterns.linear(shape, period_px=5.3, angle_offset_deg=7)
    if family == "nonlinear":
        return patterns.nonlinear(shape, period_px=7.1, n_angles=3, n_phases=5, saturation=4)
    if family == "hexagonal":
        return patterns.hexagonal(shape, period_px=4.7, angle_offset_deg=7)
    if family == "lattice":
        return patterns.lattice(shape, period_px=6.5, n_shifts=2)
    if family == "speckle":
        return patterns.speckle(shape, 4, grain_px=3, seed=int(rng.integers(1 << 30)))
    return rng.random((3, *shape)).astype(np.float32)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("s", [1, 2, 3, 4])
@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_adjoint_matches_forward_for_every_family_upsample_and_pad(family, s, pad, dtype, tol):
    rng = np.random.default_rng(s * 10 + pad)
    H, W = s * 7, s * 9  # non-square, odd camera sides
    pats = make_patterns(family, (H, W), rng)
    op = SIMOperator(pats, optics.gaussian_psf(1.3 * s, size=2 * s + 3), s, pad_fine=pad, dtype=dtype, device="cpu")
    assert dottest(op, seed=1) < tol
    assert dottest(op, batch=3, seed=2) < tol


@pytest.mark.parametrize("shape,s", [((16, 16), 2), ((15, 21), 3), ((8, 12), 4)])
def test_adjoint_holds_for_even_odd_and_non_square_grids(shape, s):
    rng = np.random.default_rng(0)
    op = SIMOperator(rng.random((5, *shape)), rng.random((3, 5)), s, dtype="float64", device="cpu")
    assert dottest(op) < 1e-12


def direct_model(x, pats, psf, s, pad):
    """DESIGN section 1 written plainly: pattern product, real-space convolution, s x s block mean."""
    p = psf / psf.sum()
    out = []
    for pat in pats:
        u = pat * x
        if pad:
            z = convolve2d(u, p, mode="same")  # zero outside the field: what the margin models
        else:
            z = np.real(np.fft.ifft2(np.fft.fft2(u) * optics.psf_to_otf(psf, u.shape)))
        out.append(z.reshape(u.shape[0] // s, s, u.shape[1] // s, s).mean(axis=(1, 3)))
    return np.array(out)


@pytest.mark.parametrize("s,pad", [(1, 0), (2, 0), (3, 4), (4, 6), (4, 0)])
def test_forward_equals_convolve_then_block_mean(s, pad):
    rng = np.random.default_rng(s + pad)
    H, W = 8 * s, 5 * s
    pats = rng.random((4, H, W))
    psf = rng.random((5, 7))
    x = rng.random((H, W))
    op = SIMOperator(pats, psf, s, pad_fine=pad, dtype="float64", device="cpu")
    ref = direct_model(x, pats, psf, s, pad)
    np.testing.assert_allclose(op.forward(x), ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("s,pad,margin", [(1, 0, 2), (2, 5, 1), (3, 4, 2), (4, 6, 3)])
def test_margin_frames_are_the_field_window_and_the_adjoint_holds(s, pad, margin):
    rng = np.random.default_rng(s + margin)
    H, W = 10 * s, 12 * s
    pats, psf, x = rng.random((4, H, W)), rng.random((5, 7)), rng.random((H, W))
    op = SIMOperator(pats, psf, s, pad_fine=pad, margin_camera=margin, dtype="float64", device="cpu")
    whole = SIMOperator(pats, psf, s, pad_fine=pad, dtype="float64", device="cpu")
    assert op.input_shape == (H, W) and op.camera_shape == (H // s - 2 * margin, W // s - 2 * margin)
    assert op.output_shape == (4, *op.camera_shape) and (op.pad_fine, op.margin_camera) == (-(-pad // s) * s, margin)
    e = margin * s
    assert op.field == (slice(e, H - e), slice(e, W - e)) and whole.field == (slice(0, H), slice(0, W))
    m = margin
    np.testing.assert_allclose(op.forward(x), whole.forward(x)[:, m:-m, m:-m], rtol=0, atol=1e-13)
    assert op.passband().shape == op.camera_shape
    assert dottest(op) < 1e-12 and dottest(op, batch=2, seed=3) < 1e-12
    f32 = SIMOperator(pats, psf, s, pad_fine=pad, margin_camera=margin, device="cpu")
    assert dottest(f32) < 1e-5


def test_a_crop_with_a_margin_reproduces_the_whole_fields_frames_there():
    # The physics of a margin: the frames of a crop of a larger field hold light blurred in from
    # structure outside the crop. A zero-padded model of the crop alone cannot explain them near its
    # edge; the crop extended by the PSF's reach (and its patterns with it) does, exactly.
    s, r = 2, 5  # PSF 11 x 11: reach 5 fine pixels = 3 camera pixels
    rng = np.random.default_rng(4)
    H = W = 40 * s
    pats = patterns.linear((H, W), period_px=5.3, angle_offset_deg=7)
    psf = optics.gaussian_psf(2.0, size=2 * r + 1)
    x = rng.random((H, W))
    frames = SIMOperator(pats, psf, s, pad_fine=r, dtype="float64", device="cpu").forward(x)
    top, size, m = 12 * s, 16 * s, -(-r // s)
    crop = np.s_[top // s : (top + size) // s, top // s : (top + size) // s]
    ext = np.s_[top - m * s : top + size + m * s]
    op = SIMOperator(pats[:, ext, ext], psf, s, pad_fine=r, margin_camera=m, dtype="float64", device="cpu")
    np.testing.assert_allclose(op.forward(x[ext, ext]), frames[(slice(None), *crop)], rtol=0, atol=1e-12)
    alone = SIMOperator(pats[:, top : top + size, top : top + size], psf, s, pad_fine=r, dtype="float64", device="cpu")
    edge_error = np.abs(alone.forward(x[top : top + size, top : top + size]) - frames[(slice(None), *crop)])
    assert edge_error[:, 0].mean() > 0.05 * frames.mean()  # what the margin is for


def test_camera_integrates_rather_than_decimates():
    # A bright fine pixel anywhere inside a camera pixel's block lands in that camera pixel (mean, not pick).
    s = 4
    op = SIMOperator(np.ones((1, 16, 16)), np.ones((1, 1)), s, dtype="float64", device="cpu")
    x = np.zeros((16, 16))
    x[7, 6] = 16.0
    y = op.forward(x)[0]
    assert y[1, 1] == pytest.approx(1.0)
    assert np.abs(y).sum() == pytest.approx(1.0)


def test_batch_axis_gives_the_same_as_single_images():
    rng = np.random.default_rng(3)
    op = SIMOperator(patterns.linear((24, 24), period_px=6), optics.gaussian_psf(2.0), 2, pad_fine=3, device="cpu")
    xb = rng.random((3, 24, 24)).astype(np.float32)
    yb = op.forward(xb)
    assert yb.shape == (3, 9, 12, 12)
    for b in range(3):
        np.testing.assert_allclose(yb[b], op.forward(xb[b]), rtol=1e-6, atol=1e-7)
    ab = op.adjoint(yb)
    np.testing.assert_allclose(ab[1], op.adjoint(yb[1]), rtol=1e-6, atol=1e-6)


def test_psf_larger_than_the_grid_wraps_as_circular_convolution():
    rng = np.random.default_rng(6)
    pats, x = rng.random((2, 6, 6)), rng.random((6, 6))
    big = rng.random((9, 9))
    wrapped = np.zeros((6, 6))
    for i in range(9):
        for j in range(9):
            wrapped[(i - 4) % 6, (j - 4) % 6] += big[i, j]
    a = SIMOperator(pats, big, 2, dtype="float64", device="cpu").forward(x)
    z = [np.real(np.fft.ifft2(np.fft.fft2(p * x) * np.fft.fft2(wrapped / big.sum()))) for p in pats]
    ref = np.array([zz.reshape(3, 2, 3, 2).mean(axis=(1, 3)) for zz in z])
    np.testing.assert_allclose(a, ref, rtol=1e-12)


def test_psf_scale_does_not_change_the_operator():
    rng = np.random.default_rng(4)
    pats, psf, x = rng.random((2, 12, 12)), rng.random((5, 5)), rng.random((12, 12))
    a = SIMOperator(pats, psf, 2, dtype="float64", device="cpu").forward(x)
    b = SIMOperator(pats, 7.5 * psf, 2, dtype="float64", device="cpu").forward(x)
    np.testing.assert_allclose(a, b, rtol=1e-13)


def test_uniform_illumination_of_uniform_object_gives_uniform_frames():
    op = SIMOperator(np.full((2, 40, 40), 2.0), optics.gaussian_psf(1.0, size=7), 4, pad_fine=4, device="cpu")
    y = op.forward(np.full((40, 40), 3.0, dtype=np.float32))
    # interior camera pixels see the whole PSF: 2 * 3 = 6 (PSF sums to 1); border pixels see the zero margin
    assert y[:, 1:-1, 1:-1] == pytest.approx(np.full((2, 8, 8), 6.0), rel=1e-5)
    assert np.all(y[:, 0, :] < 6.0 - 0.1)


def test_widefield_optics_uses_the_analytic_otf():
    wf = optics.Widefield(na=1.2, wavelength_nm=520, pixel_size_nm=100)
    s = 2
    op = SIMOperator(np.ones((1, 64, 64)), wf, s, dtype="float64", device="cpu")
    # A single fine-grid cosine below the cut-off passes with the OTF gain (times the box factor).
    f = 5 / 64
    x = 1 + np.cos(2 * np.pi * f * np.arange(64))[None, :] * np.ones((64, 1))
    y = op.forward(x)[0]
    gain = 2 * abs(np.fft.fft(y[0])[5]) / y.shape[1]  # amplitude of the cosine on the camera grid
    otf = wf.otf((64, 64), s)[0, 5].real
    box = abs(np.exp(2j * np.pi * f * np.arange(s)).mean())
    assert gain == pytest.approx(otf * box, rel=1e-6)
    assert dottest(op) < 1e-12


def test_norm_estimate_matches_the_largest_singular_value():
    rng = np.random.default_rng(5)
    op = SIMOperator(rng.random((3, 8, 8)), rng.random((3, 3)), 2, dtype="float64", device="cpu")
    dense = np.stack([op.forward(e.reshape(8, 8)).ravel() for e in np.eye(64)], axis=1)
    assert op.norm_estimate(n_iter=500, rtol=1e-12) == pytest.approx(np.linalg.norm(dense, 2), rel=1e-6)


def test_public_api_names_are_exported():
    assert cusim.SIMOperator is SIMOperator and cusim.dottest is dottest


GOOD = dict(patterns=np.ones((3, 8, 8)), psf=np.ones((3, 3)), upsample=2)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(patterns=np.ones((8, 8))), r"patterns: expected a non-empty array of shape \(K, H, W\)"),
        (dict(patterns=np.ones((3, 9, 8))), r"patterns: expected H and W divisible by upsample=2"),
        (dict(patterns=np.full((3, 8, 8), np.nan)), r"patterns: contains NaN or Inf"),
        (dict(patterns=-np.ones((3, 8, 8))), r"patterns: illumination must be non-negative"),
        (dict(psf=np.ones((4, 3))), r"psf: expected odd sides"),
        (dict(psf=-np.ones((3, 3))), r"psf: must be non-negative"),
        (dict(psf=np.zeros((3, 3))), r"psf: all zero"),
        (dict(psf=np.array([[np.inf]])), r"psf: contains NaN or Inf"),
        (dict(upsample=0), r"upsample: expected an integer 1\.\.8, got 0"),
        (dict(upsample=2.0), r"upsample: expected an integer"),
        (dict(margin_camera=-1), r"margin_camera: expected an integer >= 0, got -1"),
        (dict(margin_camera=2), r"margin_camera: 2 camera pixels on each side leaves no field of the 4x4 camera"),
        (dict(pad_fine=1.5), r"pad_fine: expected an integer >= 0, got 1\.5"),
    ],
)
def test_bad_construction_raises_one_clear_value_error(change, match):
    kwargs = {**GOOD, **change}
    with pytest.raises(ValueError, match=match):
        SIMOperator(kwargs["patterns"], kwargs["psf"], kwargs["upsample"], pad_fine=kwargs.get("pad_fine", 0),
                    margin_camera=kwargs.get("margin_camera", 0), device="cpu")


def test_bad_call_inputs_name_the_argument_and_expected_shape():
    op = SIMOperator(**GOOD, device="cpu")
    with pytest.raises(ValueError, match=r"x: expected shape \(8, 8\) or \(B, \*\(8, 8\)\), got \(8, 6\)"):
        op.forward(np.ones((8, 6)))
    with pytest.raises(ValueError, match=r"y: expected shape \(3, 4, 4\) or \(B, \*\(3, 4, 4\)\), got \(9, 4, 4\)"):
        op.adjoint(np.ones((9, 4, 4)))


def test_cuda_without_a_gpu_is_a_clear_value_error(monkeypatch):
    from cusim import backend

    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    with pytest.raises(ValueError, match=r"device='cuda': no usable CUDA GPU"):
        SIMOperator(**GOOD, device="cuda")
    with pytest.raises(ValueError, match=r"device: expected one of"):
        SIMOperator(**GOOD, device="gpu")


def test_dtype_is_float32_by_default_and_float64_on_request():
    op = SIMOperator(**GOOD, device="cpu")
    assert op.forward(np.ones((8, 8))).dtype == np.float32
    op64 = SIMOperator(**GOOD, device="cpu", dtype="float64")
    assert op64.adjoint(np.ones((3, 4, 4))).dtype == np.float64
    with pytest.raises(ValueError, match=r"dtype: expected one of \['float32', 'float64'\], got 'float16'"):
        SIMOperator(**GOOD, dtype="float16")


# -- shapes, paddings by their units, and the generic adjoint test -----------------------------
def test_shapes_follow_scipy_input_shape_and_output_shape():
    op = SIMOperator(np.ones((3, 12, 16)), np.ones((3, 3)), 2, margin_camera=1, device="cpu")
    assert op.input_shape == (12, 16) and op.output_shape == (3, 4, 6) == (op.K, *op.camera_shape)
    assert op.forward(np.ones(op.input_shape)).shape == op.output_shape
    assert op.adjoint(np.ones(op.output_shape)).shape == op.input_shape
    assert not hasattr(op, "shape")  # an operator's .shape would be the matrix shape (M, N): not offered
    assert "pad_fine=0" in repr(op) and "margin_camera=1" in repr(op)


def test_deprecated_pad_warns_and_builds_the_same_operator_as_pad_fine():
    rng = np.random.default_rng(8)
    pats, psf, x = rng.random((3, 12, 12)), rng.random((3, 3)), rng.random((12, 12))
    new = SIMOperator(pats, psf, 2, pad_fine=3, dtype="float64", device="cpu")
    with pytest.warns(DeprecationWarning, match=r"pad= is deprecated; use pad_fine="):
        old = SIMOperator(pats, psf, 2, pad=3, dtype="float64", device="cpu")
    assert old.pad_fine == new.pad_fine == 4 and old.geometry == new.geometry
    np.testing.assert_array_equal(old.forward(x), new.forward(x))
    with pytest.raises(ValueError, match="pad: deprecated name of pad_fine"), pytest.warns(DeprecationWarning):
        SIMOperator(pats, psf, 2, pad=3, pad_fine=3, device="cpu")
    with pytest.raises(TypeError, match="margin"):
        SIMOperator(pats, psf, 2, margin=1, device="cpu")  # never in the stable signature: gone


class DenseOp:
    """A dense matrix as a generic operator (no SIM, no device): x (4, 5) -> y (2, 3, 3)."""

    input_shape = (4, 5)

    def __init__(self, A, At=None):
        self.A, self.At = A, A.T if At is None else At

    def forward(self, x):
        return np.einsum("ij,...j->...i", self.A, x.reshape(*x.shape[:-2], -1)).reshape(*x.shape[:-2], 2, 3, 3)

    def adjoint(self, y):
        return np.einsum("ij,...j->...i", self.At, y.reshape(*y.shape[:-3], -1)).reshape(*y.shape[:-3], 4, 5)


def test_dottest_works_on_any_operator_and_raises_on_a_wrong_adjoint():
    A = np.random.default_rng(9).standard_normal((18, 20))
    assert dottest(DenseOp(A)) < 1e-13  # float64 without a dtype attribute
    assert dottest(DenseOp(A), batch=3, raise_error=True) < 1e-13
    wrong = DenseOp(A, At=A.T * 1.001)
    err = dottest(wrong)
    assert 1e-4 < err < 1e-2
    with pytest.raises(AssertionError, match=r"dottest: relative error .* exceeds rtol 1e-12 \(float64\)"):
        dottest(wrong, raise_error=True)
    assert dottest(wrong, rtol=1e-2, raise_error=True) == err  # within a looser tolerance
    with pytest.raises(AssertionError, match="rtol 1e-05"):
        dottest(DenseOp(A, At=A.T[:, ::-1]), dtype="float32", raise_error=True)


def test_dottest_default_tolerance_follows_the_operators_dtype():
    op32 = SIMOperator(**GOOD, device="cpu")
    assert dottest(op32, raise_error=True) < 1e-5  # float32: 1e-5
    op64 = SIMOperator(**GOOD, dtype="float64", device="cpu")
    assert dottest(op64, raise_error=True) < 1e-12


def test_power_norm_is_the_one_power_iteration_of_norm_estimate():
    rng = np.random.default_rng(5)
    op = SIMOperator(rng.random((3, 8, 8)), rng.random((3, 3)), 2, dtype="float64", device="cpu")
    assert power_norm(op, op.input_shape) == op.norm_estimate()
    A = rng.standard_normal((18, 20))
    assert power_norm(DenseOp(A), (4, 5), n_iter=500, rtol=1e-14) == pytest.approx(np.linalg.norm(A, 2), rel=1e-6)
    with pytest.raises(ValueError, match="n_iter: expected an integer >= 1"):
        power_norm(op, op.input_shape, n_iter=0)


def test_the_operator_keeps_its_own_patterns_and_checks_what_it_is_given():
    """It held a view of the caller's patterns, so it followed the caller's edits (its cached norm went stale);
    a list, a number, an empty batch or complex input failed deep inside or lost the imaginary part silently."""
    pats = patterns.linear((16, 16), period_px=4)
    op = SIMOperator(pats, optics.gaussian_psf(1.0), 2, device="cpu", dtype=np.float32)  # a NumPy type too
    x = np.ones((16, 16), np.float32)
    y = op.forward(x).copy()
    pats[:] = 0
    np.testing.assert_array_equal(op.forward(x), y)
    np.testing.assert_array_equal(op.forward(x.tolist()), y)  # a nested list is an array
    assert SIMOperator(patterns.linear((16, 16), period_px=4).tolist(), optics.gaussian_psf(1.0), 2,
                       device="cpu").K == 9
    for bad, says in ((3.0, r"x: expected shape \(16, 16\) or \(B, \*\(16, 16\)\), got \(\)"),
                      (np.zeros((0, 16, 16)), r"x: an empty batch \(B = 0"),
                      (x + 1j * x, r"x: expected real numbers, got dtype complex64")):
        with pytest.raises(ValueError, match=says):
            op.forward(bad)
    with pytest.raises(ValueError, match=r"y: an empty batch"):
        op.adjoint(np.zeros((0, 9, 8, 8)))
    np.testing.assert_array_equal(op.forward(np.ones((16, 16), bool)), y)  # a mask is an image of 0 and 1
    with pytest.raises(ValueError, match=r"dtype: expected one of \['float32', 'float64'\], got 'None'"):
        SIMOperator(patterns.linear((16, 16), period_px=4), optics.gaussian_psf(1.0), 2, device="cpu", dtype=None)


def test_dottest_holds_a_float32_operator_to_float32s_tolerance_with_float64_vectors():
    op = SIMOperator(patterns.linear((16, 16), period_px=4), optics.gaussian_psf(1.0), 2, device="cpu")
    assert dottest(op, dtype=np.float64, raise_error=True) < 1e-5  # it was held to 1e-12 and failed
