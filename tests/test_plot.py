"""The PNG figures: each one renders to a valid PNG, written atomically."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")

from cdfast import plot, schedules  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _figures():
    lr = 0.1 * schedules.cosine(50, warmup=5)
    steps = np.arange(1, 51)
    loss = 2 + 1 / np.sqrt(steps)
    return {
        "curve": lambda: plot.curve_figure(steps, lr, 1 + 1 / steps, title="t"),
        "fit": lambda: plot.fit_figure(steps, loss, loss + 0.01, lr, fit_mask=steps <= 25,
                                       pred_steps=steps, predicted=loss, pred_lr=lr),
        "exam": lambda: plot.exam_figure([10**3, 10**4, 10**5], [2.1, 2.05, 2.0], qualified=True),
        "peak_lr": lambda: plot.peak_lr_figure([("linear", 0.01, 0.5), ("cosine", 0.012, 0.6)]),
    }


@pytest.mark.parametrize("name", sorted(_figures()))
def test_figures_are_png(tmp_path, name):
    path = tmp_path / f"{name}.png"
    plot.save_png(_figures()[name](), path)
    assert path.read_bytes().startswith(PNG)
    assert os.listdir(tmp_path) == [f"{name}.png"]


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
    with pytest.raises(ImportError, match=r'pip install "cdfast\[plot\]"'):
        plot.curve_figure([1], [0.1], [1.0])
