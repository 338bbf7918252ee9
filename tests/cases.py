"""One table of inputs shared by tests/ and bench/.

SCHEDULES: named learning-rate sequences (peak 1e-3) used for correctness, agreement
and speed.  BAD_INPUTS: the edge cases every public bound must refuse, each with the
exception type and a fragment the message must contain.
"""

from __future__ import annotations

import numpy as np

from cdfast import schedules as S

PEAK = 1e-3


def _random(T, seed=0):
    return PEAK * np.random.default_rng(seed).uniform(0.05, 1.0, T)


SCHEDULES = {
    "linear": lambda T: PEAK * S.linear(T),
    "cosine": lambda T: PEAK * S.cosine(T),
    "wsd": lambda T: PEAK * S.wsd(T, decay_frac=0.2),
    "constant": lambda T: PEAK * S.constant(T),
    "warmup_cosine": lambda T: PEAK * S.cosine(T, warmup=max(1, T // 20)),
    "cyclic": lambda T: PEAK * (0.55 + 0.45 * np.cos(np.arange(T) * (2 * np.pi / max(T // 7, 2)))),
    "random": _random,
}

_nan = np.array([1.0, np.nan, 1.0])
_inf = np.array([1.0, np.inf, 1.0])
_neg = np.array([1.0, -0.5, 1.0])

# (name, lr, kwargs, exception, message fragment)
BAD_INPUTS = [
    ("nan", _nan, {}, ValueError, "lr[1] is nan"),
    ("inf", _inf, {}, ValueError, "lr[1] is inf"),
    ("negative", _neg, {}, ValueError, "lr[1] = -0.5 is negative"),
    ("empty", np.array([]), {}, ValueError, "lr is empty"),
    ("scalar", np.float64(1.0), {}, ValueError, "lr is a scalar"),
    ("strings", np.array(["a", "b"]), {}, TypeError, "real numbers"),
    ("complex", np.ones(3, dtype=complex), {}, TypeError, "real numbers"),
    ("bool", np.ones(3, dtype=bool), {}, TypeError, "real numbers"),
    ("all zero", np.zeros(4), {}, ValueError, "all zeros"),
    ("zero final", np.array([1.0, 0.5, 0.0]), {}, ValueError, "final learning rate) is 0"),
    ("grad_sq length", np.ones(3), {"grad_sq": np.ones(2)}, ValueError, "grad_sq has 2 entries but lr has 3"),
    ("grad_sq negative", np.ones(3), {"grad_sq": np.array([1.0, 1.0, -2.0])}, ValueError, "grad_sq[2] = -2.0 is negative"),
    ("grad_sq nan", np.ones(3), {"grad_sq": np.array([np.nan, 1.0, 1.0])}, ValueError, "grad_sq[0] is nan"),
    ("D negative", np.ones(3), {"D": -1.0}, ValueError, "D = -1.0 is negative"),
    ("G nan", np.ones(3), {"G": float("nan")}, ValueError, "G = nan is not finite"),
    ("D string", np.ones(3), {"D": "1"}, TypeError, "D must be a real number"),
    ("overflow", np.full(3, 1e300), {}, ValueError, "overflowed"),
    ("subnormal", np.full(3, 1e-310), {}, ValueError, "too small (subnormal)"),
]
