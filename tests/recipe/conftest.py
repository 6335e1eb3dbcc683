"""Fixtures for the recipe's stage-1 tests (helpers live in stage1_helpers)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest
from stage1_helpers import RangeServer, make_chapter


@pytest.fixture
def tiny_subset(tmp_path: Path) -> Path:
    """A LibriSpeech-layout subset: readers 19 and 1034 (ids sort differently
    as text than as numbers), three chapters."""
    subset = tmp_path / "LibriSpeech" / "dev-clean"
    make_chapter(
        subset, "19", "198", {"0000": "NORTHANGER ABBEY", "0001": "IT WAS A FINE DAY"}
    )
    make_chapter(subset, "19", "227", {"0000": "SHE DIDN'T KNOW"})
    make_chapter(subset, "1034", "121119", {"0000": "HELLO WORLD"})
    return subset


@pytest.fixture
def server() -> Iterator[RangeServer]:
    """A RangeServer running in a thread for the duration of one test."""
    srv = RangeServer()
    thread = threading.Thread(
        target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)
