"""Autodiff-free solvers for the linear SIM inverse problem (DESIGN sections 1 and 3).

The problem: given frames ``y`` (K, h, w) and a linear operator ``A`` (x: (H, W) -> (K, h, w)),
find the object ``x`` with ``y_k ~ a_k (A x)_k + b_k`` (per-frame gain ``a_k``, offset ``b_k``):

- :func:`fista` minimises ``0.5 sum_k ||a_k (A x)_k + b_k - y_k||^2 + prior_weight R(x)`` subject to
  ``x >= 0`` (optional), ``R`` = ``"none"``, isotropic total variation (``"tv"``, :func:`tv`) or the
  Frobenius norm of the Hessian (``"hessian"``, :func:`hessian_norm`), optionally refitting ``a_k, b_k``
  (:func:`fit_gain_offset`);
- :func:`richardson_lucy` maximises the Poisson likelihood of ``y`` under ``A x + b`` (EM update).

Any operator with ``forward(x)`` and ``adjoint(y)`` works (optionally ``norm_estimate()``, the
spectral norm ``||A||_2``; else :func:`cusim.operators.power_norm` estimates it); :class:`cusim.SIMOperator`
is the real one. The array module comes from the data (NumPy or CuPy), so the same code runs on the CPU
and the GPU. Gradients are the operator's hand-written adjoint: no torch, no autodiff.

References
----------
- A. Beck, M. Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear inverse
  problems", SIAM J. Imaging Sci. 2(1) 183 (2009): FISTA.
- A. Beck, M. Teboulle, "Fast gradient-based algorithms for constrained total variation image
  denoising and deblurring problems", IEEE TIP 18(11) 2419 (2009): FGP, the TV prox with a box.
- B. O'Donoghue, E. Candes, "Adaptive restart for accelerated gradient schemes", Found. Comput.
  Math. 15, 715 (2015): gradient and function restart.
- S. Lefkimmiatis, J. P. Ward, M. Unser, "Hessian Schatten-norm regularization for linear inverse
  problems", IEEE TIP 22(5) 1873 (2013): Hessian penalties and their dual projections.
- W. H. Richardson (1972), L. B. Lucy (1974); L. A. Shepp, Y. Vardi (1982): the EM update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import check_choice, check_int, check_number, check_positive
from .backend import get_xp, to_numpy
from .operators import power_norm

__all__ = ["OptimResult", "fit_gain_offset", "fista", "richardson_lucy", "prox_tv", "prox_hessian",
           "tv", "hessian_norm"]

PRIORS = ("none", "tv", "hessian")  # the string "none" means no prior, here as everywhere in cusim


@dataclass
class OptimResult:
    """Outcome of a solver.

    Attributes
    ----------
    x : array (H, W)
        The estimate, on the device of the data (NumPy or CuPy).
    gain, offset : numpy.ndarray (K,), float64
        Per-frame gain ``a_k`` and offset ``b_k`` of the model ``y_k ~ a_k (A x)_k + b_k``.
    loss : numpy.ndarray (n_iter,)
        Objective after each iteration (solver-specific, see the solver).
    n_iter : int
        Iterations run.
    stop : str
        ``"max_iter"``, ``"tol"`` (relative change below ``tol``) or ``"callback"``.
    """

    x: object
    gain: np.ndarray
    offset: np.ndarray
    loss: np.ndarray
    n_iter: int
    stop: str

    @property
    def converged(self) -> bool:
        """True when the relative-change criterion stopped the iterations."""
        return self.stop == "tol"


# -- finite differences on the last two axes (forward differences, zero where they leave the grid) --
def _ix(axis: int, sl: slice) -> tuple:
    return (Ellipsis, sl, slice(None)) if axis == -2 else (Ellipsis, sl)


def _d1(x, axis):
    out = get_xp(x).zeros_like(x)
    out[_ix(axis, slice(None, -1))] = x[_ix(axis, slice(1, None))] - x[_ix(axis, slice(None, -1))]
    return out


def _d1t(p, axis):
    q = p[_ix(axis, slice(None, -1))]
    out = get_xp(p).zeros_like(p)
    out[_ix(axis, slice(None, -1))] -= q
    out[_ix(axis, slice(1, None))] += q
    return out


def _d2(x, axis):
    out = get_xp(x).zeros_like(x)
    out[_ix(axis, slice(None, -2))] = (x[_ix(axis, slice(2, None))] - 2 * x[_ix(axis, slice(1, -1))]
                                       + x[_ix(axis, slice(None, -2))])
    return out


def _d2t(p, axis):
    q = p[_ix(axis, slice(None, -2))]
    out = get_xp(p).zeros_like(p)
    out[_ix(axis, slice(None, -2))] += q
    out[_ix(axis, slice(1, -1))] -= 2 * q
    out[_ix(axis, slice(2, None))] += q
    return out


_SQRT2 = math.sqrt(2.0)


def _grad(x, xp):
    return xp.stack([_d1(x, -2), _d1(x, -1)])


def _grad_t(p, xp):
    return _d1t(p[0], -2) + _d1t(p[1], -1)


def _hess(x, xp):
    """(xx, yy, sqrt2 xy): its per-pixel Euclidean norm is the Frobenius norm of the 2x2 Hessian."""
    return xp.stack([_d2(x, -2), _d2(x, -1), _SQRT2 * _d1(_d1(x, -2), -1)])


def _hess_t(p, xp):
    return _d2t(p[0], -2) + _d2t(p[1], -1) + _SQRT2 * _d1t(_d1t(p[2], -1), -2)


# ||grad||^2 <= 8 and ||hess||^2 <= 64 (the symbol (u + v)^2 with u, v = 4 sin^2 in [0, 4]).
_PRIOR_OPS = {"tv": (_grad, _grad_t, 8.0), "hessian": (_hess, _hess_t, 64.0)}


def tv(x) -> float:
    """Isotropic total variation ``sum_ij sqrt(dx^2 + dy^2)`` (forward differences, Neumann)."""
    xp = get_xp(x)
    return float(xp.sqrt((_grad(x, xp) ** 2).sum(axis=0)).sum())


def hessian_norm(x) -> float:
    """Hessian-Frobenius penalty ``sum_ij sqrt(xx^2 + yy^2 + 2 xy^2)`` (second differences inside the grid).

    Affine images have zero penalty. This is the Schatten-2 member of the Hessian Schatten-norm
    family of Lefkimmiatis et al. (2013): rotation invariant, with a closed-form dual projection.
    """
    xp = get_xp(x)
    return float(xp.sqrt((_hess(x, xp) ** 2).sum(axis=0)).sum())


def _dual_prox(v, lam, n_iter, nonneg, prior, p0=None):
    """FGP (Beck & Teboulle 2009) for ``argmin 0.5||x - v||^2 + lam ||Op x||_{2,1} (+ x >= 0)``.

    Accelerated projected gradient on the dual variable ``p`` (per-pixel unit balls); the primal is
    ``x = P_C(v - lam Op^T p)``. Returns ``(x, p)`` so that callers can warm-start ``p``.
    """
    xp = get_xp(v)
    op, op_t, lip = _PRIOR_OPS[prior]
    proj_c = (lambda a: xp.maximum(a, 0)) if nonneg else (lambda a: a)
    if lam <= 0:
        return proj_c(v), p0
    p = xp.zeros((3 if prior == "hessian" else 2, *v.shape), dtype=v.dtype) if p0 is None else p0
    r, t, step = p, 1.0, 1.0 / (lip * lam)
    for _ in range(n_iter):
        q = r + step * op(proj_c(v - lam * op_t(r, xp)), xp)
        p_new = q / xp.maximum(xp.sqrt((q**2).sum(axis=0)), 1.0)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        r = p_new + ((t - 1) / t_new) * (p_new - p)
        p, t = p_new, t_new
    return proj_c(v - lam * op_t(p, xp)), p


def prox_tv(v, lam, *, n_iter: int = 20, nonneg: bool = False, xp=None):
    """Proximal operator of isotropic TV: ``argmin_x 0.5||x - v||^2 + lam TV(x)`` (and ``x >= 0``).

    Parameters
    ----------
    v : array (H, W)
    lam : float
        Penalty weight (``>= 0``; 0 returns ``v``, projected onto ``x >= 0`` if ``nonneg``).
    n_iter : int
        FGP iterations on the dual (Beck & Teboulle 2009); 20 is plenty inside FISTA.
    nonneg : bool
        Constrain ``x >= 0`` inside the dual iterations (the exact prox of TV + indicator).
    xp : module, optional
        Array module; default that of ``v``.
    """
    if xp is not None and get_xp(v) is not xp:
        v = xp.asarray(v)
    return _dual_prox(v, check_number("lam", lam, lo=0.0), check_int("n_iter", n_iter, 0), nonneg, "tv")[0]


def prox_hessian(v, lam, *, n_iter: int = 20, nonneg: bool = False):
    """Proximal operator of the Hessian-Frobenius penalty (:func:`hessian_norm`), optionally with ``x >= 0``.

    Dual accelerated projected gradient as for :func:`prox_tv`, with the operator
    ``x -> (xx, yy, sqrt2 xy)`` (Lipschitz bound 64) whose per-pixel Euclidean norm is the Frobenius
    norm of the Hessian; the dual projection is onto per-pixel Euclidean unit balls.
    """
    return _dual_prox(v, check_number("lam", lam, lo=0.0), check_int("n_iter", n_iter, 0), nonneg, "hessian")[0]


def _penalty(x, prior: str) -> float:
    return {"none": lambda _: 0.0, "tv": tv, "hessian": hessian_norm}[prior](x)


# -- gain and offset ---------------------------------------------------------------------------
def fit_gain_offset(ax, y, *, positive: bool = True, weights=None):
    """Per-frame least squares ``y_k ~ a_k ax_k + b_k`` (frames on axis 0), weighted by ``weights``.

    Parameters
    ----------
    ax, y : arrays (K, ...)
        Model frames ``A x`` and data frames.
    weights : array of ``y``'s shape, optional
        Per-pixel weights ``w >= 0`` of the squared residuals (weighted least squares: every mean,
        variance and covariance below is ``w``-weighted per frame); None: equal weights.
    positive : bool
        A gain ``<= 0`` (e.g. from a random or flat start, whose model frames are uncorrelated with
        the data) is replaced by the moment-matched gain ``std(y_k) / std(ax_k)`` with its matching
        offset ``mean(y_k) - a_k mean(ax_k)``: a negative gain would lock in an inverted image,
        because the next solver steps fit ``x`` to ``(y - b) / a``.

    Returns
    -------
    gain, offset : numpy.ndarray (K,), float64
        A frame with constant ``ax_k`` gets gain 1 (the gain is not identifiable).
    """
    xp = get_xp(y)
    K = y.shape[0]
    a2 = xp.asarray(ax, dtype=xp.float64).reshape(K, -1)
    y2 = xp.asarray(y, dtype=xp.float64).reshape(K, -1)
    if weights is None:
        def mean(v):
            return v.mean(axis=1)
    else:
        w2 = xp.asarray(weights, dtype=xp.float64).reshape(K, -1)
        wsum = w2.sum(axis=1)

        def mean(v):
            return (w2 * v).sum(axis=1) / wsum
    ma, my = mean(a2), mean(y2)
    da, dy = a2 - ma[:, None], y2 - my[:, None]
    var_a, var_y, cov = to_numpy(mean(da**2)), to_numpy(mean(dy**2)), to_numpy(mean(da * dy))
    ma, my = to_numpy(ma), to_numpy(my)
    flat = var_a <= 1e-30 * np.maximum(ma**2, 1e-300)
    gain = np.where(flat, 1.0, cov / np.where(flat, 1.0, var_a))
    if positive:
        moment = np.sqrt(var_y / np.where(flat, 1.0, var_a))
        gain = np.where(~flat & (gain <= 0), np.where(moment > 0, moment, 1.0), gain)
    return gain, my - gain * ma


_fit_gain_offset = fit_gain_offset  # fista's keyword of the same name shadows it


def _norm_of(op, x_like) -> float:
    """``||A||_2`` from ``op.norm_estimate()``, else :func:`cusim.operators.power_norm` on ``x_like``'s grid."""
    return float(op.norm_estimate()) if hasattr(op, "norm_estimate") else power_norm(op, x_like)


