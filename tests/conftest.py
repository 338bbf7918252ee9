"""Shared fixtures: every test that takes ``backend`` runs once per built backend."""

from __future__ import annotations

import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # tests/naive.py and tests/cases.py are plain modules

import cdfast  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data"


@pytest.fixture(params=cdfast.available_backends())
def backend(request):
    return request.param


@pytest.fixture
def data_dir():
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA} (it lives beside the repository as shared/data)")
    return DATA
