"""Seeded test objects on the fine grid (fluorophore density, float32 (H, W), >= 0, max 1).

Four cell-biology-like structures, each deterministic for its ``seed``:

- :func:`filaments`: microtubule-like, smooth random curves crossing the field;
- :func:`ccp`: clathrin-coated pits, projected thin hollow spheres (rings, centre dimmer than rim);
- :func:`er`: endoplasmic-reticulum-like network, tubules meeting at three-way junctions, a few sheets;
- :func:`actin`: stress-fibre-like bundles, long and nearly straight, roughly parallel or crossing,
  of varied brightness, some as close pairs (a test of resolution beyond widefield).

And two resolution targets with a known truth (:func:`line_pair_layout` gives their geometry):

- :func:`line_pairs`: pairs of parallel lines at a series of exact spacings, each at several
  orientations (the resolution benchmark, ``benchmarks/resolution.py``);
- :func:`beads`: sparse sub-resolution beads at seeded positions, at least ``min_gap_px`` apart.

:data:`PHANTOMS` maps names to functions; :func:`make` builds one by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, spatial

from ._validate import check_int, check_number, check_positive, check_shape

__all__ = ["filaments", "ccp", "er", "actin", "LinePair", "line_pair_layout", "line_pairs", "beads", "PHANTOMS",
           "make"]

_STEP = 0.5  # sampling of drawn curves along their length, in pixels


# -- shared helpers ----------------------------------------------------------------------------
def _check_positive(**values) -> None:
    for name, v in values.items():
        check_positive(name, v)


def _check_range(name: str, pair, lo_min: float = 0.0) -> tuple[float, float]:
    lo, hi = (float(v) for v in pair)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo_min < lo <= hi):
        raise ValueError(f"{name}: expected (lo, hi) with {lo_min} < lo <= hi, got {tuple(pair)!r}")
    return lo, hi


def _splat(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, weight) -> None:
    """Add points with bilinear weights (points outside the image are dropped).

    ``weight`` is a scalar or one value per point."""
    H, W = img.shape
    weight = np.broadcast_to(weight, np.shape(rows))
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):
        r, c = r0 + dr, c0 + dc
        ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        np.add.at(img, (r[ok], c[ok]), weight[ok] * wgt[ok])


def _path(start, heading: np.ndarray, step: float = _STEP):
    """A curve through ``start`` walked both ways along per-step ``heading`` (radians, 0 = +column).

    Returns rows, cols and the heading at each point."""
    back, fwd = -np.cumsum(np.sin(heading[::-1])), np.cumsum(np.sin(heading))
    rows = start[0] + np.concatenate([back, fwd]) * step
    back, fwd = -np.cumsum(np.cos(heading[::-1])), np.cumsum(np.cos(heading))
    cols = start[1] + np.concatenate([back, fwd]) * step
    return rows, cols, np.concatenate([heading[::-1], heading])


def _paste(img: np.ndarray, patch: np.ndarray, r0: int, c0: int, combine=np.add) -> None:
    """Combine ``patch`` into ``img`` with its element [0, 0] at (r0, c0), clipped to the image."""
    H, W = img.shape
    rs = slice(max(r0, 0), min(r0 + patch.shape[0], H))
    cs = slice(max(c0, 0), min(c0 + patch.shape[1], W))
    if rs.start < rs.stop and cs.start < cs.stop:
        img[rs, cs] = combine(img[rs, cs], patch[rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0])


def _finish(img: np.ndarray, width_px: float) -> np.ndarray:
    """Blur drawn lines to a Gaussian profile of FWHM ``width_px`` and normalise to max 1 (float32)."""
    img = ndimage.gaussian_filter(img, width_px / 2.355, mode="constant")
    peak = img.max()
    return (img / peak if peak > 0 else img).astype(np.float32)


# -- microtubules ------------------------------------------------------------------------------
def filaments(shape: tuple[int, int], n: int = 20, *, width_px: float = 1.0, stiffness: float = 0.05,
              seed: int = 0) -> np.ndarray:
    """Microtubule-like filaments: ``n`` smooth random curves crossing the field, ~``width_px`` wide.

    Each curve starts at a random point with a random heading and turns by a random walk of angular
    step ``stiffness`` radians per pixel. Returned as float32 normalised to max 1.
    """
    n = check_int("n", n, 1)
    check_positive("width_px", width_px)
    H, W = check_shape(shape)
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W), dtype=np.float64)
    n_steps = int(2 * np.hypot(H, W) / _STEP)
    for _ in range(n):
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, stiffness * np.sqrt(_STEP), n_steps))
        start = rng.uniform(0, 1, 2) * (H, W)
        rows, cols, _ = _path(start, heading)  # walked both ways so the filament crosses the field
        _splat(img, rows, cols, rng.uniform(0.5, 1.0) * _STEP)
    return _finish(img, width_px)


# -- clathrin-coated pits ----------------------------------------------------------------------
def _shell(R: float, t: float, centre, half: int, sub: int = 4) -> np.ndarray:
    """Projected thin hollow sphere (outer radius R, shell t) on a (2 half + 1)^2 patch, supersampled.

    The density is the chord length through the shell; ``centre`` is the sub-pixel offset."""
    c = (np.arange((2 * half + 1) * sub) + 0.5) / sub - half - 0.5
    rho2 = (c[:, None] - centre[0]) ** 2 + (c[None, :] - centre[1]) ** 2
    chord = np.sqrt(np.maximum(R**2 - rho2, 0)) - np.sqrt(np.maximum((R - t) ** 2 - rho2, 0))
    n = 2 * half + 1
    return chord.reshape(n, sub, n, sub).mean(axis=(1, 3))


def ccp(shape: tuple[int, int], n: int | None = None, *, radius_px: tuple[float, float] = (3.0, 6.0),
        thickness_px: float = 1.0, seed: int = 0) -> np.ndarray:
    """Clathrin-coated pits: ``n`` non-overlapping projected hollow spheres of radius in ``radius_px``.

    Each is the projection of a thin shell (``thickness_px``), so it images as a ring whose centre is
    dimmer than its rim; brightness varies from pit to pit (0.3..1). ``n`` defaults to one per
    ~1500 pixels. Pits that do not fit without overlap after many tries are left out.
    """
    H, W = check_shape(shape)
    n = max(1, round(H * W / 1500)) if n is None else check_int("n", n, 1)
    lo, hi = _check_range("radius_px", radius_px, 0.5)
    _check_positive(thickness_px=thickness_px)
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W), dtype=np.float64)
    placed: list[tuple[float, float, float]] = []
    for _ in range(50 * n):
        if len(placed) == n:
            break
        R = rng.uniform(lo, hi)
        y, x = rng.uniform(0, H), rng.uniform(0, W)
        if any(np.hypot(y - py, x - px) < R + pr + 1.5 for py, px, pr in placed):
            continue
        placed.append((y, x, R))
        half = int(np.ceil(R)) + 1
        iy, ix = int(np.floor(y)), int(np.floor(x))
        patch = _shell(R, min(thickness_px, R), (y - iy - 0.5, x - ix - 0.5), half)
        patch *= rng.uniform(0.3, 1.0) / patch.max()
        _paste(img, patch, iy - half, ix - half)
    return _finish(img, 0.5)


# -- endoplasmic reticulum ---------------------------------------------------------------------
def _er_graph(shape: tuple[int, int], mesh_px: float, prune: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 2) and edges (E, 2) of a Voronoi network over the field (and a margin around it).

    Voronoi vertices of points in general position join exactly three edges: the three-way junctions
    of the ER. A fraction ``prune`` of the edges is removed (dead ends and larger polygons)."""
    H, W = shape
    m = 2 * mesh_px
    gy, gx = np.meshgrid(np.arange(-m, H + m, mesh_px), np.arange(-m, W + m, mesh_px), indexing="ij")
    pts = np.stack([gy.ravel(), gx.ravel()], 1) + rng.uniform(-0.45, 0.45, (gy.size, 2)) * mesh_px
    vor = spatial.Voronoi(pts)
    edges = np.array([e for e in vor.ridge_vertices if min(e) >= 0], dtype=int).reshape(-1, 2)
    v = vor.vertices
    near = (v[:, 0] > -mesh_px) & (v[:, 0] < H + mesh_px) & (v[:, 1] > -mesh_px) & (v[:, 1] < W + mesh_px)
    edges = edges[near[edges].any(axis=1)]
    edges = edges[rng.uniform(size=len(edges)) >= prune]
    return v, edges


