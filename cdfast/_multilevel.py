"""The multilevel optimiser behind :func:`cdfast.optimal_schedule` (``method="multilevel"``).

The full problem has one variable per step, and every evaluation of a loss model costs one
O(T) pass, so a solver on the raw LRs (hundreds of iterations) takes minutes at
T = 10^5 - 10^6.  The optimum is smooth except near its two ends, so it is sought in a
low-dimensional family that contains every smooth non-increasing schedule to within a
few knots' resolution, and every constraint of a plan is a simple bound on its variables:

    lr[a + k] = floor + (peak - floor) exp(-R(k)),   k = 0 .. m,

with ``R(0) = 0`` and ``R`` piecewise linear between knots ``0 = k_0 < k_1 < ... = m``
(dense near both ends, geometric in between), ``R(k_j) = r_1 + ... + r_j``:

* non-increasing after the anchor ``a`` and above the floor: ``r_j >= 0``;
* smooth: ``exp(-R)`` is replaced by the smallest sequence above it that falls at most
  ``max_step`` per step (a running maximum, :meth:`SmoothProblem.project`), so a one-step
  change is at most ``max_step * (peak - floor)``: an absolute limit, which lets the last
  LRs fall to a small fraction of the peak (a per-step factor would not);
* the peak in a trust region: ``log peak`` is a variable between ``log lo`` and ``log hi``
  (or fixed).

The anchor ``a`` is the last warmup step ``W`` (``lr[W] = peak``; the ramp
``lr[t] = peak t / W`` before it rises to the same variable, so the ramp and the decay's
first steps are no longer one number the optimiser trades: the decay leaves the peak at
most ``max_step`` per step), or, from a checkpoint, the last logged step (the planned
part starts from the LR the run has now).

Levels: L-BFGS-B on 16, 32, ... knots, each started from the previous level's solution
interpolated in ``R``; for long horizons the coarse levels run on a shorter horizon (the
same schedule in fractions of training, warmup scaled alike), where one evaluation is
cheap, and only the last levels run at the full horizon.  It stops when a level gains
less than ``tol`` (relative).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import time
from typing import Any, Callable, Iterator

import numpy as np
from numpy.typing import NDArray
from scipy import optimize as sopt

FloatArray = NDArray[np.float64]
Objective = Callable[[FloatArray], "tuple[float, FloatArray]"]

R_MAX = 60.0  # exp(-60) ~ 1e-26: below it the decay is held (an LR of exactly 0 makes eq. (2.4) infinite)
COARSE_T = 1 << 13  # horizon of the coarse levels when T is longer (one evaluation costs O(T))
KNOT_LEVELS = (16, 32, 64, 128, 256)
LONG_T = 1 << 17  # horizons above it get at most LONG_EVALS iterations per level
LONG_EVALS = 40
MID_EVALS = 150  # iterations per level at the horizons between COARSE_T and T
FULL_M = 4096  # up to this many planned steps the last level has a knot at every step
COARSE_FTOL = 1e-9  # relative reduction at which a level below the finest stops


def knots(m: int, K: int) -> NDArray[np.int64]:
    """About K knots on 0..m: every step of the last K/4, geometric from both ends in between."""
    if K >= m:
        return np.arange(m + 1, dtype=np.int64)
    tail = max(K // 4, 1)
    rest = max((K - tail) // 2, 2)
    half = max(m / 2.0, 1.0)
    head = np.geomspace(1.0, half, rest)
    back = m - np.geomspace(tail, max(half, tail), rest)
    k = np.concatenate([[0], head, back, m - np.arange(tail), [m]])
    return np.unique(np.clip(np.round(k), 0, m).astype(np.int64))


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """OpenBLAS on one thread while L-BFGS-B runs.

    Its updates are small matrix products; OpenBLAS splits them over threads, which on a
    machine whose cores are busy with other work made every iteration ~5 ms instead of
    ~0.1 ms (measured on two shared cores).  threadpoolctl when installed, else the
    OpenBLAS libraries this process has loaded (Linux), else nothing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
        return
    saved = []
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower() and ".so" in line}
    except OSError:
        paths = set()
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", "_64", ""):
                get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                    saved.append((put, int(get())))
                    put(1)
                    break
            else:
                continue
            break
    try:
        yield
    finally:
        for put, n in saved:
            put(n)