def _frames(y):
    xp = get_xp(y)
    if y.ndim != 3 or 0 in y.shape:
        raise ValueError(f"y: expected a non-empty array of frames (K, h, w), got shape {tuple(y.shape)}")
    y = xp.asarray(y, dtype=xp.result_type(y.dtype, xp.float32))
    if not bool(xp.isfinite(y).all()):
        raise ValueError("y: contains NaN or Inf")
    return xp, y


def _per_frame(name, value, default, K):
    v = np.full(K, default, dtype=np.float64) if value is None else np.asarray(value, dtype=np.float64)
    v = np.broadcast_to(v, (K,)).copy() if v.ndim == 0 or v.shape == (1,) else v
    if v.shape != (K,) or not np.isfinite(v).all():
        raise ValueError(f"{name}: expected a finite scalar or {K} values, got {value!r}")
    return v


def _check_common(n_iter, tol) -> tuple[int, float]:
    return check_int("n_iter", n_iter, 0), check_number("tol", tol, lo=0.0)


def _rel_change(xp, dx, x) -> float:
    return float(xp.linalg.norm(dx)) / max(float(xp.linalg.norm(x)), 1e-30)


def _weights(weights, y, xp):
    """FISTA's per-pixel weights as an array of ``y``'s shape and dtype on its device, and their maximum
    (the Lipschitz factor); ``(None, 1.0)`` without weights."""
    if weights is None:
        return None, 1.0
    w = xp.asarray(weights, dtype=y.dtype)
    if w.shape != y.shape:
        raise ValueError(f"weights: expected the frames' shape {tuple(y.shape)}, got {tuple(w.shape)}")
    every_frame = bool((w.reshape(len(w), -1).max(axis=1) > 0).all())
    if not bool(xp.isfinite(w).all()) or not bool((w >= 0).all()) or not every_frame:
        raise ValueError("weights: expected finite values >= 0, not all 0 in any frame (the inverse variance of "
                         "every pixel, 0 for a pixel left out)")
    return w, float(w.max())