def _sheet(radius: float, rng) -> np.ndarray:
    """A flat ER sheet centred on a (2 half + 1)^2 patch, half = ceil(1.5 radius) + 3: an irregular
    filled blob with soft edges and a few small holes (fenestrations)."""
    half = int(np.ceil(1.5 * radius)) + 3
    dy, dx = np.ogrid[-half : half + 1, -half : half + 1]
    theta, rho = np.arctan2(dy, dx), np.hypot(dy, dx)
    edge = radius * (1 + sum(rng.uniform(0, 0.15) * np.cos(j * theta + rng.uniform(0, 2 * np.pi))
                             for j in (2, 3, 5)))
    blob = np.clip(edge - rho + 0.5, 0, 1)
    for _ in range(rng.integers(0, 4)):
        a, r = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.6) * radius
        hole = np.hypot(dy - r * np.sin(a), dx - r * np.cos(a))
        blob *= np.clip(hole - rng.uniform(0.8, 1.5), 0, 1)
    return blob


def er(shape: tuple[int, int], *, mesh_px: float = 20.0, width_px: float = 1.5, n_sheets: int | None = None,
       prune: float = 0.15, bend: float = 0.15, seed: int = 0) -> np.ndarray:
    """ER-like network: tubules along Voronoi edges (polygons ~``mesh_px`` across, three-way junctions),
    each bent smoothly (a quadratic curve whose control point is offset by ~``bend`` x its length),
    of brightness 0.6..1, plus ``n_sheets`` small flat sheets at junctions (default one per ~25000 px).
    """
    H, W = check_shape(shape)
    _check_positive(mesh_px=mesh_px, width_px=width_px)
    if not 0 <= prune < 1:
        raise ValueError(f"prune: expected a fraction in [0, 1), got {prune!r}")
    if not (np.isfinite(bend) and bend >= 0):
        raise ValueError(f"bend: expected a non-negative number, got {bend!r}")
    n_sheets = round(H * W / 25000) if n_sheets is None else check_int("n_sheets", n_sheets, 0)
    rng = np.random.default_rng(seed)
    v, edges = _er_graph((H, W), mesh_px, prune, rng)
    p0, p1 = v[edges[:, 0]], v[edges[:, 1]]
    length = np.linalg.norm(p1 - p0, axis=1)
    normal = np.stack([p1[:, 1] - p0[:, 1], p0[:, 0] - p1[:, 0]], 1) / np.maximum(length, 1e-9)[:, None]
    ctrl = (p0 + p1) / 2 + normal * (rng.normal(0, bend, len(edges)) * length)[:, None]
    bright = rng.uniform(0.6, 1.0, len(edges))
    rows, cols, wts = [], [], []
    for i in range(len(edges)):
        t = np.linspace(0, 1, max(2, int(np.ceil(length[i] / _STEP)) + 1))[:, None]
        pts = (1 - t) ** 2 * p0[i] + 2 * t * (1 - t) * ctrl[i] + t**2 * p1[i]
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        rows.append(pts[1:, 0])
        cols.append(pts[1:, 1])
        wts.append(bright[i] * seg)  # weight by arc length: uniform line density however bent
    img = np.zeros((H, W))
    if rows:
        _splat(img, np.concatenate(rows), np.concatenate(cols), np.concatenate(wts))
    img = _finish(img, width_px).astype(np.float64)
    inside = np.flatnonzero((v[:, 0] >= 0) & (v[:, 0] < H) & (v[:, 1] >= 0) & (v[:, 1] < W))
    for j in rng.choice(inside, size=min(n_sheets, inside.size), replace=False):
        sheet = _sheet(rng.uniform(0.3, 0.6) * mesh_px, rng)
        sheet = rng.uniform(0.5, 0.8) * ndimage.gaussian_filter(sheet, width_px / 2.355, mode="constant")
        half = sheet.shape[0] // 2
        iy, ix = np.round(v[j]).astype(int)
        _paste(img, sheet, iy - half, ix - half, np.maximum)
    return (img / max(img.max(), 1e-30)).astype(np.float32)


