"""Fill Numba's on-disk cache: every public kernel called once through Numba on small inputs.

``python -m cdfast._kernels._compile`` runs :func:`compile_all` at low priority; the
background start of :mod:`cdfast._kernels._warmup` runs this module.  It calls the public
bound functions (cdfast.bounds, cdfast.curve), so that exactly the signatures they use
are compiled; it sits apart from _warmup because the backend registry imports _warmup
and the bound functions import the registry.
"""

from __future__ import annotations

import os


def compile_all() -> None:
    """Call every public kernel once through Numba on small inputs (fills the cache)."""
    import numpy as np

    from ..bounds import average_iterate_bound, bound_terms
    from ..curve import bound_curve_terms, curve_terms_moments

    lr = np.linspace(1.0, 0.1, 64)
    g = np.ones(64)
    for grad_sq in (None, g):
        bound_terms(lr, grad_sq, backend="numba")
        bound_terms(np.stack([lr, lr]), grad_sq, backend="numba")
        average_iterate_bound(lr, grad_sq=grad_sq, backend="numba")
        bound_curve_terms(lr, grad_sq, method="exact", backend="numba")
        bound_curve_terms(lr, grad_sq, method="fast", backend="numba")
        curve_terms_moments(lr, grad_sq, np.arange(1, 65), backend="numba")  # the models' search surrogates


if __name__ == "__main__":
    from ._warmup import release_lock

    if hasattr(os, "nice"):
        try:
            os.nice(10)
        except OSError:
            pass
    try:
        compile_all()
    finally:
        release_lock()  # the next `cdfast report` may start a compile again (if this one failed)
