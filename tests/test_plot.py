"""The figures: panels draw into the axes they are given and return them; the command
line's figures render to valid PNGs, written atomically; what each plot must show."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")

from cdfast import plot, schedules  # noqa: E402

plot.use_agg()
import matplotlib.pyplot as plt  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
LR = 0.1 * schedules.cosine(50, warmup=5)
STEPS = np.arange(1, 51)
LOSS = 2 + 1 / np.sqrt(STEPS)


def _scan():
    etas = np.geomspace(1e-3, 1e-1, 9)
    return {"etas": etas, "losses": 3 + (np.log(etas) + 4.6) ** 2, "eta": 0.01, "loss": 3.0, "edge": ""}


def _figures():
    return {
        "curve": lambda: plot.curve_figure(STEPS, LR, 1 + 1 / STEPS, title="t"),
        "fit": lambda: plot.fit_figure(STEPS, LOSS, LOSS + 0.01, LR, fit_mask=STEPS <= 25, burn_mask=STEPS <= 3,
                                       cutoff=25, params={"L_inf": 2.0}, r2=0.99, r2_holdout=0.9,
                                       pred_steps=STEPS, predicted=LOSS, pred_lr=LR),
        "fit_runs": lambda: plot.fit_figure(np.r_[STEPS, STEPS], np.r_[LOSS, LOSS + 0.1], np.r_[LOSS, LOSS + 0.1],
                                            [LR, 0.5 * LR], run=np.r_[np.zeros(50), np.ones(50)],
                                            run_names=["sweep_lr0.1_T50", "sweep_lr0.05_T50"], cutoff=[25, 25]),
        "prediction": lambda: plot.prediction_figure(
            STEPS, LOSS, LOSS, LR, [{"label": "wsd", "lr": LR, "steps": STEPS, "loss": LOSS - 0.1,
                                     "lo": LOSS - 0.2, "hi": LOSS}], level=0.9),
        "report": lambda: plot.report_figure(STEPS, LOSS, LOSS, LR, [{"label": "cosine", "lr": LR, "steps": STEPS,
                                                                       "loss": LOSS}],
                                             [("cosine", _scan())], [("linear", 0.01, 0.5)], peak=0.01, bound_T=50),
        "exam": lambda: plot.exam_figure([10**3, 10**4, 10**5], [2.1, 2.05, 2.0], qualified=True, limit=2.0),
        "peak_lr": lambda: plot.peak_lr_figure([("linear", 0.01, 0.5), ("cosine", 0.012, 0.6)]),
    }


@pytest.mark.parametrize("name", sorted(_figures()))
def test_figures_are_png(tmp_path, name):
    path = tmp_path / f"{name}.png"
    plot.save_png(_figures()[name](), path)
    assert path.read_bytes().startswith(PNG)
    assert os.listdir(tmp_path) == [f"{name}.png"]


PANELS = {
    "plot_schedule": lambda ax: plot.plot_schedule(LR, ax=ax),
    "plot_bound_curve": lambda ax: plot.plot_bound_curve(STEPS, 1 + 1 / STEPS, ax=ax),
    "plot_fit": lambda ax: plot.plot_fit(STEPS, LOSS, LOSS, ax=ax),
    "plot_residuals": lambda ax: plot.plot_residuals(STEPS, LOSS - 2, ax=ax),
    "plot_prediction": lambda ax: plot.plot_prediction(STEPS, LOSS, lo=LOSS - 1, hi=LOSS + 1, ax=ax),
    "plot_exam": lambda ax: plot.plot_exam([1e3, 1e4], [2.0, 2.0], ax=ax),
    "plot_peak_lr": lambda ax: plot.plot_peak_lr([("linear", 0.01, 0.5)], ax=ax),
    "plot_peak_scan": lambda ax: plot.plot_peak_scan([("cosine", _scan())], ax=ax),
}


@pytest.mark.parametrize("name", sorted(PANELS))
def test_panels_draw_into_the_given_axes_and_return_them(name):
    fig, (left, right) = plt.subplots(1, 2)
    try:
        assert PANELS[name](right) is right
        assert right.has_data() or right.collections or right.lines
        assert not left.has_data()
        assert len(fig.axes) == 2  # nothing else was created
        ax = getattr(plot, name)(*{"plot_schedule": (LR,), "plot_bound_curve": (STEPS, 1 + 1 / STEPS),
                                   "plot_fit": (STEPS, LOSS, LOSS), "plot_residuals": (STEPS, LOSS - 2),
                                   "plot_prediction": (STEPS, LOSS), "plot_exam": ([1e3, 1e4], [2.0, 2.0]),
                                   "plot_peak_lr": ([("linear", 0.01, 0.5)],),
                                   "plot_peak_scan": ([("cosine", _scan())],)}[name])
        assert ax.figure is not fig  # without ax=: a new figure
        plt.close(ax.figure)
    finally:
        plt.close(fig)


def test_fit_panel_tells_points_apart_and_marks_the_cutoff():
    fit = STEPS <= 25
    burn = STEPS <= 3
    ax = plot.plot_fit(STEPS, LOSS, LOSS + 0.01, fit_mask=fit & ~burn, burn_mask=burn, cutoff=25,
                       params={"L_inf": 2.0, "D_sq": 0.5}, r2=0.987, r2_holdout=0.812, model="bound")
    try:
        labels = ax.get_legend_handles_labels()[1]
        for label in ("fitted", "held out (predicted)", "burn-in (not fitted, not scored)", "fit cutoff", "model"):
            assert label in labels
        # three kinds of points, each with its own marker, and exactly the right counts
        counts = {line.get_marker(): len(line.get_xdata()) for line in ax.lines if len(line.get_xdata())
                  and line.get_linestyle() in ("None", "")}
        assert counts == {".": 22, "x": 25, "o": 3}
        assert any(list(line.get_xdata()) == [25, 25] for line in ax.lines)  # the cutoff
        box = "\n".join(t.get_text() for t in ax.texts)
        assert "L_inf = 2" in box and "D_sq = 0.5" in box and "0.9870" in box and "0.8120" in box
    finally:
        plt.close(ax.figure)


def test_exam_panel_has_its_limit_line():
    ax = plot.plot_exam([10**3, 10**4, 10**5], [2.3, 2.1, 2.05], qualified=True, limit=2.0)
    try:
        assert any(list(line.get_ydata()) == [2.0, 2.0] for line in ax.lines)
        assert any("limit" in label for label in ax.get_legend_handles_labels()[1])
    finally:
        plt.close(ax.figure)


def test_distinct_labels():
    names = ["cos-zero-124m_lr0.002_iter25000_bs50x2", "cos-zero-124m_lr0.002_iter50000_bs50x2"]
    assert plot.distinct_labels(names, 2) == ["iter25000", "iter50000"]
    assert plot.distinct_labels(None, 2) == ["run 0", "run 1"]
    assert plot.distinct_labels(["x" * 40, "y"], 2)[0].endswith("\u2026")


def test_save_png_failure_leaves_nothing(tmp_path, monkeypatch):
    fig = _figures()["exam"]()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", boom)
    with pytest.raises(OSError):
        plot.save_png(fig, tmp_path / "e.png")
    assert os.listdir(tmp_path) == []


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "cdfast\[plot\]"'):
        plot.curve_figure([1], [0.1], [1.0])
    with pytest.raises(ImportError, match=r'pip install "cdfast\[plot\]"'):
        plot.use_agg()
