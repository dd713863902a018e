"""Make docs/napari-widget.png: cusim's dock widget in a napari viewer after a reconstruction, on headless Qt.

    python docs/napari_screenshot.py [OUT.png]

Simulates a small filament field (`cusim simulate`, 128 x 128 fine grid), opens it with the plugin's
reader, docks the plugin's widget (through its npe2 manifest, as napari's Plugins menu does), runs a
100-step PINN from the widget and grabs the window. Qt runs on its offscreen platform; napari's canvas
needs an OpenGL context, which it gets from an X server: this starts Xvfb when no DISPLAY is set.
About a minute on 2 busy CPU cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = 100


def _x_server():
    """An Xvfb for this process when there is no display (None: one is there already)."""
    if os.environ.get("DISPLAY"):
        return None
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as fh:
        os.environ["DISPLAY"] = ":" + fh.readline().strip()
    return proc


def main(out: Path) -> Path:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    xvfb = _x_server()
    try:
        import napari
        from qtpy.QtWidgets import QApplication

        from cusim.cli import app

        work = Path(tempfile.mkdtemp())
        data = work / "filaments.h5"
        for args in (["simulate", "-o", str(data), "--size", "128", "--upsample", "2", "--snr", "20"],
                     ["run", str(data), "--method", "widefield"]):
            app(args, standalone_mode=False)
        viewer = napari.Viewer(show=False)
        viewer.window.resize(1100, 620)
        layers = viewer.open(str(data), plugin="cusim")
        viewer.layers.selection.active = layers[-1]
        _, widget = viewer.window.add_plugin_dock_widget("cusim", "SIM reconstruction")
        widget.method.value = "pinn"
        widget.steps.value = STEPS
        widget.recon_name.value = "pinn"
        widget.start()
        t0 = time.monotonic()
        while widget.running:
            QApplication.processEvents()
            time.sleep(0.02)
            if os.environ.get("CUSIM_DEBUG") and int(time.monotonic() - t0) % 5 == 0:
                print(widget.job.step, widget.status.value, flush=True)
        for layer in viewer.layers:
            layer.visible = layer.name.endswith((" widefield", " pinn"))
        viewer.grid.enabled = True
        viewer.reset_view()
        QApplication.processEvents()
        viewer.screenshot(str(out), canvas_only=False, flash=False)
        print(f"{out}: {widget.status.value}")
        viewer.close()
        return out
    finally:
        if xvfb is not None:
            xvfb.terminate()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("napari-widget.png"))
