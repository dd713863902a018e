"""How many CPU threads cusim computes with: one number for every pool (scipy.fft's workers in the
operators, BLAS/OpenMP through threadpoolctl, torch's intra-op threads).

The default is the cores this process may use (its CPU affinity, as a container or ``taskset`` sets it),
not the machine's core count: on a shared machine more threads than cores slow every step down many
times (oversubscription). ``cusim ... --threads N`` or :func:`set_threads` changes it for the process.
"""

from __future__ import annotations

import os
import sys

from ._validate import check_int

_threads: int | None = None
_limits = None  # the threadpoolctl limiter in force (kept so its limits stay applied)


def available_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads() -> int:
    """The thread count in force: :func:`set_threads`'s, else :func:`available_cores`."""
    return _threads if _threads is not None else available_cores()


def set_threads(n: int | None) -> int:
    """Use ``n`` threads (None: the available cores) in every pool; returns the number in force."""
    global _threads, _limits
    n = available_cores() if n is None else check_int("threads", n, 1)
    _threads = n
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    _limits = threadpool_limits(limits=n)
    torch = sys.modules.get("torch")  # only if already loaded; else recon.pinn.reconstruct sets it
    if torch is not None:
        torch.set_num_threads(n)
    return n
