"""cusim: GPU-fast structured illumination microscopy reconstruction.

Public, stable names (DESIGN section 3): :class:`SIMOperator`, :func:`dottest`, :func:`load`,
:func:`save`, :class:`Dataset`, :func:`reconstruct`, :func:`simulate`, and the modules
:mod:`cusim.patterns`, :mod:`cusim.optics`, :mod:`cusim.metrics`, :mod:`cusim.phantoms` and
:mod:`cusim.torch_ops` (imports torch on use).
"""

from . import metrics, optics, patterns, phantoms
from ._version import __version__
from ._warnings import CusimWarning
from .io import Dataset, DatasetError, load, save
from .operators import SIMOperator, dottest
from .recon import Result, reconstruct
from .simulate import simulate

__all__ = ["SIMOperator", "dottest", "Dataset", "DatasetError", "load", "save", "reconstruct", "Result",
           "simulate", "CusimWarning", "optics", "patterns", "metrics", "phantoms", "__version__"]
