"""The built-in demonstration: simulate linear SIM of filaments, reconstruct it with the PINN."""

from __future__ import annotations

from pathlib import Path

from .backend import resolve_device
from .io import add_recon, save
from .recon import reconstruct
from .recon.config import DEMO_TIME_LIMIT, FAST
from .report import image_metrics, save_figure
from .simulate import simulate


MADE_BY = "cusim demo"  # the attribute made_by of demo.h5: a later demo replaces that file (and demo.png) alone


def is_demo_output(path) -> bool:
    """Whether ``path`` is a dataset a demo wrote, which the next demo may replace: its attribute ``made_by``, or,
    written before there was one, the demo's simulation (filaments, linear SIM, SNR 20) holding the demo's
    widefield result and, unless it was interrupted, its PINN's, and no other."""
    import h5py  # noqa: PLC0415

    def text(v):
        return v.decode() if isinstance(v, bytes) else v
    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            if text(a.get("made_by")) == MADE_BY:
                return True
            recons = set(f["recon"]) if "recon" in f else set()
            return (text(a.get("sim_phantom")) == "filaments" and text(a.get("sim_family")) == "linear"
                    and a.get("sim_snr_requested") == 20 and "widefield" in recons
                    and recons <= {"widefield", "pinn", "pinn_loss"})  # (an interrupted one: widefield alone)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def native_bfloat16_cpu() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX), where the PINN's fast step
    (``cusim.recon.config.FAST``) takes about 0.6x the float32 step's time (docs/performance.md); elsewhere
    bfloat16 is emulated and slower. False without PyTorch or where it cannot tell."""
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return False
    cpu = getattr(torch, "cpu", None)
    checks = (getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    try:
        return any(check() for check in checks if check is not None)
    except RuntimeError:
        return False


def pinn_demo(out: Path, *, size: int = 160, seed: int = 0, device: str = "auto", steps: int = 400,
              fast: bool | None = None, time_limit: float | None = DEMO_TIME_LIMIT, callback=None) -> dict:
    """Simulate a ``size`` x ``size`` linear-SIM dataset (SNR 20, camera 2x coarser), reconstruct it with
    the widefield method and the PINN, store both in ``out/demo.h5`` and draw ``out/demo.png``.

    ``fast`` runs the PINN's fast step (``cusim run --fast``: the U-Net's inner levels in bfloat16);
    None: on a CPU with native bfloat16 (:func:`native_bfloat16_cpu`), where it took the 192 x 192 demo from about
    2 to 1-1.5 minutes on 2 cores, and not elsewhere (on a GPU, the default step). ``time_limit``: the PINN's
    steps end after this many seconds (:attr:`PINNConfig.time_limit <cusim.recon.config.PINNConfig.time_limit>`;
    None: they run to ``steps`` or the stop)."""
    out = Path(out)
    device = resolve_device(device)
    if fast is None:
        fast = device == "cpu" and native_bfloat16_cpu()
    out.mkdir(parents=True, exist_ok=True)
    ds = simulate(phantom="filaments", shape=(size, size), upsample=2, family="linear", snr=20.0, seed=seed,
                  device=device)
    ds.attrs["made_by"] = MADE_BY
    path = save(ds, out / "demo.h5")
    pixel_nm = ds.pixel_size_nm / ds.upsample
    results = {}  # scored by the one convention of cusim.report (as `cusim run` and `cusim info` score)
    pinn_params = {"steps": steps, "seed": seed, "time_limit": time_limit, "callback": callback,
                   **(FAST if fast else {})}
    for method, params in (("widefield", {}), ("pinn", pinn_params)):
        res = reconstruct(ds, method, device=device, **params)
        scores = image_metrics(ds, res.image)
        extra = res.recorded_extra()
        add_recon(path, method, res.to_recon(**extra, metrics=scores), force=True)
        results[method] = (res, scores)
    pinn_res = results["pinn"][0]
    figure = save_figure(out / "demo.png", ds, pinn_res.image, "pinn", pinn_res.loss)
    return {"file": path, "figure": figure, "device": pinn_res.device, "runtime_s": pinn_res.runtime_s,
            "steps": pinn_res.extra.get("steps_run"), "stop": pinn_res.extra.get("stop_reason"),
            "blend": pinn_res.params.get("blend", "none"), "fast": fast,
            "scores": {m: s for m, (_, s) in results.items()}, "pixel_nm": pixel_nm}
