"""Peer implementations of the SIM forward/adjoint model that cusim is benchmarked against.

- :mod:`.numpy_direct`: what a method developer writes first, full-plane ``numpy.fft`` per frame.
- :mod:`.torch_fft`: a ``torch.fft`` forward model whose adjoint comes from autograd (CPU or CUDA).

Both model the periodic case (``pad=0``) of DESIGN section 1 and carry a ``check_against(op)``
self-check that asserts agreement with :class:`cusim.SIMOperator` before anything is timed.
"""
