"""cusim.optim: FISTA against NNLS/lstsq, the TV and Hessian proxes, gain/offset fits, Richardson-Lucy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage
from scipy.optimize import nnls

from cusim import optim, patterns, phantoms
from cusim.metrics import nrmse
from cusim.operators import SIMOperator, power_norm
from cusim.optics import Widefield


class MatrixOp:
    """A dense matrix as an operator (H, W) -> (K, h, w)."""

    def __init__(self, A, frames, shape):
        self.A, self.frames, self.input_shape = A, frames, shape

    def forward(self, x):
        return (self.A @ x.ravel()).reshape(self.frames)

    def adjoint(self, y):
        return (self.A.T @ y.ravel()).reshape(self.input_shape)

    def norm_estimate(self):
        return float(np.linalg.norm(self.A, 2))


class BareMatrixOp:
    """The same without ``norm_estimate``: fista must run its own power iteration."""

    def __init__(self, A, frames, shape):
        self._m = MatrixOp(A, frames, shape)
        self.forward, self.adjoint = self._m.forward, self._m.adjoint


@pytest.fixture(scope="module")
def small_problem():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((60, 20))
    x_true = rng.standard_normal(20)  # negative entries: the non-negativity constraint is active
    y = (A @ x_true + 0.1 * rng.standard_normal(60)).reshape(3, 4, 5)
    return A, y


@pytest.fixture(scope="module")
def sim():
    """A small SIM problem: 48 x 48 fine grid, s = 2, 3 x 3 linear patterns, filaments."""
    H, s = 48, 2
    op = SIMOperator(patterns.linear((H, H), period_px=5.0, angle_offset_deg=10), Widefield(1.2, 520, 100), s,
                     dtype="float64", device="cpu")
    x = phantoms.filaments((H, H), n=6, seed=3).astype(np.float64)
    return op, x, op.forward(x)


def rel(a, b):
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b)))


# -- FISTA on a dense matrix -------------------------------------------------------------------
def test_fista_without_prior_matches_nnls_and_loss_is_monotone(small_problem):
    A, y = small_problem
    ref, _ = nnls(A, y.ravel())
    assert (ref == 0).sum() >= 3  # the constraint matters
    res = optim.fista(MatrixOp(A, y.shape, (4, 5)), y, n_iter=3000, tol=1e-12)
    assert res.converged and res.stop == "tol" and res.n_iter == len(res.loss) < 3000
    assert rel(res.x, ref) < 1e-4
    assert res.x.min() >= 0
    assert np.diff(res.loss).max() <= 1e-9 * res.loss[0]
    np.testing.assert_allclose(res.loss[-1], 0.5 * np.sum((A @ ref - y.ravel()) ** 2), rtol=1e-8)
    np.testing.assert_array_equal(res.gain, np.ones(3))
    np.testing.assert_array_equal(res.offset, np.zeros(3))


def test_fista_unconstrained_matches_lstsq_and_restart_speeds_it_up(small_problem):
    A, y = small_problem
    ref = np.linalg.lstsq(A, y.ravel(), rcond=None)[0]
    op = MatrixOp(A, y.shape, (4, 5))
    res = optim.fista(op, y, n_iter=3000, tol=1e-12, nonneg=False)
    assert rel(res.x, ref) < 1e-4
    loss = res.loss
    assert np.diff(loss).max() <= 1e-3 * (loss[0] - loss[-1])  # nearly monotone: restarts catch rises
    plain = optim.fista(op, y, n_iter=3000, tol=1e-12, nonneg=False, restart=False)
    assert rel(plain.x, ref) < 1e-4 and plain.n_iter > res.n_iter


def test_fista_takes_its_step_from_the_largest_gain_in_magnitude(small_problem):
    # The Lipschitz constant is max_k a_k^2 ||A||^2: with a negative gain, max(a) undersized it (gains -3 and 1:
    # 9x too small a constant) and the loss grew to 1e90 in 50 iterations.
    A, y = small_problem
    gain = np.array([-3.0, 1.0, 1.0])
    scaled = (gain[:, None, None] * (A @ np.linalg.lstsq(A, y.ravel(), rcond=None)[0]).reshape(y.shape))
    res = optim.fista(MatrixOp(A, y.shape, (4, 5)), scaled, gain=gain, n_iter=200, tol=0, nonneg=False, restart=False)
    assert res.loss.max() <= res.loss[0] and res.loss[-1] < 1e-6 * res.loss[0]  # (accelerated: not monotone)


def test_fista_runs_its_own_power_iteration_without_norm_estimate(small_problem):
    A, y = small_problem
    ref, _ = nnls(A, y.ravel())
    bare = BareMatrixOp(A, y.shape, (4, 5))
    res = optim.fista(bare, y, n_iter=3000, tol=1e-12)
    assert rel(res.x, ref) < 1e-4
    # the one power iteration of the package (cusim.operators.power_norm) on the data's grid
    assert power_norm(bare, np.zeros((4, 5))) == pytest.approx(np.linalg.norm(A, 2), rel=1e-3)


def test_fista_stops_on_callback_and_validates_arguments(small_problem):
    A, y = small_problem
    op = MatrixOp(A, y.shape, (4, 5))
    seen = []
    res = optim.fista(op, y, n_iter=50, callback=lambda i, x, loss: seen.append(loss) or i == 4)
    assert res.stop == "callback" and res.n_iter == 5 and not res.converged
    np.testing.assert_array_equal(res.loss, seen)
    assert optim.fista(op, y, n_iter=7, tol=0).stop == "max_iter"
    with pytest.raises(ValueError, match="prior"):
        optim.fista(op, y, prior="l1", prior_weight=1.0)
    with pytest.raises(ValueError, match=r"prior: expected one of \['none', 'tv', 'hessian'\], got None"):
        optim.fista(op, y, prior=None)  # no prior is the string "none"
    for bad, says in ((dict(prior_weight=-1.0), "prior_weight: expected a finite number >= 0"),
                      (dict(n_iter=1.5), "n_iter: expected an integer >= 0"),
                      (dict(refit_every=0), "refit_every: expected an integer >= 1"),
                      (dict(step=0.0), "step: expected a finite number > 0"),
                      (dict(tol=float("nan")), "tol: expected a finite number >= 0")):
        with pytest.raises(ValueError, match=says):
            optim.fista(op, y, **bad)
    with pytest.raises(ValueError, match="y:"):
        optim.fista(op, y[0])


# -- proximal operators ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def noisy_disc():
    rng = np.random.default_rng(1)
    rows, cols = np.mgrid[:32, :32]
    clean = ((rows - 16) ** 2 + (cols - 14) ** 2 < 64) + 0.5 * (cols > 20)
    return clean + 0.2 * rng.standard_normal((32, 32))


def test_difference_operators_have_exact_adjoints():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 9))
    for op, op_t, n in [(optim._grad, optim._grad_t, 2), (optim._hess, optim._hess_t, 3)]:
        p = rng.standard_normal((n, 7, 9))
        assert abs(np.vdot(op(x, np), p) - np.vdot(x, op_t(p, np))) < 1e-12 * np.linalg.norm(x) * np.linalg.norm(p)


def test_prox_tv_solves_the_rof_problem(noisy_disc):
    v, lam = noisy_disc, 0.3

    def objective(x):
        return 0.5 * np.sum((x - v) ** 2) + lam * optim.tv(x)

    x100 = optim.prox_tv(v, lam, n_iter=100)
    x500 = optim.prox_tv(v, lam, n_iter=500)
    assert objective(x100) < objective(v) and objective(x100) < objective(np.full_like(v, v.mean()))
    assert objective(x500) <= objective(x100) <= objective(x500) * (1 + 2e-3)
    assert np.abs(optim.prox_tv(v, lam, n_iter=250) - x500).max() < 1e-3
    assert optim.tv(x100) < 0.5 * optim.tv(v)


def test_prox_tv_identity_at_zero_weight_and_nonneg_projection(noisy_disc):
    v = noisy_disc - 0.5
    np.testing.assert_array_equal(optim.prox_tv(v, 0.0), v)
    x = optim.prox_tv(v, 0.3, nonneg=True)
    assert x.min() >= 0 and v.min() < -0.5
    # the constrained prox is not the clipped unconstrained one, but close to it for a small weight
    assert np.abs(x - np.maximum(optim.prox_tv(v, 0.3), 0)).max() < 0.3


def test_prox_hessian_decreases_objective_and_keeps_affine_images(noisy_disc):
    v, lam = noisy_disc, 0.3

    def objective(x):
        return 0.5 * np.sum((x - v) ** 2) + lam * optim.hessian_norm(x)

    x = optim.prox_hessian(v, lam, n_iter=100)
    assert objective(x) < 0.2 * objective(v)
    assert objective(optim.prox_hessian(v, lam, n_iter=400)) <= objective(x)
    np.testing.assert_array_equal(optim.prox_hessian(v, 0.0), v)
    rows, cols = np.mgrid[:32, :24]
    ramp = 1.0 + 0.1 * rows + 0.05 * cols
    assert optim.hessian_norm(ramp) < 1e-9
    np.testing.assert_allclose(optim.prox_hessian(ramp, 1.0), ramp, atol=1e-9)
    np.testing.assert_allclose(optim.prox_hessian(ramp, 1.0, nonneg=True), ramp, atol=1e-9)
    assert optim.prox_hessian(v - 0.5, lam, nonneg=True).min() >= 0


# -- FISTA on SIM ------------------------------------------------------------------------------
def test_fista_beats_widefield_on_noise_free_sim(sim):
    op, x, y = sim
    widefield = ndimage.zoom(y.mean(axis=0), 2, order=3, grid_mode=True, mode="grid-mirror")
    res = optim.fista(op, y, n_iter=100)
    assert res.x.min() >= 0
    assert res.loss[-1] < 1e-3 * res.loss[0]
    e_fista, e_wf = nrmse(res.x, x, norm="lstsq"), nrmse(widefield, x, norm="lstsq")
    assert e_fista < 0.25 and e_fista < 0.4 * e_wf


@pytest.mark.parametrize("prior,lam", [("tv", 1e-3), ("hessian", 5e-4)])
def test_fista_prior_beats_no_prior_at_moderate_noise(sim, prior, lam):
    op, x, y = sim
    noisy = y + 0.05 * y.max() * np.random.default_rng(3).standard_normal(y.shape)
    plain = optim.fista(op, noisy, n_iter=100, tol=0)
    reg = optim.fista(op, noisy, n_iter=100, tol=0, prior=prior, prior_weight=lam)
    assert reg.x.min() >= 0
    assert nrmse(reg.x, x, norm="lstsq") < 0.9 * nrmse(plain.x, x, norm="lstsq")
    pen = optim.tv if prior == "tv" else optim.hessian_norm
    r = reg.gain[:, None, None] * op.forward(reg.x) + reg.offset[:, None, None] - noisy
    np.testing.assert_allclose(reg.loss[-1], 0.5 * np.sum(r**2) + lam * pen(reg.x), rtol=1e-6)


def test_fista_recovers_known_gains_and_offsets(sim):
    op, x, _ = sim
    rng = np.random.default_rng(1)
    gain = np.linspace(0.8, 1.2, 9)
    rng.shuffle(gain)
    offset = 100 + rng.uniform(-10, 10, 9)
    y = 3.0 * gain[:, None, None] * op.forward(50 * x) + offset[:, None, None]
    res = optim.fista(op, y, n_iter=200, fit_gain_offset=True, tol=0)
    np.testing.assert_allclose(res.gain.mean(), 1.0, rtol=1e-12)
    assert np.abs(res.gain - gain / gain.mean()).max() < 0.04
    assert np.abs(res.offset - offset).max() < 0.03 * offset.min()
    assert nrmse(res.x, x, norm="lstsq") < 0.35
    ignored = optim.fista(op, y - 100, n_iter=200, tol=0)  # the same data with gains and offsets ignored
    assert nrmse(res.x, x, norm="lstsq") < 0.5 * nrmse(ignored.x, x, norm="lstsq")


# -- gain and offset ---------------------------------------------------------------------------
def test_fit_gain_offset_is_exact_on_synthetic_frames():
    rng = np.random.default_rng(4)
    ax = rng.random((5, 6, 7))
    gain, offset = rng.uniform(0.5, 2, 5), rng.uniform(-3, 3, 5)
    g, o = optim.fit_gain_offset(ax, gain[:, None, None] * ax + offset[:, None, None])
    assert g.dtype == np.float64 and g.shape == (5,)
    np.testing.assert_allclose(g, gain, rtol=1e-12)
    np.testing.assert_allclose(o, offset, rtol=1e-12, atol=1e-12)


def test_fit_gain_offset_replaces_negative_gain_by_moment_match():
    rng = np.random.default_rng(5)
    ax = rng.random((2, 8, 8))
    y = np.stack([-2.0 * ax[0] + 5.0, 3.0 * ax[1] + 1.0])  # frame 0 anti-correlated
    g, o = optim.fit_gain_offset(ax, y)
    np.testing.assert_allclose(g, [2.0, 3.0], rtol=1e-12)  # std(y) / std(ax)
    np.testing.assert_allclose(o, [y[0].mean() - 2.0 * ax[0].mean(), 1.0], rtol=1e-12)
    g, o = optim.fit_gain_offset(ax, y, positive=False)
    np.testing.assert_allclose(g, [-2.0, 3.0], rtol=1e-12)
    g, o = optim.fit_gain_offset(np.ones((1, 4, 4)), np.full((1, 4, 4), 7.0))
    np.testing.assert_allclose([g[0], o[0]], [1.0, 6.0])  # flat model: gain 1, offset takes the rest


# -- Richardson-Lucy ---------------------------------------------------------------------------
def test_richardson_lucy_increases_poisson_likelihood_and_stays_nonneg(sim):
    op, x, y = sim
    counts = np.random.default_rng(6).poisson(50 * y + 2).astype(np.float64)
    res = optim.richardson_lucy(op, counts, n_iter=60, background=2.0, tol=0)
    assert res.n_iter == 60 and res.x.min() >= 0
    assert np.diff(res.loss).max() <= 1e-9 * res.loss[0]  # I-divergence = -log-likelihood + const
    np.testing.assert_array_equal(res.offset, np.full(9, 2.0))
    # negative values (subtracted camera offset, read noise) are clipped, not propagated
    shifted = optim.richardson_lucy(op, counts - 4.0, n_iter=5)
    assert np.isfinite(shifted.x).all() and shifted.x.min() >= 0


def test_richardson_lucy_shrinks_the_residual_on_noise_free_data(sim):
    op, x, y = sim
    res = optim.richardson_lucy(op, 50 * y, n_iter=100, tol=0)
    r0 = np.linalg.norm(op.forward(np.full_like(x, (50 * y).mean() / op.forward(np.ones_like(x)).mean())) - 50 * y)
    r = np.linalg.norm(op.forward(res.x) - 50 * y)
    assert r < 0.05 * r0
    assert nrmse(res.x, x, norm="lstsq") < 0.3


# -- packaging and GPU -------------------------------------------------------------------------
def test_import_does_not_pull_in_torch():
    code = "import cusim.optim, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
def test_fista_tv_on_cupy_matches_numpy(sim):
    import cupy  # noqa: PLC0415

    op, x, y = sim
    noisy = y + 0.05 * y.max() * np.random.default_rng(3).standard_normal(y.shape)
    op_gpu = SIMOperator(op.patterns, Widefield(1.2, 520, 100), 2, dtype="float64", device="cuda")
    kw = dict(n_iter=30, tol=0, prior="tv", prior_weight=1e-3)
    cpu = optim.fista(op, noisy, **kw)
    gpu = optim.fista(op_gpu, cupy.asarray(noisy), **kw)
    assert isinstance(gpu.x, cupy.ndarray)
    np.testing.assert_allclose(gpu.x.get(), cpu.x, rtol=1e-4, atol=1e-4 * np.abs(cpu.x).max())
    np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=1e-4)
