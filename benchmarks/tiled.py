"""A field reconstructed as overlapping tiles, each by cusim's default PINN, stitched: a pilot for issue 19.

Why: on whole 480 x 480 samples the PINN's networks run to the 1000-step cap (NL_SIM, LPSIM) where the same
network on a 120 x 120 crop stops after a few hundred steps; steps are what issue 19's 10 s bar on a GPU
pays for. If tiles of a field, each fitted by its own network (on a GPU they would step together as the
members of one batched network), reach the image of the whole field's network in fewer steps, tiling is a
lever for both of issue 19's bars. This script measures that on a field the CPU can afford: the central
``--field`` crop of a paper sample, cut into ``--grid`` x ``--grid`` tiles that overlap by ``--overlap`` fine
pixels on each inner side, each reconstructed by ``cusim.reconstruct(tile, "pinn")`` at its defaults (its
margin takes the patterns of the whole sample past the tile), stitched with linear ramps across the
overlaps, and scored as ``benchmarks.quality`` scores (least-squares fit to the min-max normalised truth,
10 px border). Each tile's image comes in the units of its own FISTA + TV (the default blend maps it there), whose
level differs from tile to tile, so the stitch first maps every tile onto the whole field's FISTA + TV by a
least-squares scale and offset ("tiled"; "tiled_raw" without). The field reconstructed whole, at the same
defaults, is the peer (``--whole``), or a record of ``benchmarks.stop_rules`` for the same crop.

    python -m benchmarks.tiled --items NL_SIM/ccp:1 --field 240 --grid 2 --overlap 16 --threads 1

Measured on four chosen-on 240 x 240 crops (docs/quality.md, "Tiles: a pilot"): no lever; the tiles gain only where
the whole field's stop lands far below its curve's best, and save no steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import _common as C
from benchmarks.quality import BORDER, DATA, kv_params, quality, write_json_atomic

NAME = "tiled"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tiled", description=__doc__.split("\n\n")[0])
    p.add_argument("--items", nargs="+", required=True, help="SET:SAMPLE, e.g. NL_SIM/ccp:1")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--field", type=int, default=240, help="the central crop, fine pixels")
    p.add_argument("--grid", type=int, default=2, help="tiles per side")
    p.add_argument("--overlap", type=int, default=16, help="fine pixels each tile reaches into its neighbour")
    p.add_argument("--whole", action="store_true", help="also reconstruct the field whole (the peer)")
    p.add_argument("--pinn-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a PINN setting for every run, tiles and whole alike (repeatable), e.g. steps=400")
    p.add_argument("--images", type=Path, default=None,
                   help="a folder: keep each item's tile images, their boxes and the truth there (.npz)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.pinn_params = kv_params(p, "--pinn-param", args.pinn_param)
    args.parsed = []
    for item in args.items:
        name, _, sample = item.rpartition(":")
        if not name or not sample.isdigit():
            p.error(f"--items: expected SET:SAMPLE, got {item!r}")
        args.parsed.append((name, int(sample)))
    return args


def tile_boxes(size: int, grid: int, overlap: int, s: int) -> list[tuple[int, int]]:
    """(start, length) along one axis of a ``size``-pixel field cut into ``grid`` tiles, each reaching
    ``overlap`` pixels past its share into each neighbour; every bound a multiple of ``s``."""
    share = size // grid
    if share % s or overlap % s or size % grid:
        raise ValueError(f"field {size} in {grid} tiles with overlap {overlap}: expected multiples of {s}")
    return [(max(0, i * share - overlap), min(size, (i + 1) * share + overlap) - max(0, i * share - overlap))
            for i in range(grid)]


def ramp(length: int, start: int, size: int, overlap: int) -> np.ndarray:
    """Weights along one axis of a tile at ``start`` of ``length`` pixels in a ``size`` field: rising linearly
    across the ``2 * overlap`` pixels it shares with a neighbour, flat (1) at the field's own edges."""
    w = np.ones(length)
    if overlap:
        edge = (np.arange(2 * overlap) + 0.5) / (2 * overlap)
        if start > 0:
            w[:2 * overlap] = edge
        if start + length < size:
            w[-2 * overlap:] = edge[::-1]
    return w


def stitch(images: list[np.ndarray], boxes: list[tuple[int, int, int, int]], size: int, overlap: int) -> np.ndarray:
    """The tiles' images (each at its box: top, left, height, width) in one ``size`` x ``size`` field, weighted by
    :func:`ramp` across the overlaps (the weights sum to 1 at every pixel)."""
    acc, wsum = np.zeros((size, size)), np.zeros((size, size))
    for img, (top, left, h, w) in zip(images, boxes):
        weight = np.outer(ramp(h, top, size, overlap), ramp(w, left, size, overlap))
        acc[top:top + h, left:left + w] += weight * img
        wsum[top:top + h, left:left + w] += weight
    return acc / wsum


