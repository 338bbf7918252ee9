"""Generalization 4 and the two-dimensional scaling law, eq. (5.1).

Runs use ``eta_peak = eta_ref / sqrt(T)``.  For each model size ``N`` and each
``eta_ref``, the final losses over horizons fall on a line in ``1/sqrt(T)``
(Corollary 2.4, Generalization 4):

    L(N, T; eta_ref) = L_inf(eta_ref; N) + Q~(eta_ref; N) / sqrt(T).

``eta_ref*`` is the grid value with the smallest ``Q~`` (over several sizes: the
smallest geometric mean of ``Q~`` across the sizes where it was run).  Then

    L(N, T) = L_inf(eta_ref*; N) + Q~(eta_ref*; N) / sqrt(T),
    eta_peak*(N, T) = eta_ref* / sqrt(T)      (= eta_peak*(N_s, T_s) sqrt(T_s / T)).

At a fitted size the law uses that size's line.  At another size (or at a size whose
``eta_ref*`` cell has fewer than two horizons, hence no line) ``L_inf`` and ``Q~``
are extrapolated as power laws in ``N`` (straight lines in log-log, least squares over
the sizes with a line at ``eta_ref*``; at least two needed).  Intervals come from a
residual bootstrap: the pooled residuals of all lines are resampled onto the fitted
values and the whole procedure (lines, choice of ``eta_ref*``, power laws) is repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scipy.optimize import least_squares

from ._validate import as_vector
from .fit import r_squared

FloatArray = NDArray[np.float64]

__all__ = ["ScalingLaw2D"]


def _cells(N: FloatArray, eta: FloatArray) -> tuple[FloatArray, FloatArray, NDArray[np.int64], NDArray[np.int64]]:
    sizes, si = np.unique(N, return_inverse=True)
    refs, ri = np.unique(eta, return_inverse=True)
    return sizes, refs, si, ri


def _lines(x: FloatArray, y: FloatArray, si, ri, ns: int, nr: int):
    """Least-squares line y = L + Q x per (size, eta_ref) cell; nan where < 2 horizons."""
    L = np.full((ns, nr), np.nan)
    Q = np.full((ns, nr), np.nan)
    for s in range(ns):
        for r in range(nr):
            m = (si == s) & (ri == r)
            if np.unique(x[m]).size >= 2:
                A = np.column_stack([np.ones(int(m.sum())), x[m]])
                (L[s, r], Q[s, r]), *_ = np.linalg.lstsq(A, y[m], rcond=None)
    return L, Q


def _choose(Q: FloatArray) -> int:
    """Column of the smallest geometric-mean Q~ over the sizes where it was fitted.

    A non-positive Q~ (no horizon dependence, or the wrong sign) never wins.
    """
    have = ~np.isnan(Q)
    if not have.any():
        raise ValueError("no (size, eta_ref) cell has two distinct horizons; run each eta_ref at >= 2 horizons")
    logq = np.where(have & (Q > 0), np.log(np.where(Q > 0, Q, 1.0)), np.inf)
    logq[~have] = 0.0
    count = have.sum(axis=0)
    score = np.where(count > 0, logq.sum(axis=0) / np.maximum(count, 1), np.inf)
    return int(np.argmin(score))


def _power(sizes: FloatArray, v: FloatArray, N: FloatArray) -> FloatArray:
    """Power law through (sizes, v) evaluated at N (exact values at fitted sizes).

    A size whose cell at the chosen eta_ref has no line (v is nan: fewer than two
    horizons there) is treated like a size that was not fitted.
    """
    out = np.empty(N.shape)
    have = np.isfinite(v)
    ok = have & (v > 0)
    coef = np.polyfit(np.log(sizes[ok]), np.log(v[ok]), 1) if ok.sum() >= 2 else None
    for i, n in enumerate(N.ravel()):
        hit = np.flatnonzero(np.isclose(sizes, n, rtol=1e-9, atol=0.0) & have)
        if hit.size:
            out.flat[i] = v[hit[0]]
        elif coef is None:
            raise ValueError(
                f"N = {n:g} has no line at eta_ref* and extrapolating in N needs lines at >= 2 model sizes "
                f"(sizes with a line at eta_ref*: {sizes[ok].tolist()}); run eta_ref* at >= 2 horizons "
                "on more sizes"
            )
        else:
            out.flat[i] = np.exp(np.polyval(coef, np.log(n)))
    return out


def _floor_power(sizes: FloatArray, v: FloatArray, N: FloatArray) -> FloatArray:
    """``E + a N^-p`` through (sizes, v) at N (exact values at fitted sizes): a power law with
    a floor, least squares on relative residuals with ``0 <= E < min(v)``; >= 3 sizes."""
    have = np.isfinite(v) & (v > 0)
    if have.sum() < 3:
        raise ValueError(f"L_inf_form='floor' needs lines at >= 3 model sizes at eta_ref*, got {int(have.sum())} "
                         "(sizes with a line: {}); use L_inf_form='power'".format(sizes[have].tolist()))
    s_, y = sizes[have], v[have]
    ref = float(np.exp(np.mean(np.log(s_))))

    def model(q: FloatArray) -> FloatArray:
        E, loga, p = q
        return E + np.exp(loga) * (s_ / ref) ** -p

    E0 = 0.5 * float(y.min())
    slope, icpt = np.polyfit(np.log(s_ / ref), np.log(y - E0), 1)
    res = least_squares(lambda q: model(q) / y - 1.0, [E0, icpt, max(-slope, 1e-3)],
                        bounds=([0.0, -np.inf, 0.0], [float(y.min()), np.inf, 5.0]), method="trf")
    E, loga, p = res.x
    out = np.empty(N.shape)
    for i, n in enumerate(N.ravel()):
        hit = np.flatnonzero(np.isclose(sizes, n, rtol=1e-9, atol=0.0) & have)
        out.flat[i] = v[hit[0]] if hit.size else E + np.exp(loga) * (n / ref) ** -p
    return out


L_INF_FORMS = ("power", "floor")


@dataclass(frozen=True)
class ScalingLaw2D:
    """The two-dimensional law of eq. (5.1); build it with :meth:`ScalingLaw2D.fit`.

    Attributes
    ----------
    eta_ref_star : float
        The chosen ``eta_ref`` (``eta_peak* = eta_ref_star / sqrt(T)``).
    sizes, eta_refs : ndarray
        The fitted model sizes and ``eta_ref`` grid.
    L_inf_table, Q_table : ndarray, shape (len(sizes), len(eta_refs))
        The line of every (size, eta_ref) cell (nan where it has < 2 horizons).
    r2 : float
        R^2 of all lines together over all runs.
    """

    eta_ref_star: float
    sizes: FloatArray = field(repr=False)
    eta_refs: FloatArray = field(repr=False)
    L_inf_table: FloatArray = field(repr=False)
    Q_table: FloatArray = field(repr=False)
    r2: float
    boot_eta: FloatArray = field(repr=False)
    boot_L_inf: FloatArray = field(repr=False)
    boot_Q: FloatArray = field(repr=False)
    L_inf_form: str = "power"

    @property
    def _col(self) -> int:
        return int(np.flatnonzero(self.eta_refs == self.eta_ref_star)[0])

    @property
    def L_inf(self) -> FloatArray:
        """``L_inf(eta_ref*; N)`` at the fitted sizes."""
        return self.L_inf_table[:, self._col]

    @property
    def Q(self) -> FloatArray:
        """``Q~(eta_ref*; N)`` at the fitted sizes."""
        return self.Q_table[:, self._col]

    @classmethod
    def fit(cls, N: ArrayLike, T: ArrayLike, eta_ref: ArrayLike, loss: ArrayLike, *,
            n_boot: int = 500, seed: int | None = 0, L_inf_form: str = "power") -> "ScalingLaw2D":
        """Fit eq. (5.1) to final losses of runs with ``eta_peak = eta_ref / sqrt(T)``.

        Parameters
        ----------
        N, T, eta_ref, loss : array_like, one entry per run
            Model size (> 0), horizon (> 0, steps or tokens), the run's ``eta_ref``
            (> 0; runs on the same grid value must carry the identical number) and final
            loss.  Each (N, eta_ref) pair needs >= 2 distinct horizons to give a line.
        n_boot : int
            Residual-bootstrap replicates for the intervals (0 disables them).
        L_inf_form : {"power", "floor"}
            How ``L_inf(eta_ref*; N)`` is extrapolated to unfitted sizes: a power law in
            ``N`` (the paper's form), or a power law with a floor, ``E + a N^-p`` (>= 3
            sizes).  On real runs the fitted intercepts level off with ``N`` and the power
            law under-predicts larger models (docs/models.md).

        Notes
        -----
        Generalization 4 and eq. (5.1) of the paper; Corollary 2.4 for the
        ``eta_ref / sqrt(T)`` parametrisation.
        """
        if L_inf_form not in L_INF_FORMS:
            raise ValueError(f"L_inf_form = {L_inf_form!r}; choose 'power' (the paper's) or 'floor' (E + a N^-p)")
        N, T, eta, y = (as_vector(v, name) for v, name in ((N, "N"), (T, "T"), (eta_ref, "eta_ref"), (loss, "loss")))
        if not (N.size == T.size == eta.size == y.size):
            raise ValueError(f"N, T, eta_ref and loss need one entry per run, got {N.size}, {T.size}, {eta.size}, {y.size}")
        for v, name in ((N, "N"), (T, "T"), (eta, "eta_ref")):
            bad = ~np.isfinite(v) | (v <= 0)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"{name}[{i}] = {float(v[i])}; it must be finite and positive")
        if not np.all(np.isfinite(y)):
            i = int(np.argmax(~np.isfinite(y)))
            raise ValueError(f"loss[{i}] is {y[i]}; drop runs without a final loss")
        x = 1.0 / np.sqrt(T)
        sizes, refs, si, ri = _cells(N, eta)
        L, Q = _lines(x, y, si, ri, sizes.size, refs.size)
        col = _choose(Q)
        fitted = L[si, ri] + Q[si, ri] * x
        ok = np.isfinite(fitted)
        resid = (y - fitted)[ok]
        rng = np.random.default_rng(seed)
        be, bl, bq = np.empty(n_boot), np.empty((n_boot, sizes.size)), np.empty((n_boot, sizes.size))
        for b in range(n_boot):
            yb = np.where(ok, fitted, y)
            yb[ok] += rng.choice(resid, size=resid.size, replace=True)
            Lb, Qb = _lines(x, yb, si, ri, sizes.size, refs.size)
            c = _choose(Qb)
            be[b], bl[b], bq[b] = refs[c], Lb[:, c], Qb[:, c]
        return cls(eta_ref_star=float(refs[col]), sizes=sizes, eta_refs=refs, L_inf_table=L, Q_table=Q,
                   r2=r_squared(y[ok], fitted[ok]), boot_eta=be, boot_L_inf=bl, boot_Q=bq, L_inf_form=L_inf_form)

    # -- predictions -------------------------------------------------------

    def _predict(self, L: FloatArray, Q: FloatArray, N: ArrayLike, T: ArrayLike) -> FloatArray:
        Nb, Tb = np.broadcast_arrays(np.asarray(N, dtype=np.float64), np.asarray(T, dtype=np.float64))
        extrapolate = _floor_power if self.L_inf_form == "floor" else _power
        return extrapolate(self.sizes, L, Nb) + _power(self.sizes, Q, Nb) / np.sqrt(Tb)

    def _predict_or_nan(self, L: FloatArray, Q: FloatArray, N: float, T: float) -> float:
        """One bootstrap replicate's prediction; nan when its eta_ref* leaves N without a line."""
        try:
            return float(self._predict(L, Q, N, T))
        except ValueError:
            return float("nan")

    def predict_loss(self, N: ArrayLike, T: ArrayLike) -> FloatArray | float:
        """``L(N, T) = L_inf(eta_ref*; N) + Q~(eta_ref*; N) / sqrt(T)`` at the optimal LR."""
        out = self._predict(self.L_inf, self.Q, N, T)
        return float(out) if out.ndim == 0 else out

    def predict_loss_interval(self, N: float, T: float, level: float = 0.9) -> tuple[float, float]:
        """Percentile residual-bootstrap interval of :meth:`predict_loss` at one (N, T)."""
        if self.boot_eta.size == 0:
            raise ValueError("the law was fitted with n_boot=0; refit with n_boot > 0 for intervals")
        vals = np.array([self._predict_or_nan(l, q, N, T) for l, q in zip(self.boot_L_inf, self.boot_Q)])
        if np.isnan(vals).all():
            self.predict_loss(N, T)  # raises the reason (no line at eta_ref* for this size)
            raise ValueError(f"no bootstrap replicate can predict N = {N:g}; too few sizes have lines at "
                             "the replicates' eta_ref*")
        lo, hi = np.nanquantile(vals, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def optimal_peak_lr(self, N: ArrayLike, T: ArrayLike) -> FloatArray | float:
        """``eta_peak*(N, T) = eta_ref* / sqrt(T)`` (the same for every N, eq. 5.1)."""
        out = self.eta_ref_star / np.sqrt(np.broadcast_arrays(np.asarray(N, float), np.asarray(T, float))[1])
        return float(out) if np.ndim(out) == 0 else out

    def optimal_peak_lr_interval(self, N: float, T: float, level: float = 0.9) -> tuple[float, float]:
        """Bootstrap interval of the chosen ``eta_ref*`` (grid values) divided by sqrt(T)."""
        lo, hi = np.quantile(self.boot_eta, [(1 - level) / 2, (1 + level) / 2])
        return float(lo / np.sqrt(T)), float(hi / np.sqrt(T))

    def summary(self) -> str:
        rows = [f"ScalingLaw2D: eta_ref* = {self.eta_ref_star:.6g}  (R^2 of the lines = {self.r2:.4f})"]
        for n, l, q in zip(self.sizes, self.L_inf, self.Q):
            line = f"L = {l:.5g} + {q:.5g}/sqrt(T)" if np.isfinite(l) else "no line at eta_ref* (< 2 horizons)"
            rows.append(f"  N = {n:.4g}: {line}")
        return "\n".join(rows)