# -- FISTA -------------------------------------------------------------------------------------
def _default_x0(op, y, a, b, nonneg, xp, w=None):
    """Back-projection ``A^T(a (y - b))`` (clipped at 0 if ``nonneg``), scaled by least squares; with
    weights ``w`` both weighted (a pixel of weight 0 plays no part)."""
    r = y - b
    wr = r if w is None else w * r
    u = op.adjoint(a * wr)
    if nonneg:
        u = xp.maximum(u, 0)
    au = a * op.forward(u)
    den = float(xp.vdot(au.ravel(), (au if w is None else w * au).ravel()))
    c = float(xp.vdot(au.ravel(), wr.ravel())) / den if den > 0 else 0.0
    if c > 0:
        return c * u
    mean = float(r.mean()) if w is None else float(wr.sum()) / float(w.sum())
    level = max(mean, 0.0) if nonneg else mean
    ones = xp.ones_like(u)
    return ones * (level / max(float(op.forward(ones).mean()), 1e-30))


def _ended(callback, i: int, x, loss: float, rel: float, tol: float) -> str | None:
    """Why an iteration loop ends after iteration ``i``: ``"callback"`` (it returned true), ``"tol"``
    (relative change below ``tol``), or None to go on. Shared by FISTA and Richardson-Lucy."""
    if callback is not None and callback(i, x, loss):
        return "callback"
    return "tol" if rel < tol else None


