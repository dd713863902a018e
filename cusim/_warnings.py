"""The package's one warning category, :class:`CusimWarning`, :func:`warn`, and the one saturation note
(:func:`warn_saturated`).

A CusimWarning says something about the user's data or settings that they need to know while the work
goes on (frames in the wrong order, clipped pixels). Its message is one line that names what, where and
what to do; the command line prints each as a ``note:`` line. Free of every other cusim module, so any
layer can warn.
"""

from __future__ import annotations

import warnings

import numpy as np

# more pixels than this fraction at an integer dtype's maximum: the frames are saturated, worth a note
SATURATED_FRACTION = 0.01


class CusimWarning(UserWarning):
    """A problem with the data or settings that does not stop the work (one line; the CLI prints ``note: ...``)."""


def warn(message: str, *, stacklevel: int = 2) -> None:
    """Issue ``message`` as a :class:`CusimWarning`, attributed ``stacklevel`` frames above the caller."""
    warnings.warn(message, CusimWarning, stacklevel=stacklevel + 1)


def warn_saturated(raw, where: str, advice: str, *, stacklevel: int = 2) -> float:
    """The fraction of the pixels of integer ``raw`` at its dtype's maximum; above
    :data:`SATURATED_FRACTION` a CusimWarning "WHERE: 97 % of the pixels clipped at 65535 (uint16); ADVICE".
    Float data: 0, no warning (it has no saturation value)."""
    a = np.asarray(raw)
    if not np.issubdtype(a.dtype, np.integer) or a.size == 0:
        return 0.0
    top = np.iinfo(a.dtype).max
    frac = np.count_nonzero(a == top) / a.size
    if frac > SATURATED_FRACTION:
        warn(f"{where}: {100 * frac:.3g} % of the pixels clipped at {top} ({a.dtype}); {advice}",
             stacklevel=stacklevel + 1)
    return float(frac)