# -- actin -------------------------------------------------------------------------------------
def actin(shape: tuple[int, int], n: int | None = None, *, angle_deg: float | None = None,
          spread_deg: float = 8.0, cross_fraction: float = 0.3, pair_fraction: float = 0.35,
          pair_gap_px: tuple[float, float] = (2.5, 4.0), width_px: float = 1.2, stiffness: float = 0.004,
          seed: int = 0) -> np.ndarray:
    """Actin stress-fibre-like bundles: ``n`` long, nearly straight lines across the field.

    Most run along a main direction (``angle_deg``, seeded if None) within ~``spread_deg``; a fraction
    ``cross_fraction`` runs along a second direction 35..90 degrees away, so bundles cross. Brightness
    varies 0.25..1; a fraction ``pair_fraction`` are pairs of parallel lines ``pair_gap_px`` apart
    (below the widefield resolution at the usual sampling). ``n`` defaults to one per ~20 px of side.
    """
    H, W = check_shape(shape)
    n = max(3, round(np.sqrt(H * W) / 20)) if n is None else check_int("n", n, 1)
    for name, f in (("cross_fraction", cross_fraction), ("pair_fraction", pair_fraction)):
        if not 0 <= f <= 1:
            raise ValueError(f"{name}: expected a fraction in [0, 1], got {f!r}")
    gap_lo, gap_hi = _check_range("pair_gap_px", pair_gap_px)
    _check_positive(width_px=width_px)
    rng = np.random.default_rng(seed)
    main = rng.uniform(0, np.pi) if angle_deg is None else np.deg2rad(angle_deg)
    cross = main + rng.choice([-1, 1]) * np.deg2rad(rng.uniform(35, 90))
    n_steps = int(np.hypot(H, W) / _STEP) + 2
    img = np.zeros((H, W))
    for _ in range(n):
        axis = cross if rng.uniform() < cross_fraction else main
        heading = axis + rng.normal(0, np.deg2rad(spread_deg)) \
            + np.cumsum(rng.normal(0, stiffness * np.sqrt(_STEP), n_steps))
        rows, cols, hd = _path(rng.uniform(0, 1, 2) * (H, W), heading)
        bright = rng.uniform(0.25, 1.0)
        _splat(img, rows, cols, bright * _STEP)
        if rng.uniform() < pair_fraction:  # a second line alongside, offset along the local normal
            gap = rng.uniform(gap_lo, gap_hi)
            _splat(img, rows + gap * np.cos(hd), cols - gap * np.sin(hd), bright * rng.uniform(0.7, 1.0) * _STEP)
    return _finish(img, width_px)


