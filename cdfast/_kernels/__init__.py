"""The kernels and the machinery around them: no public names here.

What is inside
--------------
``_numba``, ``_numba_grad``, ``_numba_curve``
    The Numba kernels of the bound (eq. 2.4 and 2.3), its gradient and the whole curve:
    plain loops, the same operations in the same order as csrc/*.c, so the two backends
    agree to the last bit.  ``_numba_peers``: the kernels of the peer loss models
    (annealing law, multi-power law).
``_cffi_build``
    The cffi build script (``setup.py``'s ``cffi_modules``): reads csrc/cdfast.h into
    ``cdef`` and compiles csrc/*.c into the extension ``cdfast._kernels._cdfast``.
``_backends``
    The backend registry, "numba" and "c", chosen by ``backend=`` or ``CDFAST_BACKEND``.
``_stacked``
    The one wrapper every public bound goes through for ``(..., T)`` inputs (validate,
    flatten the leading axes, run the row kernels, restore the shape; dask arrays too).
``_threads``
    How many threads a long pass may use now (fewer when other work keeps cores busy).
``_warmup``, ``_compile``
    No compile wait on first use: Numba only once its cache is warm, C until then;
    ``python -m cdfast._kernels._compile`` fills the cache.

What the rest of the package may call
-------------------------------------
* ``_backends.get_backend``, ``available_backends``, the status codes (``OK``,
  ``BAD_ARGUMENT``, ...) and the :class:`~cdfast._kernels._backends.Backend` calls;
* ``_stacked.stacked`` (the decorator) and ``_stacked.terms / combine / scalar``;
* ``_threads.available``;
* ``_warmup.numba_is_warm`` and ``_warmup.start_background``;
* the Numba kernels directly only where a backend-independent kernel is the point:
  ``_numba_grad._stationary_residual`` (cdfast.optimize) and ``_numba_peers`` (the peer
  models).

The kernels assume validated, contiguous float64 input: validation happens once, at
the public function (cdfast._validate).  Nothing here imports a module above it (bounds,
curve, ...) at import time; only ``_compile`` calls the public bound functions, to
compile exactly the signatures they use.
"""
