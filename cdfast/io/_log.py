"""The common result of every reader: :class:`TrainingLog`, and how raw columns become it.

A reader turns a file into a :class:`RawLog`: named columns, each a sequence of
``(logged step, value)`` pairs in the order they were logged, plus the run's config and
which trainer wrote it.  :func:`assemble` then applies that trainer's indexing
convention (:data:`CONVENTIONS`), drops the loss at step 0, keeps the last value of a
step logged twice, chooses the loss column and resolves the learning rates.

Indexing (docs/math.md section 1): ``lr[i] = eta_{i+1}`` is the LR of update ``i + 1``,
``w_{t+1} = w_t - eta_{t+1} g(w_t)``; ``TrainingLog.steps`` are the ``t`` of the weights
``w_t`` each loss was measured on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validate import as_vector, check_values
from . import _lr

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


# ---------------------------------------------------------------------------
# Conventions


@dataclass(frozen=True)
class Convention:
    """Where a trainer's logged step ``s`` points, per kind of column.

    ``train_loss`` / ``eval_loss``: the loss logged at ``s`` is the loss of ``w_{s + offset}``.
    ``lr``: ``"next"`` -- the LR logged at ``s`` is ``eta_{s+1} = lr[s]`` (the next update's);
    ``"current"`` -- it is ``eta_s = lr[s-1]`` (the update that produced ``w_s``).
    ``grad``: the gradient norm logged at ``s`` is ``G_{s + offset}``, the norm of the
    gradient used by update ``s + offset`` (``grad_sq[s + offset - 1]``).
    """

    train_loss: int
    eval_loss: int
    lr: Literal["next", "current"]
    grad: int
    note: str


CONVENTIONS: dict[str, Convention] = {
    "llm-baselines": Convention(-1, 0, "next", 0,
                                "llm-baselines: the scheduler is stepped after each update and the LR read after it; "
                                "the train loss at iter t is the batch loss before update t (on w_{t-1})"),
    "hf": Convention(-1, 0, "current", 0,
                     "Hugging Face Trainer (transformers >= 4.51): learning_rate at step s is the LR of update s; "
                     "loss at s is the mean batch loss of the updates since the last log (latest on w_{s-1})"),
    "hf<4.51": Convention(-1, 0, "next", 0,
                          "Hugging Face Trainer before 4.51: learning_rate at step s is the LR of update s + 1"),
    "lightning": Convention(0, 1, "next", 1,
                            "Lightning: step = optimizer steps done before the batch; the train loss at n is on w_n, "
                            "lr-* (LearningRateMonitor) at n is the LR of update n + 1, validation at n follows "
                            "update n + 1 (w_{n+1})"),
    "generic": Convention(0, 0, "current", 0,
                          "generic: step s = updates done; the loss at s is on w_s and the LR at s is the LR of "
                          "update s"),
}

# ---------------------------------------------------------------------------
# Column names (lower case), in order of preference

#: the evaluation-loss and training-loss columns read_log (and the trainer callbacks) look for
EVAL_LOSS_NAMES = ("val_loss", "eval_loss", "eval/loss", "val/loss", "valid_loss", "validation_loss",
                   "validation/loss", "valid/loss", "val_loss_epoch", "val/loss_epoch")
TRAIN_LOSS_NAMES = ("train_loss", "train/loss", "loss", "train_loss_step", "train_loss_epoch", "training_loss",
                    "train/loss_step")
LR_NAMES = ("train_lr", "lr", "learning_rate", "train/learning_rate", "train/lr", "learning-rate", "lr/pg1")
GRAD_NAMES = ("grad_norm", "train/grad_norm", "gradient_norm", "grad_2.0_norm_total", "train/gradient_norm")
STEP_NAMES = ("train/global_step", "trainer/global_step", "global_step", "iter", "iteration", "step", "_step")
_EVAL_TOKENS = ("val", "eval", "valid")


def is_eval_name(name: str) -> bool:
    """Whether a logged metric's name marks an evaluation loss ("val", "eval" or "valid" in it)."""
    low = name.lower()
    return any(tok in low for tok in _EVAL_TOKENS)


def find_name(columns: Sequence[str], names: Sequence[str]) -> str | None:
    """The first of ``names`` present in ``columns`` (case-insensitive), as spelled in ``columns``."""
    lower = {c.lower(): c for c in reversed(list(columns))}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def lr_column(columns: Sequence[str]) -> str | None:
    found = find_name(columns, LR_NAMES)
    if found is None:
        monitored = sorted(c for c in columns if c.lower().startswith("lr-"))  # Lightning's LearningRateMonitor
        found = monitored[0] if monitored else None
    return found


def choose_loss(columns: Sequence[str], requested: str | None, where: str) -> str:
    """The loss column: ``requested`` if given, else the first validation/eval loss of
    :data:`EVAL_LOSS_NAMES`, else the first train loss of :data:`TRAIN_LOSS_NAMES`, else the
    only column whose name contains ``loss`` (validation-like names first)."""
    cols = list(columns)
    if requested is not None:
        if requested in cols:
            return requested
        hit = find_name(cols, (requested.lower(),))
        if hit is not None:
            return hit
        raise ValueError(f"{where} has no column {requested!r}; available columns: {sorted(cols)}")
    for names in (EVAL_LOSS_NAMES, TRAIN_LOSS_NAMES):
        hit = find_name(cols, names)
        if hit is not None:
            return hit
    lossy = [c for c in cols if "loss" in c.lower()]
    for group in ([c for c in lossy if is_eval_name(c)], [c for c in lossy if not is_eval_name(c)]):
        if len(group) == 1:
            return group[0]
        if len(group) > 1:
            raise ValueError(f"{where}: the loss column is ambiguous ({sorted(group)}); choose one with "
                             f"loss=NAME (available columns: {sorted(cols)})")
    raise ValueError(f"{where} has no loss column; pass loss=NAME (available columns: {sorted(cols)})")


# ---------------------------------------------------------------------------
# Series helpers


class LogWarning(UserWarning):
    """Something in a training log that the reader kept but that changes what it means
    (a diverged run: an infinite loss)."""


def last_per_step(steps: ArrayLike, values: ArrayLike) -> tuple[IntArray, FloatArray]:
    """Sort by step, keep the value logged *last* for a step logged twice (a resumed run
    re-logs the steps after its checkpoint), and drop NaN values."""
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(v)
    s, v = s[ok], v[ok]
    if s.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    if np.any(s != np.round(s)):
        i = int(np.argmax(s != np.round(s)))
        raise ValueError(f"logged step {float(s[i])!r} is not a whole number; steps count optimizer updates")
    rev_s = s[::-1]
    _, first_in_rev = np.unique(rev_s, return_index=True)  # sorted unique steps, last occurrence of each
    idx = s.size - 1 - first_in_rev
    return s[idx].astype(np.int64), v[idx]


def first_divergence(steps: ArrayLike, values: ArrayLike,
                     explicit_nan: bool | np.ndarray = False) -> tuple[tuple[int, float] | None, int, int]:
    """``((step, value) of the first infinite loss at a step >= 1, or None, number of such
    steps, number of finite losses logged after the first)``, after
    :func:`last_per_step`'s rule (the value logged last for a step wins).

    An infinite loss is a diverged (or overflowed) run.  A NaN counts too where the log
    says it was logged as NaN: ``explicit_nan`` True (TensorBoard stores only logged
    values) or a mask of the entries logged as NaN (JSON rows; elsewhere NaN is an empty
    cell or a metric not logged in that row).
    """
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    explicit = np.broadcast_to(np.asarray(explicit_nan, dtype=bool), v.shape)
    ok = np.isfinite(s) & (s >= 1)
    s, v, explicit = s[ok], v[ok], explicit[ok]
    if s.size == 0:
        return None, 0, 0
    _, first_in_rev = np.unique(s[::-1], return_index=True)
    idx = s.size - 1 - first_in_rev
    s, v, explicit = s[idx], v[idx], explicit[idx]
    bad = np.isinf(v) | (np.isnan(v) & explicit)
    if not bad.any():
        return None, 0, 0
    i = int(np.argmax(bad))
    after = int(np.count_nonzero(np.isfinite(v[i:])))
    return (int(s[i]), float(v[i])), int(np.count_nonzero(bad)), after


#: the largest step a log may hold: integers are exact in float64 below 2^53
MAX_STEP = 2.0**53


def check_steps(steps: ArrayLike, column: str, where: str) -> None:
    """Refuse a negative logged step: a log's steps count updates from 0, and a negative
    one is corruption (or a different column), not a point to drop."""
    s = np.asarray(steps, dtype=np.float64)
    neg = s < 0
    if neg.any():
        i = int(np.argmax(neg))
        raise ValueError(f"{where}: column {column!r} is logged at step {s[i]:g} (entry {i}); steps count "
                         "optimizer updates and cannot be negative: fix or drop those rows, or choose the step "
                         "column with step=NAME")
    big = np.isinf(s) | (s > MAX_STEP)
    if big.any():
        i = int(np.argmax(big))
        raise ValueError(f"{where}: column {column!r} is logged at step {s[i]:g} (entry {i}), beyond any run "
                         f"(steps must be whole numbers below {MAX_STEP:.0e}); fix or drop those rows, or choose "
                         "the step column with step=NAME")


@dataclass
class RawLog:
    """What a reader found: columns of ``(logged steps, values)`` in log order."""

    format: str
    name: str
    series: dict[str, tuple[FloatArray, FloatArray]]
    trainer: str = "generic"
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    T: int | None = None
    # (lr, lr_source, meta) from the run's own knowledge (e.g. an llm-baselines config);
    # called with the logged LR knots (lr index, value) when the log has an LR column
    lr_resolver: Callable[[IntArray, FloatArray], tuple[FloatArray, str, dict[str, Any]]] | None = None
    lr_name: str | None = None
    grad_name: str | None = None
    #: per column, a mask of the values the log holds as an explicit NaN (not a missing entry)
    explicit_nan: dict[str, np.ndarray] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# The result


def _frozen(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class TrainingLog:
    """A training run as the bound needs it, whatever wrote the log.

    Attributes
    ----------
    steps : ndarray of int64
        1-based, strictly increasing: ``steps[k] = t`` means ``loss[k]`` was measured on
        ``w_t``, the weights after ``t`` updates (so the bound of eq. (2.4) at ``tau = t``
        applies).  A loss at ``t = 0`` (before training) is dropped.
    loss : ndarray of float64
        The chosen loss column (see :attr:`loss_name`).
    lr : ndarray of float64, shape (T,), or None
        ``eta_1 .. eta_T`` (``lr[i]`` is the LR of update ``i + 1``), or None when neither
        the log nor its config gives the learning rate.
    grad_norm, grad_norm_steps : ndarray or None
        Logged gradient norms: ``grad_norm[k]`` is ``G_j = ||g(w_{j-1})||`` for update
        ``j = grad_norm_steps[k]`` (1-based).  :meth:`grad_sq` fills every step.
    name, format : str
        Run name; the detected format (``"wandb-json"``, ``"wandb-history"``, ``"wandb-csv"``,
        ``"hf-trainer-state"``, ``"tensorboard"``, ``"lightning-csv"``, ``"csv"``, ``"parquet"``).
    T : int
        The horizon: the config's number of iterations when known, else the last step.
    lr_source : str or None
        How ``lr`` was obtained: ``"config"`` (rebuilt from the run's config and checked
        against every logged LR), ``"logged"`` (every step logged), ``"logged (interpolated)"``
        (logged every few steps, filled linearly), ``"user"`` (the ``lr=`` argument), with
        details in parentheses and in ``meta["lr"]``.
    loss_name : str
        The column ``loss`` came from.
    config, meta : dict
        The run's config (empty when the format has none) and what the reader learnt:
        the trainer and its indexing convention, the LR check, branch and parent, ...
    columns : tuple of str
        Every numeric column the log has (pass one as ``loss=`` to use it instead).
    divergence : (int, float) or None
        ``(step, value)`` of the first infinite loss (NaN too in TensorBoard logs), or None:
        the run diverged there (or its loss overflowed).  ``steps``/``loss`` hold only the
        finite losses; :func:`cdfast.io.read_log` warns (:class:`LogWarning`), and fits,
        plans and forecasts from such a log say so.
    """

    steps: IntArray
    loss: FloatArray
    lr: FloatArray | None
    grad_norm: FloatArray | None
    grad_norm_steps: IntArray | None
    name: str
    format: str
    T: int
    lr_source: str | None
    loss_name: str
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    columns: tuple[str, ...] = ()
    divergence: tuple[int, float] | None = None

    def __repr__(self) -> str:
        return (f"TrainingLog(name={self.name!r}, format={self.format!r}, T={self.T}, "
                f"{self.steps.shape[0]} losses ({self.loss_name}) at steps {self._span()}, "
                f"lr_source={self.lr_source!r}, grad_norm={'yes' if self.grad_norm is not None else 'no'}"
                + (f", diverged at step {self.divergence[0]} (loss {self.divergence[1]})" if self.divergence else "")
                + ")")

    def _span(self) -> str:
        return f"{self.steps[0]}..{self.steps[-1]}" if self.steps.size else "none"

    @property
    def lr_known_steps(self) -> int:
        """How many updates' LRs the log, its config or the user gave: ``T`` for a finished
        log; for a run logged before its end (``T`` from its config, e.g. ``max_steps``) the
        last update whose LR was logged: the LRs after it are the last one held, a guess."""
        return int(self.meta.get("lr_held_after", self.T))

    @property
    def unfinished(self) -> bool:
        """True when the log ends before its horizon ``T`` and the schedule after its last
        logged LR is unknown (see :attr:`lr_known_steps`): give the rest of the schedule
        (``read_log(..., lr=...)``, or ``cdfast forecast LOG --schedule ...``) to forecast it."""
        return self.lr is not None and self.lr_known_steps < self.T

    def grad_sq(self, fill: Literal["linear", "previous"] = "linear") -> FloatArray:
        """Per-step ``G_t^2`` for ``t = 1 .. T`` from the logged gradient norms, for
        ``cdfast.bound_curve_terms(lr, grad_sq=...)`` (Schaipp et al.'s per-step form of
        eq. (2.4)).

        Parameters
        ----------
        fill : {"linear", "previous"}
            How the updates between two logged norms are filled.  ``"linear"``: the squared
            norms are interpolated linearly between logged updates; ``"previous"``: each
            logged value holds until the next logged update.  Either way, the updates before
            the first logged norm take the first value and those after the last take the last.

        Returns
        -------
        ndarray, shape (T,)
            ``grad_sq[j - 1] = G_j^2``.
        """
        if self.grad_norm is None or self.grad_norm_steps is None or self.grad_norm.size == 0:
            raise ValueError(f"run {self.name!r} logs no gradient norms (columns: {list(self.columns)}); "
                             "grad_sq needs a grad_norm column")
        if fill not in ("linear", "previous"):
            raise ValueError(f"fill = {fill!r} must be 'linear' or 'previous'")
        j = np.arange(1, self.T + 1, dtype=np.float64)
        x = self.grad_norm_steps.astype(np.float64)
        g2 = self.grad_norm**2
        if fill == "linear":
            return np.interp(j, x, g2)
        k = np.searchsorted(x, j, side="right") - 1
        return g2[np.clip(k, 0, g2.size - 1)]

    def curve(self) -> tuple[FloatArray, IntArray, FloatArray]:
        """``(lr, steps, loss)`` for :func:`cdfast.fit_loss_curve`; raises if ``lr`` is None."""
        if self.lr is None:
            raise ValueError(f"run {self.name!r}: no learning rates in the log or its config; "
                             "pass lr=ARRAY (eta_1..eta_T) or lr=COLUMN to read_log")
        return self.lr, self.steps, self.loss


# ---------------------------------------------------------------------------
# Assembly


def assemble(raw: RawLog, *, loss: str | None = None, lr: ArrayLike | str | None = None) -> TrainingLog:
    """Apply the trainer's convention to ``raw`` and build the :class:`TrainingLog`."""
    where = f"{raw.format} log {raw.name!r}"
    conv = CONVENTIONS[raw.trainer]
    columns = tuple(raw.series)
    loss_name = choose_loss(columns, loss, where)
    offset = conv.eval_loss if is_eval_name(loss_name) else conv.train_loss
    s_raw, v_raw = raw.series[loss_name]
    check_steps(s_raw, loss_name, where)
    explicit = True if raw.format == "tensorboard" else raw.explicit_nan.get(loss_name, False)
    divergence, n_bad, n_after = first_divergence(np.asarray(s_raw, dtype=np.float64) + offset, v_raw,
                                                  explicit_nan=explicit)
    steps, values = last_per_step(np.asarray(s_raw, dtype=np.float64) + offset, v_raw)
    keep = steps >= 1
    steps, values = steps[keep], values[keep]
    if steps.size == 0:
        if divergence is not None:
            raise ValueError(f"{where}: column {loss_name!r} diverged at once: its first loss after step 0 is "
                             f"{divergence[1]} (step {divergence[0]}), and no finite loss is logged")
        raise ValueError(f"{where}: column {loss_name!r} has no finite loss after step 0")

    # gradient norms: G_j for update j
    grad = grad_steps = None
    if raw.grad_name is not None and raw.grad_name in raw.series:
        gs, gv = raw.series[raw.grad_name]
        check_steps(gs, raw.grad_name, where)
        grad_steps, grad = last_per_step(np.asarray(gs, dtype=np.float64) + conv.grad, gv)
        ok = grad_steps >= 1
        grad_steps, grad = grad_steps[ok], grad[ok]
        if grad.size == 0:
            grad = grad_steps = None

    meta = dict(raw.meta)
    meta.update(trainer=raw.trainer, convention=conv.note, loss_column=loss_name, loss_offset=offset)

    # learning rates
    knots_i = knots_v = None
    lr_name = raw.lr_name
    if isinstance(lr, str):
        if lr not in raw.series:
            raise ValueError(f"{where} has no LR column {lr!r}; available columns: {sorted(columns)}")
        lr_name = lr
    if lr_name is not None and lr_name in raw.series:
        ls, lv = raw.series[lr_name]
        check_steps(ls, lr_name, where)
        inf = np.isinf(np.asarray(lv, dtype=np.float64))
        if inf.any():
            i = int(np.argmax(inf))
            raise ValueError(f"{where}: column {lr_name!r} logs an LR of {float(np.asarray(lv)[i])} at step "
                             f"{float(np.asarray(ls)[i]):g}; learning rates must be finite (a NaN or empty cell is "
                             "read as not logged)")
        li, lvals = last_per_step(ls, lv)
        knots_i = li - (1 if conv.lr == "current" else 0)
        ok = knots_i >= 0
        knots_i, knots_v = knots_i[ok], lvals[ok]
        meta["lr_column"] = lr_name
        meta["lr_logged_as"] = conv.lr

    T = raw.T
    lr_arr: FloatArray | None = None
    source: str | None = None
    if lr is not None and not isinstance(lr, str):
        lr_arr = as_vector(lr, "lr")
        check_values(lr_arr, "lr")
        source = "user"
        T = lr_arr.shape[0]
    elif raw.lr_resolver is not None and not isinstance(lr, str):
        ki = knots_i if knots_i is not None else np.zeros(0, dtype=np.int64)
        kv = knots_v if knots_v is not None else np.zeros(0)
        lr_arr, source, lr_meta = raw.lr_resolver(ki, kv)
        meta["lr"] = lr_meta
        T = lr_arr.shape[0]
    if T is None:
        ends = [int(steps[-1])]
        if knots_i is not None and knots_i.size:
            ends.append(int(knots_i[-1]) + 1)
        if grad_steps is not None:
            ends.append(int(grad_steps[-1]))
        T = max(ends)
    if T > 1 << 24:  # size before allocating the LRs: one clear line, not a MemoryError
        from .._memory import check_fits

        check_fits(T, what=f"{where}: a horizon of T = {T} steps (the last logged step or the config's)",
                   arrays=3, fix="check the log's step column (or pass loss=/step= to choose others)")
    if lr_arr is None and knots_i is not None and knots_i.size and knots_i[0] < T:
        lr_arr, exact = _lr.fill_logged(T, knots_i, knots_v, what=f"{where} column {lr_name!r}")
        source = "logged" if exact else "logged (interpolated)"
        meta["lr"] = {"knots": int(np.count_nonzero(knots_i < T)), "fill": _lr.FILL_RULE}
        last = int(knots_i[knots_i < T][-1]) + 1  # the last update whose LR was logged
        if last < T:  # the updates after it only hold that LR: the log ends before its horizon
            meta["lr_held_after"] = last
    if steps[-1] > T:
        raise ValueError(f"{where}: a loss is logged at step {steps[-1]} but the horizon is T = {T}"
                         + (" (the length of lr=)" if source == "user" else ""))
    if grad_steps is not None:
        inside = grad_steps <= T
        grad_steps, grad = grad_steps[inside], grad[inside]

    if divergence is not None:
        meta["divergence"] = {"step": divergence[0], "value": divergence[1], "non_finite_steps": n_bad,
                              "finite_after": n_after}
        warnings.warn(divergence_message(raw.name, divergence, n_bad, n_after, loss_name), LogWarning, stacklevel=3)
    return TrainingLog(
        steps=_frozen(steps), loss=_frozen(values), lr=_frozen(lr_arr), grad_norm=_frozen(grad),
        grad_norm_steps=_frozen(grad_steps), name=raw.name, format=raw.format, T=int(T), lr_source=source,
        loss_name=loss_name, config=dict(raw.config), meta=meta, columns=columns, divergence=divergence,
    )


def divergence_message(name: str, divergence: tuple[int, float], n_bad: int = 1, n_after: int = 0,
                       column: str = "loss") -> str:
    """One sentence on a diverged run, shared by the reader's warning and the fits' warnings."""
    step, value = divergence
    more = f" (and at {n_bad - 1} later logged step(s))" if n_bad > 1 else ""
    after = (f"; {n_after} finite loss(es) follow it (a transient overflow?) and are kept" if n_after
             else "; only the losses before it are kept")
    return (f"run {name!r} diverged: {column} is {value} at step {step}{more}{after}. Fits, plans and forecasts "
            "from this run describe its steps before the divergence, not a run that trains to the end")
