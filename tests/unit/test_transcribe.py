"""``python -m espnet_shared_conformer.bin.transcribe``: the package's command.

Bad audio of every kind, long recordings and memory are tested in
``tests/recipe/test_bad_audio.py`` (with the recipe's audio helpers); here,
what the command itself promises: its exit codes and messages.
"""

import subprocess
import sys

TRANSCRIBE = [sys.executable, "-m", "espnet_shared_conformer.bin.transcribe"]


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TRANSCRIBE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def test_a_missing_model_is_reported(tmp_path):
    result = _run("--model", tmp_path / "none.zip", "a.wav")

    assert result.returncode == 1
    assert "transcribe: ERROR: no such model file or directory" in result.stderr
    assert result.stdout == ""


def test_a_search_window_longer_than_the_window_is_a_usage_error(tmp_path):
    model = tmp_path / "model.zip"
    model.write_bytes(b"")
    result = _run("--model", model, "--search_seconds", "30", "a.wav")

    assert result.returncode == 2
    assert "--search_seconds (30.0) must be in (0, --window_seconds (20.0)]" in (
        result.stderr
    )
