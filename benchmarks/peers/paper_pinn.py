"""The PINN of Burns & Liu (Optics Express 31(5) 8714, 2023), reimplemented in PyTorch as a peer.

"Untrained, physics-informed neural networks for structured illumination microscopy": a U-Net is
optimised on ONE raw SIM stack so that the paper's forward model of its output reproduces the
frames. This module follows the description of the authors' TensorFlow notebooks, on purpose
without improvements (it is the peer cusim's PINN is compared with):

- network: the same U-Net as cusim (``cusim.models.UNet(K)`` with its defaults: widths
  32/64/128/256, 3 pooling levels, nearest upsampling, non-negative softplus output);
- input: the K raw frames bicubic-upsampled to the fine grid, one channel per frame, clamped at 0
  and divided by their global maximum (the notebooks' ``cv2.resize(INTER_CUBIC)`` on 8-bit frames,
  then ``/ np.amax``). Upsampling is ``torch.nn.functional.interpolate(mode="bicubic",
  align_corners=False)``, whose cubic kernel (a = -0.75, pixel-centre aligned) is OpenCV's;
- targets: the same upsampled frames (the paper compares on the FINE grid);
- forward model, frame k: ``conv2d(x * I_k, psf)`` in real space with 'same' zero padding, the PSF
  normalised to unit sum, on the fine grid, with no camera binning (the paper's model). The kernel
  is flipped so that this is a true convolution (scipy.signal.convolve2d(mode="same"));
- loss: ``1 - SSIM`` between the per-frame min-max normalised predicted frames and the per-frame
  min-max normalised targets; SSIM as ``tf.image.ssim`` (11 x 11 Gaussian window, sigma 1.5,
  K1 0.01, K2 0.03, max value 1, 'valid' window positions), averaged over frames;
- Adam, learning rate 1e-3, multiplied by 0.9 every 50 steps, 1000 steps; autograd through
  everything (the convolution included).

``conv="direct"`` (the default, and what the speed benchmarks time) evaluates both convolutions, the
PSF's and the SSIM window's, in real space as the notebooks do. ``conv="fft"`` evaluates the very same
functions through FFTs (the PSF convolution on zero-padded arrays, so nothing wraps; the 'valid' SSIM
window positions never reach the border), equal to float32 rounding, with the same gradients; on a
2-core CPU it makes a 240x240 step of the NL_SIM (43 px PSF) and LPSIM (73 px PSF) sets several times
cheaper, which is what lets the quality protocol run the peer there. The optimisation is chaotic, so
the two give slightly different images after hundreds of steps, as any change of summation order does.

API: :func:`paper_pinn` (a full run), :class:`PaperPINN` / :func:`step_fn` (one optimisation step
at a time, for speed benchmarks), :func:`forward_model` and :func:`ssim_loss` (the pieces).
Deterministic for a given seed on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LR, LR_DECAY, LR_EVERY, STEPS = 1e-3, 0.9, 50, 1000
CONVS = ("direct", "fft")  # how the PSF and SSIM-window convolutions are evaluated (the same functions)
SSIM_SIZE, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


# -- the pieces ----------------------------------------------------------------------------------------
def normalised_psf(psf) -> torch.Tensor:
    """The PSF as a float tensor with unit sum (odd square array, peak at the centre)."""
    p = torch.as_tensor(np.asarray(psf) if not torch.is_tensor(psf) else psf)
    if p.ndim != 2 or p.shape[0] % 2 == 0 or p.shape[1] % 2 == 0:
        raise ValueError(f"psf: expected an odd 2-D array, got shape {tuple(p.shape)}")
    p = p.to(torch.float64 if p.dtype == torch.float64 else torch.float32)
    return p / p.sum()


def forward_model(x: torch.Tensor, patterns: torch.Tensor, psf: torch.Tensor, conv: str = "direct") -> torch.Tensor:
    """The paper's model: ``psf (*) (x * I_k)`` for every frame, (H, W) x (K, H, W) -> (K, H, W).

    Linear convolution with 'same' zero padding on the fine grid; ``psf`` is used as given (pass
    :func:`normalised_psf`). ``conv="direct"`` is the paper's real-space ``conv2d`` (which correlates,
    so the kernel is flipped); ``conv="fft"`` evaluates the same linear convolution through FFTs of
    the zero-padded arrays (no wrap-around), equal to float32 rounding and much cheaper for the large
    PSFs of the NL_SIM (43 px) and LPSIM (73 px) sets. Autograd goes through either.
    """
    if conv == "direct":
        ph, pw = psf.shape
        kernel = torch.flip(psf, (0, 1))[None, None]
        return F.conv2d((x * patterns)[:, None], kernel, padding=(ph // 2, pw // 2))[:, 0]
    if conv == "fft":
        return _FFTConv(psf, x.shape[-2:])(x * patterns)
    raise ValueError(f"conv: expected 'direct' or 'fft', got {conv!r}")


class _FFTConv:
    """'Same'-size linear convolution with a fixed odd kernel through zero-padded real FFTs."""

    def __init__(self, psf: torch.Tensor, shape):
        (H, W), (ph, pw) = shape, psf.shape
        self.H, self.W, self.oy, self.ox = H, W, ph // 2, pw // 2
        # full linear convolution is (H + ph - 1, W + pw - 1); pad to that so nothing wraps
        self.size = (H + ph - 1, W + pw - 1)
        self.otf = torch.fft.rfft2(psf, s=self.size)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        full = torch.fft.irfft2(torch.fft.rfft2(y, s=self.size) * self.otf, s=self.size)
        return full[..., self.oy:self.oy + self.H, self.ox:self.ox + self.W]


def _gaussian_window(dtype, device) -> torch.Tensor:
    r = torch.arange(SSIM_SIZE, dtype=dtype, device=device) - (SSIM_SIZE - 1) / 2
    g = torch.exp(-(r**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def _window_means(maps: torch.Tensor, conv: str) -> torch.Tensor:
    """Gaussian-window means of (N, 1, H, W) maps at the 'valid' positions -> (N, 1, H - 10, W - 10)."""
    w = _gaussian_window(maps.dtype, maps.device)
    if conv == "direct":
        return F.conv2d(maps, w)
    # The same correlation through FFTs: a valid window never reaches the border, so the periodic
    # correlation is exact there and the rest is cropped away.
    H, W = maps.shape[-2:]
    kernel = torch.fft.rfft2(w[0, 0], s=(H, W))
    out = torch.fft.irfft2(torch.fft.rfft2(maps) * kernel.conj(), s=(H, W))
    return out[..., :H - SSIM_SIZE + 1, :W - SSIM_SIZE + 1]


def ssim_per_frame(a: torch.Tensor, b: torch.Tensor, max_val: float = 1.0, conv: str = "direct") -> torch.Tensor:
    """SSIM of each frame pair (K, H, W) x (K, H, W) -> (K,), as ``tf.image.ssim`` computes it
    (``conv``: the window by real-space ``conv2d`` or, equal to rounding, by FFTs)."""
    a, b = a[:, None], b[:, None]
    mu_a, mu_b = _window_means(a, conv), _window_means(b, conv)
    var_a = _window_means(a * a, conv) - mu_a**2
    var_b = _window_means(b * b, conv) - mu_b**2
    cov = _window_means(a * b, conv) - mu_a * mu_b
    c1, c2 = (SSIM_K1 * max_val) ** 2, (SSIM_K2 * max_val) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3))


def minmax_frames(y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Each frame of (K, H, W) mapped to [0, 1] by its own min and max."""
    lo = y.amin(dim=(1, 2), keepdim=True)
    hi = y.amax(dim=(1, 2), keepdim=True)
    return (y - lo) / (hi - lo + eps)


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, conv: str = "direct") -> torch.Tensor:
    """``1 - mean_k SSIM(minmax(pred_k), minmax(target_k))``."""
    return 1 - ssim_per_frame(minmax_frames(pred), minmax_frames(target), conv=conv).mean()