# -- resolution targets ------------------------------------------------------------------------
# Spacings (fine pixels) of the default line-pair target: about 12 % apart, from the fine-grid
# Nyquist period (2 px) to 12 px; at the simulate defaults (50 nm fine pixels, NA 1.2, 520 nm)
# the widefield limit lies near 4.5 px.
LINE_PAIR_SPACINGS_PX = (2.0, 2.25, 2.5, 2.8, 3.1, 3.5, 3.9, 4.4, 4.9, 5.5, 6.2, 7.0, 8.0, 9.0, 10.5, 12.0)


@dataclass(frozen=True)
class LinePair:
    """One pair of parallel lines: centre (row, col) in fine pixels, ``angle_deg`` the direction of the
    lines (0 = along +column, 90 = along -row: counter-clockwise on a display with row 0 at the top), ``spacing_px`` the
    distance between the two line centres, ``length_px`` their length."""

    centre: tuple[float, float]
    angle_deg: float
    spacing_px: float
    length_px: float

    @property
    def direction(self) -> np.ndarray:
        """Unit vector (row, col) along the lines."""
        a = np.deg2rad(self.angle_deg)
        return np.array([-np.sin(a), np.cos(a)])

    @property
    def normal(self) -> np.ndarray:
        """Unit vector (row, col) across the lines, from the first line to the second."""
        a = np.deg2rad(self.angle_deg)
        return np.array([np.cos(a), np.sin(a)])


