"""`python -m espnet_shared_conformer.check_env`: the set-up's last step."""

import subprocess
import sys
from pathlib import Path

CHECK = [sys.executable, "-m", "espnet_shared_conformer.check_env"]


def test_a_working_environment_passes_and_names_its_versions() -> None:
    done = subprocess.run(CHECK, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "check_env: ok" in done.stdout
    assert "torchaudio " in done.stdout and "espnet " in done.stdout


def test_a_torchaudio_that_does_not_load_fails_with_the_versions(
    tmp_path: Path,
) -> None:
    # A torchaudio built for another torch fails inside its extension loader;
    # a package that raises the same OSError stands in for one, since a
    # mismatched build cannot be installed next to the locked environment.
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise OSError('libtorchaudio.so: undefined symbol: "
        "torch_exception_get_what_without_backtrace')\n"
    )
    done = subprocess.run(
        CHECK,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert "cannot import torchaudio: OSError" in done.stderr
    assert "undefined symbol" in done.stderr
    # the versions that explain it, and what to do
    assert "torch 2." in done.stderr and "torchaudio 2." in done.stderr
    assert "exact torch release" in done.stderr
