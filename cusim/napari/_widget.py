"""The dock widget: reconstruct the dataset behind the active layer (widefield, Wiener, iterative, PINN)
with the main options, in a worker thread, with a progress bar and a cancel button; the result is added
as a layer and written to the file (``/recon/<name>``) only when asked. A second button shows the
pattern-estimation view (:mod:`cusim.napari._spectrum`).
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, LineEdit, ProgressBar, PushButton, \
    SpinBox
from qtpy.QtCore import QTimer

from ..recon import METHODS
from ..recon.config import IterativeConfig, PINNConfig, WienerConfig
from ._jobs import STEPPED, Cancelled, Job

POLL_MS = 100  # how often the progress bar reads the worker's step


class ReconstructWidget(Container):
    """cusim's dock widget; ``napari_viewer`` is the viewer it works in."""

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.method = ComboBox(label="method", choices=METHODS, value="widefield")
        self.steps = SpinBox(label="PINN steps", value=PINNConfig.steps, min=1, max=1_000_000)
        self.iterations = SpinBox(label="iterations", value=IterativeConfig.n_iter, min=1, max=1_000_000)
        self.wiener_w = FloatSpinBox(label="Wiener w", value=WienerConfig.w, min=1e-6, max=100.0, step=0.01)
        self.estimate = CheckBox(text="estimate patterns from the frames first", value=False)
        self.device = ComboBox(label="device", choices=("auto", "cpu", "cuda"), value="auto")
        self.recon_name = LineEdit(label="name", value="")
        self.store = CheckBox(text="write the result to the file as /recon/<name>", value=False)
        self.run_button = PushButton(text="Reconstruct")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self.status = Label(value="select a layer opened from a cusim file")
        self.pattern_button = PushButton(text="Show pattern estimate (spectrum + carriers)")
        super().__init__(widgets=[self.method, self.steps, self.iterations, self.wiener_w, self.estimate, self.device,
                                  self.recon_name, self.store, self.run_button, self.cancel_button, self.progress,
                                  self.status, self.pattern_button])
        self.job: Job | None = None
        self.worker = None
        self._timer = QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.method.changed.connect(self._show_options)
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.pattern_button.changed.connect(self.show_patterns)
        self._show_options()

    # -- what the widget works on ------------------------------------------------------------------------
    def dataset_path(self) -> Path:
        """The cusim file behind the active layer (ValueError with what to do when there is none)."""
        layer = self.viewer.layers.selection.active
        meta = getattr(layer, "metadata", {}) or {}
        path = (meta.get("cusim") or {}).get("path")
        if path is None:
            raise ValueError("select a layer opened from a cusim file (File > Open, a cusim-sim .h5)")
        return Path(path)

    def params(self) -> dict:
        """The chosen method's options, as :func:`cusim.reconstruct` takes them."""
        m = self.method.value
        return {"pinn": {"steps": self.steps.value}, "iterative": {"n_iter": self.iterations.value},
                "wiener": {"w": self.wiener_w.value}}.get(m, {})

    def _show_options(self, *_):
        m = self.method.value
        self.steps.visible, self.iterations.visible, self.wiener_w.visible = m == "pinn", m == "iterative", m == "wiener"
        self.estimate.visible = m != "widefield"

    # -- running -------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, *_):
        """Start the reconstruction in a worker thread (one at a time)."""
        from napari.qt.threading import create_worker  # noqa: PLC0415

        if self.running:
            return
        try:
            self.job = Job(self.dataset_path(), self.method.value, self.params(), name=self.recon_name.value or None,
                           store=self.store.value, device=self.device.value,
                           estimate_patterns=self.estimate.value and self.method.value != "widefield")
        except ValueError as e:
            self.status.value = f"error: {e}"
            return
        self.progress.max = self.steps.value if self.job.method == "pinn" else \
            self.iterations.value if self.job.method == "iterative" else 0  # 0: busy indicator
        self.progress.value = 0
        self.status.value = f"{self.job.method} on {self.job.path.name} ..."
        # errors go to the status line (connected here, superqt would re-raise them in the event loop)
        self.worker = create_worker(self.job, _start_thread=False,
                                    _connect={"returned": self._done, "errored": self._failed, "finished": self._finished})
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self._timer.start()
        self.worker.start()

    def cancel(self, *_):
        """Ask the running job to stop after its current step."""
        if self.job is not None and self.running:
            self.job.cancel()
            self.status.value = f"cancelling {self.job.method} ..."

    def _poll(self):
        job = self.job
        if job is not None and job.method in STEPPED and job.total:
            self.progress.max = job.total
            self.progress.value = min(job.step, job.total)

    def _done(self, layer_data):
        data, kwargs, _ = layer_data
        self.viewer.add_image(data, **kwargs)
        job = self.job
        where = f"stored as {job.path.name}:/recon/{job.name}" if job.store else "not stored (tick 'write' to keep it)"
        self.status.value = f"{job.method}: done, {where}"

    def _failed(self, exc):
        if isinstance(exc, Cancelled):
            self.status.value = f"{self.job.method}: cancelled after step {exc.step}; nothing was added or written"
        else:
            self.status.value = f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"

    def _finished(self):
        self._timer.stop()
        self._poll()
        self.worker = None
        self.run_button.enabled, self.cancel_button.enabled = True, False

    # -- the pattern view ----------------------------------------------------------------------------------
    def show_patterns(self, *_):
        """Add the frames' spectrum with the estimated (and stored) carriers, in a new layer group."""
        from ..io import load  # noqa: PLC0415
        from ._spectrum import pattern_layers  # noqa: PLC0415

        try:
            layers = pattern_layers(load(self.dataset_path()))
        except ValueError as e:
            self.status.value = f"error: {e}"
            return
        for data, kwargs, kind in layers:
            getattr(self.viewer, f"add_{kind}")(data, **kwargs)
        self.status.value = "pattern estimate: spectrum in cycles per camera pixel, carriers at +k and -k"