class SmoothProblem:
    """lr(x) and the objective's gradient in x for one horizon and knot set (module docstring)."""

    def __init__(self, T: int, objective: Objective, *, prefix: FloatArray | None, warmup: int, floor: float,
                 peak: float | None, peak_range: tuple[float, float], max_step: float | None, k: NDArray[np.int64]):
        self.T, self.objective, self.floor = T, objective, floor
        self.prefix = prefix
        if prefix is not None:  # from a checkpoint: anchored at the last logged LR, planned from the next step
            self.a, self.k0, self.W = prefix.shape[0] - 1, 1, 0
            self.peak = float(prefix[-1])
        else:
            self.a, self.k0, self.W = warmup, 0, warmup
            self.peak = peak
        self.m = T - 1 - self.a
        self.free = self.peak is None
        self.ulo, self.uhi = math.log(peak_range[0]), math.log(peak_range[1])
        self.k = k
        steps = np.arange(self.m + 1)  # the anchor (k = 0) too: the smoothness projection starts there
        i = np.minimum(np.searchsorted(k, steps, side="right") - 1, k.shape[0] - 2)
        self.i, self.lam = i, (steps - k[i]) / (k[i + 1] - k[i])
        self.i1, self.oml = i + 1, 1.0 - self.lam
        # one-step changes of exp(-R) at most ``step`` (a fraction of peak - floor, so at most max_step * peak)
        self.step = None if max_step is None or max_step >= 1.0 else float(max_step)
        self.ramp = np.arange(self.W, dtype=np.float64) / self.W if self.W else None
        self.evaluations = 0
        self.scale = 1.0

    # -- variables <-> LRs ------------------------------------------------------

    def split(self, x: FloatArray) -> tuple[float, FloatArray]:
        """(peak, r) from the variables (log peak if free, then the slopes)."""
        if self.free:
            return math.exp(x[0]), x[1:]
        return self.peak, x

    def R_of(self, r: FloatArray) -> FloatArray:
        Rk = np.concatenate([[0.0], np.cumsum(r)])
        R = Rk[self.i]
        R *= self.oml
        R += Rk[self.i1] * self.lam
        return R

    def project(self, e: FloatArray) -> tuple[FloatArray, NDArray[np.int64] | None]:
        """The smallest sequence above ``e`` that falls at most ``step`` per step, and where each value comes from.

        ``P[t] = max_{u <= t} (e[u] - step (t - u))`` (a running maximum): non-increasing when
        ``e`` is, never below it, and exactly ``e`` wherever ``e`` falls slowly enough.
        """
        if self.step is None or e.shape[0] < 2 or float(np.min(np.diff(e))) >= -self.step:
            return e, None  # nothing falls too fast: the identity
        t = np.arange(e.shape[0], dtype=np.float64)
        z = e + self.step * t
        run = np.maximum.accumulate(z)
        src = np.maximum.accumulate(np.where(z >= run, np.arange(e.shape[0]), 0))
        # from the source index, without the cancellation of run - step t
        return e[src] - self.step * (t - src), src

    def _decay(self, x: FloatArray):
        peak, r = self.split(x)
        R = self.R_of(r)
        e = np.exp(-np.minimum(R, R_MAX))
        P, src = self.project(e)
        lr = np.empty(self.T)
        if self.prefix is not None:
            lr[: self.a + 1] = self.prefix
        elif self.W:
            lr[: self.W] = peak * self.ramp
        lr[self.a + self.k0:] = self.floor + (peak - self.floor) * P[self.k0:]
        return peak, R, e, P, src, lr

    def lr(self, x: FloatArray) -> FloatArray:
        return self._decay(x)[-1]

    def fun(self, x: FloatArray) -> tuple[float, FloatArray]:
        peak, R, e, P, src, lr = self._decay(x)
        self.evaluations += 1
        f, g = self.objective(lr)
        if not math.isfinite(f):
            return math.inf, np.zeros_like(x)
        gP = np.zeros(self.m + 1)
        gP[self.k0:] = np.asarray(g, dtype=np.float64)[self.a + self.k0:]
        gpeak = float(np.dot(gP, P))
        ge = gP if src is None else np.bincount(src, gP, self.m + 1)
        gR = ge * e
        gR *= self.floor - peak
        gR[R >= R_MAX] = 0.0
        n = self.k.shape[0]
        gk = np.bincount(self.i, gR * self.oml, n)
        gk += np.bincount(self.i1, gR * self.lam, n)
        gr = np.cumsum(gk[::-1])[::-1][1:]
        if self.free:
            if self.W:
                gpeak += float(np.dot(np.asarray(g)[: self.W], self.ramp))
            grad = np.concatenate([[gpeak * peak], gr])
        else:
            grad = gr
        return f / self.scale, grad / self.scale

    def bounds(self) -> sopt.Bounds:
        lo = np.zeros(self.k.shape[0] - 1)
        hi = np.full(lo.shape[0], np.inf)
        if self.free:
            lo, hi = np.concatenate([[self.ulo], lo]), np.concatenate([[self.uhi], hi])
        return sopt.Bounds(lo, hi)

    def x_from_lr(self, lr: FloatArray) -> FloatArray:
        """Variables of the LR sequence ``lr`` (feasible: projected onto the bounds)."""
        peak = min(max(float(lr[self.a]), math.exp(self.ulo)), math.exp(self.uhi)) if self.free else self.peak
        d = np.asarray(lr[self.a:], dtype=np.float64)[self.k]
        with np.errstate(divide="ignore", invalid="ignore"):
            R = -np.log(np.clip((d - self.floor) / (peak - self.floor), 1e-300, 1.0))
        R = np.minimum(R, R_MAX)
        R[0] = 0.0
        r = np.maximum(np.diff(R), 0.0)
        return np.concatenate([[math.log(peak)], r]) if self.free else r

    def R_knots(self, x: FloatArray) -> FloatArray:
        return np.concatenate([[0.0], np.cumsum(self.split(x)[1])])

    def x_from(self, frac: FloatArray, R: FloatArray, peak: float,
               before: tuple[int, FloatArray, FloatArray, float] | None = None, horizon: int = 0) -> FloatArray:
        """Variables from another level's solution: ``R`` at knot fractions ``frac`` of the decay.

        With ``before = (T0, frac0, R0, peak0)``, the solution at a shorter horizon T0 than
        this one's (``horizon``), ``R`` and the log peak are extrapolated linearly in log T.
        """
        Rn = np.interp(self.k / self.m, frac, R)
        u = math.log(peak)
        if before is not None:
            T0, frac0, R0, peak0 = before
            w = math.log(self.T / horizon) / math.log(horizon / T0)
            Rn = Rn + w * (Rn - np.interp(self.k / self.m, frac0, R0))
            u = u + w * (u - math.log(peak0))
        r = np.maximum(np.diff(Rn), 0.0)
        if self.free:
            return np.concatenate([[min(max(u, self.ulo), self.uhi)], r])
        return r