def upsampled_frames(frames: np.ndarray, upsample: int) -> torch.Tensor:
    """(K, h, w) raw frames -> (K, H, W) float32: bicubic to the fine grid, clamped at 0, / global max."""
    f = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[None]
    up = F.interpolate(f, scale_factor=upsample, mode="bicubic", align_corners=False)[0] if upsample > 1 else f[0]
    up = up.clamp_min(0)
    top = float(up.max())
    return up / (top if top > 0 else 1.0)


def _torch_device(device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _check(dataset) -> None:
    if not dataset.has_patterns():
        raise ValueError("paper_pinn: the dataset has no illumination patterns (/patterns or /pattern_params); "
                         "the paper's model needs them")
    if dataset.psf is None:
        raise ValueError("paper_pinn: the dataset has no PSF array (/psf); the paper's model convolves with a "
                         "measured/sampled PSF on the fine grid")


# -- the optimisation ----------------------------------------------------------------------------------
class PaperPINN:
    """The paper's optimisation, one step at a time: ``step() -> loss``, ``image() -> (H, W) array``."""

    def __init__(self, dataset, *, seed: int = 0, device="cpu", t: int = 0, conv: str = "direct"):
        from cusim.models import UNet  # noqa: PLC0415

        _check(dataset)
        if conv not in CONVS:
            raise ValueError(f"conv: expected one of {CONVS}, got {conv!r}")
        self.device = _torch_device(device)
        frames = dataset.frames(t)
        up = upsampled_frames(frames, dataset.upsample)
        self.input = up[None].to(self.device)  # (1, K, H, W)
        self.target = up.to(self.device)  # (K, H, W)
        self.patterns = torch.from_numpy(np.ascontiguousarray(dataset.get_patterns(), dtype=np.float32)).to(self.device)
        self.psf = normalised_psf(np.asarray(dataset.psf, dtype=np.float32)).to(self.device)
        self.conv = conv
        if self.patterns.shape != self.target.shape:
            raise ValueError(f"paper_pinn: patterns {tuple(self.patterns.shape)} do not match the upsampled "
                             f"frames {tuple(self.target.shape)}")
        torch.manual_seed(seed)
        self.net = UNet(self.input.shape[1]).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=LR)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=LR_EVERY, gamma=LR_DECAY)
        self.steps_done = 0

    def loss(self) -> torch.Tensor:
        x = self.net(self.input)[0, 0]
        return ssim_loss(forward_model(x, self.patterns, self.psf, self.conv), self.target, self.conv)

    def step(self) -> float:
        """One Adam step (forward, loss, backward, update, schedule); returns the loss before the update."""
        return float(self.step_async())

    def step_async(self) -> torch.Tensor:
        """As :meth:`step` but returns the loss tensor without a host sync (for GPU timing)."""
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.steps_done += 1
        return loss.detach()

    @torch.no_grad()
    def image(self) -> np.ndarray:
        """The network's output with the current weights, (H, W) float32."""
        return self.net(self.input)[0, 0].detach().cpu().numpy().astype(np.float32)


