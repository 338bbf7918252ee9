"""Precompute the long-horizon mpmath references stored in tests/data/references.json.

    python tests/make_references.py            # all cases (a few minutes)

Each reference is the last-iterate coefficients (a, b) of eq. (2.4), evaluated in
mpmath at 40 significant digits from the *float64* schedule that cdfast.schedules
produces (so only the kernels' arithmetic is under test).  The schedule's SHA-256 is
stored too; tests refuse to compare against a reference whose input has drifted.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sys
import time

import mpmath
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from naive import terms_mp  # noqa: E402

import cdfast  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "data" / "references.json"

# (name, params, T, grad_sq seed or None)
CASES = [
    (name, params, T, None)
    for T in (10**6, 10**7)
    for name, params in (("linear", {}), ("cosine", {}), ("wsd", {"decay_frac": 0.2}), ("constant", {}))
] + [("cosine", {"warmup": 1000}, 10**6, 7)]


def case_input(name, params, T, seed):
    lr = 1e-3 * cdfast.schedules.make(name, T, **params)
    g = None if seed is None else np.random.default_rng(seed).uniform(0.5, 2.0, T)
    return lr, g


def digest(lr, g):
    h = hashlib.sha256(lr.tobytes())
    if g is not None:
        h.update(g.tobytes())
    return h.hexdigest()


def main() -> None:
    rows = []
    for name, params, T, seed in CASES:
        t0 = time.time()
        lr, g = case_input(name, params, T, seed)
        a, b = terms_mp(lr, g, dps=40)
        rows.append(
            {"schedule": name, "params": params, "T": T, "peak": 1e-3, "grad_sq_seed": seed,
             "sha256": digest(lr, g), "a": mpmath.nstr(a, 40), "b": mpmath.nstr(b, 40)}
        )
        print(f"{name} {params} T={T}: a={a} b={b} ({time.time() - t0:.0f} s)", flush=True)
    OUT.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