def run_item(ds, args, label: str) -> dict:
    """The field cut into tiles, each reconstructed by ``cusim.reconstruct(tile, "pinn")`` and stitched two ways:
    as they come ("raw": each tile's image is in the units of its own FISTA + TV, which the default blend maps it
    onto, and FISTA's level differs from tile to tile), and each first mapped onto the whole field's FISTA + TV
    (computed once, as ``cusim.reconstruct`` would for the blend) by a least-squares scale and offset ("aligned")."""
    import cusim  # noqa: PLC0415
    from cusim import metrics  # noqa: PLC0415
    from cusim.recon import pinn as P  # noqa: PLC0415
    from cusim.recon.iterative import solve  # noqa: PLC0415

    field = ds.crop_center(args.field)
    H0, W0 = field.attrs["crop"][:2]  # where crop_center put the field in ds
    truth = field.ground_truth.astype(np.float64)
    t0 = time.perf_counter()
    op = field.operator(margin_camera=P.auto_margin(field), device="cpu")
    fista = solve(field.frames(), op)["image"][op.field].astype(np.float64)
    fista_s = time.perf_counter() - t0
    spans = tile_boxes(args.field, args.grid, args.overlap, ds.upsample)  # the same along rows and columns
    boxes = [(top, left, h, w) for top, h in spans for left, w in spans]
    tiles, images = [], []
    for top, left, h, w in boxes:
        t0 = time.perf_counter()
        r = cusim.reconstruct(ds.crop(H0 + top, W0 + left, h, w), "pinn", device="cpu", **args.pinn_params)
        img = np.asarray(r.image, np.float64)
        images.append(img)
        tiles.append({"box": [top, left, h, w], "steps": int(r.extra.get("steps_run", 0)),
                      "stop": r.extra.get("stop_reason", ""), "runtime_s": time.perf_counter() - t0,
                      "psnr_db": metrics.psnr(img, truth[top:top + h, left:left + w], norm="lstsq",
                                              crop=min(BORDER, h // 4))})
        t = tiles[-1]
        print(f"  {label} tile {t['box']}: {t['steps']} steps, {t['runtime_s']:.0f} s, {t['psnr_db']:.2f} dB",
              flush=True)
    aligned = [P.map_onto(img, fista[top:top + h, left:left + w], BORDER)
               for img, (top, left, h, w) in zip(images, boxes)]
    if args.images is not None:
        args.images.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.images / f"{label.replace('/', '_').replace(' #', '_')}.npz", truth=truth,
                            fista=fista, boxes=np.array(boxes), overlap=args.overlap,
                            **{f"tile{i}": im for i, im in enumerate(images)})
    steps = {"steps_max": max(t["steps"] for t in tiles), "steps_sum": sum(t["steps"] for t in tiles),
             "runtime_s": sum(t["runtime_s"] for t in tiles) + fista_s}
    out = {"label": label, "field": args.field, "grid": args.grid, "overlap": args.overlap, "tiles": tiles,
           "fista": {**quality(fista, truth), "runtime_s": fista_s},
           "tiled": {**quality(stitch(aligned, boxes, args.field, args.overlap), truth), **steps},
           "tiled_raw": quality(stitch(images, boxes, args.field, args.overlap), truth)}
    if args.whole:
        t0 = time.perf_counter()
        r = cusim.reconstruct(field, "pinn", device="cpu", **args.pinn_params)
        img = np.asarray(r.image, np.float64)
        out["whole"] = {**quality(img, truth), "steps": int(r.extra.get("steps_run", 0)),
                        "runtime_s": time.perf_counter() - t0}
    return out


def line(rec: dict) -> str:
    t = rec["tiled"]
    s = (f"{rec['label']} {rec['field']} in {rec['grid']}x{rec['grid']} (overlap {rec['overlap']}): tiled, aligned "
         f"{t['psnr_db']:.2f} dB / SSIM {t['ssim']:.3f} (raw {rec['tiled_raw']['psnr_db']:.2f}), steps max "
         f"{t['steps_max']} sum {t['steps_sum']}, {t['runtime_s']:.0f} s | FISTA + TV {rec['fista']['psnr_db']:.2f}")
    if "whole" in rec:
        w = rec["whole"]
        s += f" | whole {w['psnr_db']:.2f} dB / SSIM {w['ssim']:.3f}, {w['steps']} steps, {w['runtime_s']:.0f} s"
    return s


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch  # noqa: PLC0415

    from cusim.importers import import_paper  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or C.RESULTS / f"{NAME}-cpu.json"
    payload = {"benchmark": NAME, "command": "python -m benchmarks.tiled " + " ".join(argv or sys.argv[1:]),
               "settings": {"field": args.field, "grid": args.grid, "overlap": args.overlap,
                            "pinn_params": args.pinn_params},
               "environment": C.environment("cpu", "float32"), "items": []}
    for name, sample in args.parsed:
        rec = run_item(import_paper(args.data / name, sample), args, f"{name} #{sample}")
        payload["items"].append(rec)
        write_json_atomic(out, payload)
        print(line(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