def _cells(H: int, W: int, n: int) -> tuple[int, int, float]:
    """(rows, cols, side) of a near-square grid of ``n`` square cells over an H x W field."""
    cols = int(np.ceil(np.sqrt(n * W / H)))
    rows = int(np.ceil(n / cols))
    return rows, cols, min(H / rows, W / cols)


def _fits(spacing_max: float, cell: float) -> bool:
    return cell >= 2 * spacing_max + 6 and 0.7 * cell >= 8


def line_pair_layout(shape: tuple[int, int], spacings_px=None, *, n_orientations: int = 4,
                     angle_offset_deg: float = 0.0, seed: int = 0) -> list[LinePair]:
    """The pairs of :func:`line_pairs`: every spacing at ``n_orientations`` angles evenly over 180
    degrees (from ``angle_offset_deg``), one pair per cell of a near-square grid of cells over the field,
    spacing-major. The lines fill 70 % of a cell side; each centre is moved off the cell centre by a
    seeded sub-pixel amount (so spacings do not all share one sampling phase). ``spacings_px`` None:
    :data:`LINE_PAIR_SPACINGS_PX` from the finest, as many as fit the field.

    Raises ValueError when a cell is too small for the largest spacing (side < 2 x spacing + 6 px) or
    for lines at least 8 px long.
    """
    H, W = check_shape(shape)
    n_orientations = check_int("n_orientations", n_orientations, 1)
    check_number("angle_offset_deg", angle_offset_deg)
    if spacings_px is None:
        ladder = LINE_PAIR_SPACINGS_PX
        m = max((m for m in range(1, len(ladder) + 1) if _fits(ladder[m - 1], _cells(H, W, m * n_orientations)[2])),
                default=1)
        spacings_px = ladder[:m]
    spacings = np.atleast_1d(np.asarray(spacings_px, dtype=np.float64))
    if spacings.ndim != 1 or spacings.size == 0 or not np.all(np.isfinite(spacings)) or spacings.min() <= 0:
        raise ValueError(f"spacings_px: expected a non-empty list of positive numbers, got {spacings_px!r}")
    n = spacings.size * n_orientations
    rows, cols, cell = _cells(H, W, n)
    length = 0.7 * cell
    if not _fits(spacings.max(), cell):
        raise ValueError(f"shape: {H}x{W} fine pixels hold {n} cells of {cell:.1f} px for {spacings.size} spacings x "
                         f"{n_orientations} orientations; a cell needs at least max(2 x {spacings.max():g} + 6, 11.5) px "
                         "(a larger shape, fewer spacings or orientations)")
    jitter = np.random.default_rng(seed).uniform(-0.5, 0.5, (n, 2))
    top, left = (H - rows * cell) / 2, (W - cols * cell) / 2
    pairs = []
    for i in range(n):
        d, o = spacings[i // n_orientations], i % n_orientations
        r, c = divmod(i, cols)
        centre = (top + (r + 0.5) * cell + jitter[i, 0], left + (c + 0.5) * cell + jitter[i, 1])
        angle = float(angle_offset_deg + 180.0 * o / n_orientations)
        pairs.append(LinePair((float(centre[0]), float(centre[1])), angle, float(d), float(length)))
    return pairs


def _draw_pairs(shape: tuple[int, int], pairs, width_px: float) -> np.ndarray:
    """Unit line density along each line of ``pairs`` (bilinear splats every half pixel), blurred to a
    Gaussian profile of FWHM ``width_px``: splats and blur keep each line's centroid where it is drawn."""
    img = np.zeros(shape, dtype=np.float64)
    for p in pairs:
        t = (np.arange(int(np.ceil(p.length_px / _STEP)) + 1) * _STEP - p.length_px / 2)[:, None]
        for side in (-0.5, 0.5):
            pts = np.asarray(p.centre) + side * p.spacing_px * p.normal + t * p.direction
            _splat(img, pts[:, 0], pts[:, 1], _STEP)
    return ndimage.gaussian_filter(img, width_px / 2.355, mode="constant")


def line_pairs(shape: tuple[int, int], spacings_px=None, *, n_orientations: int = 4,
               width_px: float = 1.0, angle_offset_deg: float = 0.0, seed: int = 0) -> np.ndarray:
    """Resolution target: pairs of parallel lines ``spacings_px`` apart (centre to centre, exact; default
    the finest of :data:`LINE_PAIR_SPACINGS_PX` that fit), each spacing at ``n_orientations`` angles
    (:func:`line_pair_layout` gives the geometry), lines of equal
    brightness with a Gaussian profile of FWHM ``width_px``. Float32, max 1.

    With a wide ``width_px`` the target holds nothing beyond a known frequency (the Gaussian's transfer
    ``exp(-2 pi^2 sigma^2 f^2)``): the hallucination check of the resolution benchmark.
    """
    check_positive("width_px", width_px)
    pairs = line_pair_layout(shape, spacings_px, n_orientations=n_orientations, angle_offset_deg=angle_offset_deg,
                             seed=seed)
    img = _draw_pairs(check_shape(shape), pairs, width_px)
    return (img / img.max()).astype(np.float32)


def beads(shape: tuple[int, int], n: int | None = None, *, min_gap_px: float = 6.0, width_px: float = 1.0,
          seed: int = 0) -> np.ndarray:
    """Sparse beads: ``n`` points (default one per ~400 pixels) at seeded positions at least
    ``min_gap_px`` apart and 3 px from the border, Gaussian of FWHM ``width_px``, brightness 0.5..1.
    Points that do not fit after many tries are left out. Float32, max 1."""
    H, W = check_shape(shape)
    if min(H, W) < 7:  # the beads keep 3 px from the border
        raise ValueError(f"shape: beads keep 3 px from the border; expected at least 7 x 7 pixels, got {shape!r}")
    n = max(1, round(H * W / 400)) if n is None else check_int("n", n, 1)
    _check_positive(min_gap_px=min_gap_px, width_px=width_px)
    rng = np.random.default_rng(seed)
    pts: list[tuple[float, float]] = []
    for _ in range(50 * n):
        if len(pts) == n:
            break
        p = rng.uniform(3, (H - 3, W - 3))
        if all(np.hypot(p[0] - q[0], p[1] - q[1]) >= min_gap_px for q in pts):
            pts.append((float(p[0]), float(p[1])))
    img = np.zeros((H, W))
    if pts:
        a = np.asarray(pts)
        _splat(img, a[:, 0], a[:, 1], rng.uniform(0.5, 1.0, len(pts)))
    return _finish(img, width_px)


PHANTOMS = {"filaments": filaments, "ccp": ccp, "er": er, "actin": actin, "line_pairs": line_pairs, "beads": beads}


def make(name: str, shape: tuple[int, int], seed: int = 0, **params) -> np.ndarray:
    """The phantom ``name`` (one of :data:`PHANTOMS`) with its default parameters, except ``params``."""
    if name not in PHANTOMS:
        raise ValueError(f"phantom: expected one of {sorted(PHANTOMS)}, got {name!r}")
    try:
        return PHANTOMS[name](shape, seed=seed, **params)
    except TypeError as e:  # an unknown keyword: name it as a bad setting
        raise ValueError(f"phantom_params: {name}: {e}") from None
