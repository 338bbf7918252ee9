"""The documentation stands alone: the single-sum identity of docs/math.md holds exactly,
every link in docs/ points to a file in the repository, and the walkthrough runs."""

from __future__ import annotations

import os
import pathlib
import random
import re
from fractions import Fraction

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "cdfast" / "data" / "README.md"]
# pages written for this repository's readers, that must not send them outside it
OWN = [REPO / "docs" / n for n in ("math.md", "cli.md", "walkthrough.md")] + [REPO / "cdfast" / "data" / "README.md"]


def nested(eta, g2, tau, D2):
    """Eq. (2.4) with per-step G_t^2, the literal nested sums, in exact arithmetic."""
    S = lambda a, b: sum(eta[t - 1] for t in range(a, b + 1))  # noqa: E731
    W = lambda a, b: sum(eta[t - 1] ** 2 * g2[t - 1] for t in range(a, b + 1))  # noqa: E731
    total = D2 / (2 * S(1, tau)) + W(1, tau) / (2 * S(1, tau))
    for k in range(1, tau):
        total += Fraction(1, 2) * (eta[k - 1] / S(k + 1, tau)) * (W(k, tau) / S(k, tau))
    return total


def single_sum(eta, g2, tau, D2):
    """docs/math.md section 2: L_* + D^2/(2 P) + (1/2)[eta_tau G_tau^2 + sum_j w_j / (P_tau - P_j)]."""
    P = [sum(eta[:t]) for t in range(tau + 1)]
    tail = sum(eta[j - 1] ** 2 * g2[j - 1] / (P[tau] - P[j]) for j in range(1, tau))
    return D2 / (2 * P[tau]) + Fraction(1, 2) * (eta[tau - 1] * g2[tau - 1] + tail)


def test_single_sum_identity_in_rational_arithmetic():
    rng = random.Random(7)
    for _ in range(60):
        T = rng.randint(1, 9)
        eta = [Fraction(rng.randint(0, 9), rng.randint(1, 9)) for _ in range(T - 1)] + [Fraction(rng.randint(1, 9), 7)]
        g2 = [Fraction(rng.randint(1, 20), rng.randint(1, 5)) for _ in range(T)]
        if sum(eta) == 0:
            continue
        D2 = Fraction(rng.randint(0, 9), 4)
        assert nested(eta, g2, T, D2) == single_sum(eta, g2, T, D2)


LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_links_point_into_the_repository(page):
    for target, _ in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue  # web pages (papers, upstream repositories) are fine
        resolved = (page.parent / target).resolve()
        assert resolved.exists(), f"{page.name} links to {target}, which does not exist"
        assert REPO in resolved.parents or resolved == REPO, f"{page.name} links outside the repository: {target}"


@pytest.mark.parametrize("page", OWN, ids=lambda p: p.name)
def test_pages_do_not_send_readers_outside_the_repository(page):
    text = page.read_text()
    assert "../shared" not in text and "MATH.md" not in text


def test_walkthrough_runs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="the walkthrough's figure needs matplotlib")
    monkeypatch.chdir(tmp_path)
    text = (REPO / "docs" / "walkthrough.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 4
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, "docs/walkthrough.md", "exec"), namespace)
    assert os.path.getsize("walkthrough.png") > 1000
    import matplotlib.pyplot as plt

    plt.close("all")
