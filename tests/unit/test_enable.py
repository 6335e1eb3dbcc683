"""`python -m espnet_shared_conformer.enable` / `disable`: ESPnet's own binary
knows the encoder, and a process that never imports ESPnet pays nothing.

The hook is installed into a throwaway virtual environment, never into the
environment running the tests: ``venv --without-pip`` in a temporary
directory, whose site-packages gets a ``.pth`` that adds this interpreter's
site-packages as a site directory (so ESPnet, torch and this package, with
their own ``.pth`` files, are importable there). ``enable`` then runs with the
throwaway interpreter and writes into its site-packages, its default.
"""

import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import yaml

from espnet_shared_conformer._registry import ENCODER_NAME
from espnet_shared_conformer.enable import PTH_NAME

TOKENS = ["<blank>", "<unk>", "A", "B", "C", "<sos/eos>"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A throwaway venv seeing this environment's packages; its python."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True
    )
    python = root / "bin" / "python"
    purelib = Path(_run(python, "-c", _PURELIB).stdout.strip())
    ours = sysconfig.get_paths()["purelib"]
    # "00-" sorts first: the packages are visible before the hook's line runs.
    (purelib / "00-base.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


_PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def _run(python: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(python), *args], capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _train_dry_run(python: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """ESPnet's own training binary, not the wrapper, on a shared_conformer config."""
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            dict(
                frontend="default",
                frontend_conf=dict(
                    n_fft=256, win_length=256, hop_length=128, n_mels=20
                ),
                encoder=ENCODER_NAME,
                encoder_conf=dict(
                    output_size=16,
                    attention_heads=2,
                    linear_units=24,
                    num_blocks=4,
                    num_unique_blocks=2,
                    cnn_module_kernel=5,
                    rel_pos_type="latest",
                ),
                decoder="none",
                model_conf=dict(ctc_weight=1.0),
            )
        )
    )
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(TOKENS) + "\n")
    return _run(
        python,
        "-m",
        "espnet2.bin.asr_train",
        "--dry_run",
        "true",
        "--config",
        str(config),
        "--token_list",
        str(tokens),
        "--output_dir",
        str(tmp_path / "exp"),
        "--ngpu",
        "0",
        check=False,
    )


def test_enable_registers_in_espnets_binary_and_disable_removes_it(venv, tmp_path):
    purelib = Path(_run(venv, "-c", _PURELIB).stdout.strip())
    out = _run(venv, "-m", "espnet_shared_conformer.enable").stdout
    assert (purelib / PTH_NAME).is_file() and str(purelib / PTH_NAME) in out

    # A process that never imports espnet2.tasks.asr runs the hook but loads
    # neither torch nor ESPnet (nor typing: the hook imports almost nothing).
    probe = textwrap.dedent("""
        import sys
        from espnet_shared_conformer._startup import installed
        heavy = [m for m in ("torch", "espnet2", "numpy", "typing") if m in sys.modules]
        print(installed(), heavy)
    """)
    assert _run(venv, "-c", probe).stdout.split() == ["True", "[]"]

    trained = _train_dry_run(venv, tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "SharedConformerEncoder" in trained.stderr  # ESPnet's model summary

    assert "removed" in _run(venv, "-m", "espnet_shared_conformer.disable").stdout
    assert not (purelib / PTH_NAME).exists()
    assert _run(venv, "-c", probe).stdout.split()[0] == "False"
    refused = _train_dry_run(venv, tmp_path)
    assert refused.returncode != 0
    # ESPnet's own message: nothing of the package runs in this process.
    assert f"--encoder {ENCODER_NAME}" in refused.stderr.strip().splitlines()[-1]
    assert "not enabled" in _run(venv, "-m", "espnet_shared_conformer.disable").stdout


def test_enable_into_a_missing_directory_fails(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_shared_conformer.enable",
            "--site-dir",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "no such site directory" in result.stderr
    assert not (tmp_path / "missing").exists()