def fista(op, y, *, x0=None, n_iter: int = 100, prior: str = "none", prior_weight: float = 0.0,
          nonneg: bool = True, fit_gain_offset: bool = False, refit_every: int = 10, step: float | None = None,
          tol: float = 1e-5, inner_iter: int = 20, restart: bool = True, callback=None,
          gain=None, offset=None, weights=None) -> OptimResult:
    """Accelerated proximal gradient (FISTA) for ``0.5 sum_k ||a_k (A x)_k + b_k - y_k||^2 + prior_weight R(x)``,
    or with ``weights`` the weighted sum ``0.5 sum w (a_k (A x)_k + b_k - y_k)^2 + prior_weight R(x)``.

    Parameters
    ----------
    op : operator
        ``forward`` (H, W) -> (K, h, w), ``adjoint`` the reverse; ``norm_estimate()`` if available.
    y : array (K, h, w)
        Frames (NumPy or CuPy; integer data are converted to float32).
    x0 : array (H, W), optional
        Start. Default: the back-projection ``A^T(a (y - b))``, clipped at 0 when ``nonneg``, times
        the least-squares scale that matches ``A x0`` to ``y - b`` (a constant mean level if that fails).
    n_iter : int
        Maximum number of iterations (one forward and one adjoint each).
    prior : "none" | "tv" | "hessian"
        ``R``: none, isotropic total variation (:func:`tv`), or the Frobenius norm of the Hessian
        (:func:`hessian_norm`). ``None`` is refused: no prior is the string ``"none"``.
    prior_weight : float
        The ABSOLUTE weight ``lambda >= 0`` of ``R`` in the objective ``||A x - y||^2 / 2 +
        prior_weight R(x)`` (in the units of the data term; :class:`cusim.recon.iterative.IterativeConfig`
        scales its relative weight to this).
    nonneg : bool
        Constrain ``x >= 0``; with a prior the constraint is part of its prox (FGP with a box).
    fit_gain_offset : bool
        Refit ``a_k, b_k`` by :func:`fit_gain_offset` from the current ``A x`` after every
        ``refit_every`` iterations (not at the start, where ``A x0`` is too blurred a model). The
        gains are normalised to mean 1 and ``x`` carries the common scale; each refit changes the
        objective, so the momentum restarts and ``L`` is recomputed. Offsets not given start at each
        frame's 1st percentile: since ``A_k 1`` is nearly constant, an offset too low is absorbed by a
        pedestal in ``x`` that the data barely resist, while one too high is corrected through
        ``x >= 0``; a start below the truth therefore converges slowly, one at or above it fast.
    refit_every : int
        Iterations between refits.
    step : float, optional
        Step size; default ``1 / L``, ``L = 1.01 max(a)^2 ||A||^2`` (1 % covers the power
        iteration's underestimate of ``||A||``).
    tol : float
        Stop when ``||x_{k+1} - x_k|| / ||x_k|| < tol``.
    inner_iter : int
        FGP iterations per prox (the dual variable is warm-started from the previous iteration).
    restart : bool
        Adaptive restart (O'Donoghue & Candes): reset the momentum when the step opposes the
        gradient-mapping direction, ``<z_k - x_{k+1}, x_{k+1} - x_k> > 0``, or the objective rises.
    callback : callable, optional
        ``callback(i, x, loss)`` after each iteration; returning True stops.
    gain, offset : float or array (K,), optional
        Known (or initial, with ``fit_gain_offset``) per-frame gains and offsets; default 1 and 0.
    weights : array (K, h, w), optional
        Per-pixel weights ``w >= 0`` of the data term (e.g. the inverse noise variance of each pixel:
        weighted least squares; 0 leaves a pixel out, e.g. held out for validation), on the data's
        device; every frame needs a pixel of weight > 0. The gradient is ``A^T(a w r)``, the default
        step ``1 / L`` takes ``L = 1.01 max(a)^2 max(w) ||A||^2``, the default start, the offsets' start
        and the gain and offset refit are weighted (the pixels of weight 0 play no part), and ``loss`` is
        the weighted objective. None (default): every weight 1, the arithmetic of the unweighted problem
        exactly.

    Returns
    -------
    OptimResult
        ``loss[i]`` is the objective (data term + ``prior_weight R``) at the iterate after iteration ``i``,
        computed exactly from ``A x`` (``A`` is linear, so the extrapolated point's ``A z`` is a
        combination of the last two and costs no extra forward).
    """
    xp, y = _frames(y)
    n_iter, tol = _check_common(n_iter, tol)
    prior = check_choice("prior", prior, PRIORS)
    lam = check_number("prior_weight", prior_weight, lo=0.0)
    refit_every, inner_iter = check_int("refit_every", refit_every, 1), check_int("inner_iter", inner_iter, 1)
    step = None if step is None else check_positive("step", step)
    K = y.shape[0]
    w, w_max = _weights(weights, y, xp)
    if fit_gain_offset and offset is None:  # start below every frame: x >= 0 cannot undo a high offset
        if w is None:
            offset = to_numpy(xp.percentile(y.reshape(K, -1), 1.0, axis=1))
        else:  # of the pixels the fit sees
            offset = np.array([float(xp.percentile(y[k][w[k] > 0], 1.0)) for k in range(K)])
    gain, offset = _per_frame("gain", gain, 1.0, K), _per_frame("offset", offset, 0.0, K)
    use_prior = prior != "none" and lam > 0
    def col(v):
        return xp.asarray(v, dtype=y.dtype)[:, None, None]

    a, b = col(gain), col(offset)
    x = _default_x0(op, y, a, b, nonneg, xp, w) if x0 is None else xp.array(x0, dtype=y.dtype)
    ax = op.forward(x)
    op_norm2 = _norm_of(op, x) ** 2 if step is None else None

    def refit(x, ax):
        g, o = _fit_gain_offset(ax, y, weights=w)
        c = float(g.mean())
        return g / c, o, x * c, ax * c

    L = 1.0 / step if step is not None else 1.01 * float(np.abs(gain).max()) ** 2 * op_norm2 * w_max
    z, az, t, dual = x, ax, 1.0, None
    prev = math.inf
    losses, stop = [], "max_iter"
    for i in range(n_iter):
        rz = a * az + b - y
        v = z - op.adjoint(a * (rz if w is None else w * rz)) / L
        if use_prior:
            x_new, dual = _dual_prox(v, lam / L, inner_iter, nonneg, prior, dual)
        else:
            x_new = xp.maximum(v, 0) if nonneg else v
        ax_new = op.forward(x_new)
        r = a * ax_new + b - y
        loss = 0.5 * float(xp.vdot(r.ravel(), (r if w is None else w * r).ravel())) + \
            (lam * _penalty(x_new, prior) if use_prior else 0.0)
        dx = x_new - x
        if restart and (float(xp.vdot((z - x_new).ravel(), dx.ravel())) > 0 or loss > prev):
            t_new, beta = 1.0, 0.0
        else:
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            beta = (t - 1) / t_new
        rel = _rel_change(xp, dx, x)
        z, az = x_new + beta * dx, ax_new + beta * (ax_new - ax)
        x, ax, t, prev = x_new, ax_new, t_new, loss
        losses.append(loss)
        ended = _ended(callback, i, x, loss, rel, tol)
        if ended:
            stop = ended
            break
        if fit_gain_offset and (i + 1) % refit_every == 0 and i + 1 < n_iter:
            gain, offset, x, ax = refit(x, ax)
            a, b = col(gain), col(offset)
            if step is None:
                L = 1.01 * float(np.abs(gain).max()) ** 2 * op_norm2 * w_max
            z, az, t, prev = x, ax, 1.0, math.inf
    return OptimResult(x, gain, offset, np.asarray(losses, dtype=np.float64), len(losses), stop)