def step_fn(dataset, device="cpu", *, seed: int = 0, sync: bool = True):
    """A callable doing one optimisation step of the paper's PINN on ``dataset`` (returns the loss).

    ``sync=False`` returns the loss as a device tensor, so GPU timing with CUDA events is not
    disturbed by a host synchronisation. The :class:`PaperPINN` is available as ``fn.pinn``.
    """
    pinn = PaperPINN(dataset, seed=seed, device=device)
    fn = pinn.step if sync else pinn.step_async

    def one_step():
        return fn()

    one_step.pinn = pinn
    return one_step


def paper_pinn(dataset, *, steps: int = STEPS, seed: int = 0, device="cpu", callback=None, t: int = 0,
               conv: str = "direct"):
    """Run the paper's PINN on time point ``t`` of ``dataset``.

    Returns ``(image, loss_history)``: the (H, W) float32 output of the network after the last update,
    and the (steps,) loss before each update. ``callback(step, steps, loss)`` after every step.
    ``conv``: how the PSF convolution is evaluated (:func:`forward_model`); the speed benchmarks use
    the paper's ``"direct"``.
    Raises ValueError when the dataset has no patterns or no PSF array.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    pinn = PaperPINN(dataset, seed=seed, device=device, t=t, conv=conv)
    losses = np.empty(int(steps), dtype=np.float64)
    for i in range(int(steps)):
        losses[i] = pinn.step()
        if callback is not None:
            callback(i + 1, int(steps), losses[i])
    return pinn.image(), losses
