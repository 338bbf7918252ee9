"""Atomic output: whole files or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from cdfast._files import atomic_write


def test_written_file_has_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "out.csv", lambda fh: fh.write("a,b\n"))
    finally:
        os.umask(old)
    assert (tmp_path / "out.csv").read_text() == "a,b\n"
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o644


def test_failure_leaves_nothing_behind(tmp_path):
    (tmp_path / "out.csv").write_text("old\n")

    def boom(fh):
        fh.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.csv", boom)
    assert (tmp_path / "out.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