# -- Richardson-Lucy ---------------------------------------------------------------------------
def _i_divergence(xp, y, mu) -> float:
    """Csiszar I-divergence ``sum y log(y / mu) - y + mu``: the negative Poisson log-likelihood up to a constant."""
    pos = y > 0
    term = xp.where(pos, y * xp.log(xp.where(pos, y, 1) / mu), 0) - y + mu
    return float(term.sum())


def richardson_lucy(op, y, *, x0=None, n_iter: int = 50, background=0.0, tol: float = 1e-5,
                    eps: float = 1e-12, callback=None) -> OptimResult:
    """Multi-frame Richardson-Lucy: the EM update ``x <- x A^T(y / (A x + b)) / A^T 1`` for Poisson data.

    Parameters
    ----------
    op : operator
        Non-negative linear operator (``forward``, ``adjoint``), e.g. :class:`cusim.SIMOperator`.
    y : array (K, h, w)
        Frames in photon-like units with the camera offset subtracted. Values ``< 0`` (read noise
        around a subtracted offset) are clipped to 0: the Poisson model has no negative counts, and
        a zero keeps the update well defined and ``x`` non-negative.
    x0 : array (H, W), optional
        Strictly positive start (zeros stay zero under the multiplicative update); values are
        clipped to ``>= eps``. Default: the constant whose model frames match the mean of ``y - b``.
    n_iter : int
        Maximum number of iterations (one forward and one adjoint each).
    background : float or array (K,)
        Known additive background ``b_k >= 0`` in the model ``A x + b``.
    tol : float
        Stop when ``||x_{k+1} - x_k|| / ||x_k|| < tol``.
    eps : float
        Floor of the model ``A x + b`` and of ``A^T 1`` in the divisions.
    callback : callable, optional
        ``callback(i, x, loss)`` after each iteration; returning True stops.

    Returns
    -------
    OptimResult
        ``gain`` 1, ``offset`` the background; ``loss[i]`` is the I-divergence (negative Poisson
        log-likelihood up to a constant, non-increasing for EM) after iteration ``i``.
    """
    xp, y = _frames(y)
    n_iter, tol = _check_common(n_iter, tol)
    eps = check_positive("eps", eps)
    K = y.shape[0]
    bg = _per_frame("background", background, 0.0, K)
    if (bg < 0).any():
        raise ValueError(f"background: expected values >= 0, got {background!r}")
    b = xp.asarray(bg, dtype=y.dtype)[:, None, None]
    y = xp.maximum(y, 0)
    ones = xp.ones_like(y)
    norm = xp.maximum(op.adjoint(ones), eps)
    if x0 is None:
        level = max(float((y - b).mean()), eps) / max(float(op.forward(xp.ones_like(norm)).mean()), eps)
        x = xp.full(norm.shape, level, dtype=y.dtype)
    else:
        x = xp.maximum(xp.asarray(x0, dtype=y.dtype), eps)
    ax = op.forward(x)
    losses, stop = [], "max_iter"
    for i in range(n_iter):
        x_new = x * op.adjoint(y / xp.maximum(ax + b, eps)) / norm
        ax = op.forward(x_new)
        loss = _i_divergence(xp, y, xp.maximum(ax + b, eps))
        rel = _rel_change(xp, x_new - x, x)
        x = x_new
        losses.append(loss)
        ended = _ended(callback, i, x, loss, rel, tol)
        if ended:
            stop = ended
            break
    return OptimResult(x, np.ones(K), bg, np.asarray(losses, dtype=np.float64), len(losses), stop)
