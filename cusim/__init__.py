"""cusim: GPU-fast structured illumination microscopy reconstruction.

Public, stable names (DESIGN section 3): :class:`SIMOperator`, :func:`dottest`, :func:`load`,
:func:`save`, :class:`Dataset`, :func:`reconstruct`, :func:`simulate`, and the modules
:mod:`cusim.patterns`, :mod:`cusim.optics`, :mod:`cusim.metrics`, :mod:`cusim.phantoms` and
:mod:`cusim.torch_ops` (imports torch on use).
"""

__version__ = "0.1.0"

from . import metrics, optics, patterns, phantoms  # noqa: E402
from .io import Dataset, DatasetError, load, save  # noqa: E402
from .operators import SIMOperator, dottest  # noqa: E402
from .recon import Result, reconstruct  # noqa: E402
from .simulate import simulate  # noqa: E402

__all__ = ["SIMOperator", "dottest", "Dataset", "DatasetError", "load", "save", "reconstruct", "Result",
           "simulate", "optics", "patterns", "metrics", "phantoms", "__version__"]
