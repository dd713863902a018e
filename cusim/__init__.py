"""cusim: GPU-fast structured illumination microscopy reconstruction.

Public, stable names (DESIGN section 3): :class:`SIMOperator`, :func:`dottest`, the modules
:mod:`cusim.patterns` and :mod:`cusim.optics`, and :mod:`cusim.torch_ops` (imports torch on use).
"""

from . import optics
from .operators import SIMOperator, dottest

__version__ = "0.1.0"

__all__ = ["SIMOperator", "dottest", "optics", "__version__"]
