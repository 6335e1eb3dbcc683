"""`python -m espnet_shared_conformer.enable` / `disable`: ESPnet's own binary
knows the encoder, and a process that never imports ESPnet pays nothing.

The hook is installed into a throwaway virtual environment, never into the
environment running the tests: ``venv --without-pip`` in a temporary
directory, whose site-packages gets a ``.pth`` that adds this interpreter's
site-packages as a site directory (so ESPnet, torch and this package, with
their own ``.pth`` files, are importable there). ``enable`` then runs with the
throwaway interpreter and writes into its site-packages, its default.
"""

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Dict, Optional

import pytest
import yaml

import espnet_shared_conformer
from espnet_shared_conformer._registry import ENCODER_NAME, UNREGISTERED_HINT
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


def _run(
    python: Path,
    *args: str,
    check: bool = True,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[Path] = None,
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(python), *args], capture_output=True, text=True, env=env, cwd=cwd
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _train_dry_run(
    python: Path, tmp_path: Path, env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess:
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
        env=env,
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


#: What the shadowed encoder module fails with (a dependency that is missing).
_MISSING = "espnet_shared_conformer_missing_dependency"


def _broken_encoder_env(tmp_path: Path) -> Dict[str, str]:
    """An environment whose processes import this package as it is, except
    that ``espnet_shared_conformer.encoder`` fails to import.

    A package of the same name on PYTHONPATH comes first on ``sys.path`` (a
    process started outside the checkout: ``-c`` and ``-m`` put the working
    directory before it, the startup hook runs before that); its
    ``__path__`` continues into the real package, so every other module is
    the real one, and its ``__init__`` runs the real one's code.
    """
    real = Path(espnet_shared_conformer.__file__).parent
    shadow = tmp_path / "shadow" / "espnet_shared_conformer"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        f"__path__.append({str(real)!r})\n"
        f"exec(compile(open({str(real / '__init__.py')!r}).read(), "
        f"{str(real / '__init__.py')!r}, 'exec'))\n"
    )
    (shadow / "encoder.py").write_text(f"import {_MISSING}\n")
    return dict(os.environ, PYTHONPATH=str(shadow.parent))


def test_the_hook_says_why_it_could_not_register(venv, tmp_path):
    """The encoder's module fails to import in this process only: the hook
    prints the cause and the ways out, and ESPnet's own error still follows."""
    env = _broken_encoder_env(tmp_path)
    _run(venv, "-m", "espnet_shared_conformer.enable")
    try:
        result = _train_dry_run(venv, tmp_path, env=env)
    finally:
        _run(venv, "-m", "espnet_shared_conformer.disable")
    assert result.returncode != 0
    stderr = result.stderr
    cause = f"could not register the encoder: ModuleNotFoundError: No module named '{_MISSING}'"
    assert cause in stderr and UNREGISTERED_HINT in stderr
    assert stderr.index(UNREGISTERED_HINT) < stderr.rindex(f"--encoder {ENCODER_NAME}")
    assert f"--encoder {ENCODER_NAME}" in stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("entry", ["load_model", "bin.asr_inference"])
def test_the_loader_and_the_binary_say_why_they_could_not_register(tmp_path, entry):
    """The same failure where the package registers itself: an error naming
    the cause, with the hint, before any model is read."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text(yaml.safe_dump({"encoder": ENCODER_NAME}))
    (exp / "valid.loss.ave.pth").write_bytes(b"")  # never read
    (tmp_path / "decode.yaml").write_text("beam_size: 2\n")
    if entry == "load_model":
        code = (
            "from espnet_shared_conformer.inference import load_model; "
            f"load_model({str(exp)!r}, decoding={str(tmp_path / 'decode.yaml')!r})"
        )
        args = ["-c", code]
    else:
        args = ["-m", "espnet_shared_conformer.bin.asr_inference"]
        args += ["--asr_train_config", str(exp / "config.yaml")]
        args += ["--asr_model_file", str(exp / "valid.loss.ave.pth")]
        args += ["--data_path_and_name_and_type", "wav.scp,speech,sound"]
        args += ["--output_dir", str(tmp_path / "out")]
    # Run from tmp_path: the working directory (this checkout, when the tests
    # run from it) would come before PYTHONPATH on sys.path.
    env = _broken_encoder_env(tmp_path)
    result = _run(Path(sys.executable), *args, check=False, env=env, cwd=tmp_path)
    assert result.returncode != 0
    cause = f"could not register the encoder: ModuleNotFoundError: No module named '{_MISSING}'"
    assert cause in result.stderr and UNREGISTERED_HINT in result.stderr
    assert not (tmp_path / "out").exists()


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