def solve(T: int, objective_at: Callable[[int], Objective], *, prefix: FloatArray | None, warmup: int,
          floor: float, peak: float | None, peak_range: tuple[float, float], max_step: float | None,
          start: Callable[[int, int], FloatArray], tol: float, level_tol: float, maxiter: int,
          coarsen: bool = True, progress: Any = None) -> tuple[FloatArray, list[dict]]:
    """Minimise over the levels; returns the best LRs at horizon T and one record per level.

    ``objective_at(T')`` is the objective at horizon T' (``T' = T`` for the last levels);
    ``start(T', W')`` a feasible starting schedule at that horizon.  Levels stop when the
    full horizon's objective gains less than ``level_tol`` (relative) from one to the next.
    """
    plan: list[tuple[int, int]] = []  # (horizon, knots) of every level
    if coarsen and prefix is None and T > LONG_T:
        Tc = COARSE_T
        plan += [(Tc, K) for K in KNOT_LEVELS]
        while Tc * 8 <= T:  # horizons 4x apart, the last at least T/8
            Tc *= 4
            plan.append((Tc, KNOT_LEVELS[-1]))
        plan.append((T, KNOT_LEVELS[-1]))
    else:
        plan += [(T, K) for K in KNOT_LEVELS]
        m = T - 1 - (prefix.shape[0] - 1 if prefix is not None else warmup)
        K = 2 * KNOT_LEVELS[-1]
        while m <= FULL_M and K < 2 * m:  # short: on to every step, where the family is every monotone schedule
            plan.append((T, K))
            K *= 2
    records: list[dict] = []
    prev = None  # (fractions, R, peak, horizon, knots) of the last level
    before = None  # (horizon, fractions, R, peak) of the last level at the horizon before prev's
    best_f, lr = math.inf, None
    for level, (Th, K) in enumerate(plan):
        Wh = warmup if Th == T else (max(1, round(warmup * Th / T)) if warmup else 0)
        if Th < T and Wh >= Th // 2:
            continue
        a = (prefix.shape[0] - 1) if prefix is not None else Wh
        m = Th - 1 - a
        k = knots(m, K)
        if prev is not None and Th == prev[3] and k.shape[0] == prev[4]:
            continue  # the knots did not grow (short horizon): nothing new to solve
        full = Th == T
        step = None if max_step is None else min(1.0, max_step * T / Th)
        prob = SmoothProblem(Th, objective_at(Th), prefix=prefix, warmup=Wh, floor=floor, peak=peak,
                             peak_range=peak_range, max_step=step, k=k)
        if prev is None:
            x0 = prob.x_from_lr(start(Th, Wh))
        elif Th == prev[3]:
            x0 = prob.x_from(prev[0], prev[1], prev[2])
        else:  # a longer horizon: extrapolate the last two horizons' solutions in log T
            x0 = prob.x_from(prev[0], prev[1], prev[2], before, prev[3])
        f0 = prob.fun(x0)[0]
        prob.scale = abs(f0) if math.isfinite(f0) and f0 != 0.0 else 1.0
        t0 = time.perf_counter()
        # an evaluation at a long horizon costs O(T): the levels there only polish
        if Th <= COARSE_T or Th == T <= LONG_T:
            budget = maxiter
        elif Th < T:  # a stepping stone: converged well enough to extrapolate from
            budget = min(maxiter, MID_EVALS)
        else:
            budget = min(maxiter, LONG_EVALS)
        with one_blas_thread():
            res = sopt.minimize(prob.fun, x0, jac=True, method="L-BFGS-B", bounds=prob.bounds(),
                                options=dict(maxiter=budget, maxfun=budget + budget // 4,
                                             ftol=tol if full and K >= KNOT_LEVELS[-1] else max(tol, COARSE_FTOL),
                                             gtol=1e-12,
                                             maxcor=20))
        x = res.x
        f = float(res.fun) * prob.scale
        g = np.asarray(res.jac, dtype=np.float64)
        b = prob.bounds()
        free = ((x > b.lb) | (g < 0)) & ((x < b.ub) | (g > 0))
        records.append(dict(name=f"T={Th} knots={k.shape[0]}", variables=x.shape[0], iterations=int(res.nit),
                            evaluations=prob.evaluations, objective=f,
                            grad_norm=float(np.max(np.abs(np.where(free, g, 0.0)))) if g.size else 0.0,
                            converged=bool(res.success), message=str(res.message),
                            seconds=time.perf_counter() - t0, horizon=Th))
        if progress is not None:
            progress.advance()
        if prev is not None and prev[3] != Th:
            before = (prev[3], prev[0], prev[1], prev[2])
        prev = (k / m, prob.R_knots(x), prob.split(x)[0], Th, k.shape[0])
        if full:
            gain = (best_f - f) / abs(f) if math.isfinite(best_f) else math.inf
            if f <= best_f:
                best_f, lr = f, prob.lr(x)
            if gain < level_tol:
                break
    return lr, records
