"""The recipe tests' import path, and fixtures of the stage-1 tests (helpers
live in stage1_helpers and pipeline_helpers).

The recipe's Python scripts import each other by bare module name; path.sh
puts TEMPLATE's ``pyscripts/utils`` on PYTHONPATH for them. The same
directories go on ``sys.path`` here for the tests that import a script, and
``pyscripts/utils`` on PYTHONPATH for those that run one.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
from pipeline_helpers import SCRIPT_DIRS, UTILS_DIR
from stage1_helpers import RangeServer, make_chapter

for _directory in reversed(SCRIPT_DIRS):
    if str(_directory) not in sys.path:
        sys.path.insert(0, str(_directory))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(UTILS_DIR), os.environ.get("PYTHONPATH")) if p
)


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
