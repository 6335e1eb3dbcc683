"""Which code a benchmark measured: the checkout's commit, for its report."""

import subprocess
from pathlib import Path
from typing import Sequence

#: The repository root (this file lies in benchmarks/).
ROOT = Path(__file__).resolve().parents[1]


def commit(paths: Sequence[str] = (), mark: str = "+changes") -> str:
    """The short commit of the checkout, with ``mark`` appended when tracked
    files under ``paths`` (relative to the root; all when empty) differ
    from it; ``unknown`` outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", *paths)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (mark if changed else "")
