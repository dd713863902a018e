"""Peer implementations of the SIM forward/adjoint model that cusim is benchmarked against.

- :mod:`.numpy_direct`: what a method developer writes first, full-plane ``numpy.fft`` per frame.
- :mod:`.torch_fft`: a ``torch.fft`` forward model whose adjoint comes from autograd (CPU or CUDA).
- :mod:`.torch_fft_pinn`: peer (b) of the PINN step: cusim's U-Net step with that physics in plain
  ``torch.fft`` (pad, pattern multiply, OTF, mean binning) and autograd.
- :mod:`.paper_pinn`: peer (a): the paper's PINN method as published.

Both model the periodic case (``pad_fine=0``) of DESIGN section 1 and carry a ``check_against(op)``
self-check that asserts agreement with :class:`cusim.SIMOperator` before anything is timed.
"""
