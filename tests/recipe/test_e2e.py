"""End-to-end run of the recipe: local/ci_e2e.sh, stages 1-15 on a slice of the
mini corpus (about 10 minutes on two CPU cores).

Runs only when asked: ``RECIPE_E2E=1 pytest -m e2e tests/recipe/test_e2e.py``.
"""

from __future__ import annotations

import os

import pytest
from pipeline_helpers import RECIPE_DIR, run


@pytest.mark.e2e
@pytest.mark.skipif(
    os.environ.get("RECIPE_E2E") != "1", reason="set RECIPE_E2E=1 to run the recipe"
)
def test_recipe_end_to_end(tmp_path):
    result = run(
        [RECIPE_DIR / "local" / "ci_e2e.sh", "--workdir", tmp_path / "recipe"],
        timeout=30 * 60,
    )

    assert result.returncode == 0, result.stderr[-5000:]
    assert "Successfully finished" in result.stderr
