"""The torch bridge: gradient = hand-written adjoint, zero-copy DLPack, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cusim import SIMOperator, optics, patterns  # noqa: E402
from cusim.torch_ops import as_array, as_tensor, sim_adjoint, sim_forward  # noqa: E402


def _op(device="cpu", dtype="float64", pad=3):
    pats = patterns.linear((24, 20), period_px=5.5)
    return SIMOperator(pats, optics.gaussian_psf(1.5, size=7), 2, pad_fine=pad, device=device, dtype=dtype)


def _torch_reference(x, op):
    """The same model in pure torch with autograd (periodic, pad_fine=0): FFT conv, block mean."""
    pats = torch.as_tensor(np.asarray(op.patterns), dtype=x.dtype)
    g = op.geometry
    psf = optics.gaussian_psf(1.5, size=7)
    otf = torch.as_tensor(optics.psf_to_otf(psf, (g.Hp, g.Wp)))
    z = torch.fft.ifft2(torch.fft.fft2(pats * x) * otf).real
    return torch.nn.functional.avg_pool2d(z[None], g.s)[0]


def test_gradcheck_passes_in_float64():
    op = _op()
    x = torch.rand(24, 20, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: sim_forward(t, op), (x,))
    assert torch.autograd.gradgradcheck(lambda t: sim_forward(t, op), (x,))
    y = torch.rand(9, 12, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: sim_adjoint(t, op), (y,))


def test_gradient_matches_autograd_of_a_pure_torch_model():
    op = _op(pad=0)
    x = torch.rand(2, 24, 20, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    y = sim_forward(x, op)
    y_ref = torch.stack([_torch_reference(xi, op) for xi in x_ref])
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    w = torch.rand_like(y)
    (y * w).sum().backward()
    (y_ref * w).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


def test_cpu_bridge_shares_memory_with_numpy():
    t = torch.rand(24, 20)
    a = as_array(t)
    assert isinstance(a, np.ndarray)
    assert a.ctypes.data == t.data_ptr()
    a[0, 0] = 42.0
    assert t[0, 0].item() == 42.0
    back = as_tensor(a)
    assert back.data_ptr() == a.ctypes.data


def test_forward_output_tensor_is_a_view_of_the_operator_result(monkeypatch):
    op = _op(dtype="float32")
    seen = {}
    real_forward = op.forward

    def spy(x):
        seen["in"] = x
        seen["out"] = real_forward(x)
        return seen["out"]

    monkeypatch.setattr(op, "forward", spy)
    x = torch.rand(24, 20)
    y = sim_forward(x, op)
    assert seen["in"].ctypes.data == x.data_ptr()  # no copy on the way in
    assert seen["out"].ctypes.data == y.data_ptr()  # nor on the way out


def test_dtype_and_device_mismatches_are_clear_errors():
    op = _op(dtype="float32")
    with pytest.raises(ValueError, match=r"x: dtype float64 does not match the operator's float32; cast with "
                                         r"\.to\(float32\) or build the operator with dtype='float64'$"):
        sim_forward(torch.rand(24, 20, dtype=torch.float64), op)
    # no operator of int64 or float16 exists to build; a NumPy array was "float32 does not match float32"
    for bad in (torch.ones(24, 20, dtype=torch.int64), torch.ones(24, 20, dtype=torch.float16)):
        with pytest.raises(ValueError, match=r"does not match the operator's float32; cast with \.to\(float32\)$"):
            sim_forward(bad, op)
    with pytest.raises(ValueError, match=r"^x: expected a torch tensor, got ndarray"):
        sim_forward(np.zeros((24, 20), np.float32), op)


@pytest.mark.gpu
def test_cuda_bridge_matches_cpu_and_runs_on_torchs_stream():
    cpu, gpu = _op(dtype="float32"), _op(device="cuda", dtype="float32")
    x = torch.rand(3, 24, 20, requires_grad=True)
    xg = x.detach().cuda().requires_grad_(True)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        yg = sim_forward(xg, gpu)
        (yg**2).sum().backward()
    torch.cuda.synchronize()
    y = sim_forward(x, cpu)
    (y**2).sum().backward()
    torch.testing.assert_close(yg.cpu(), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xg.grad.cpu(), x.grad, rtol=1e-4, atol=1e-5)
