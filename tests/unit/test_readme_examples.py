"""Every code example of the README's "Using the encoder" sections runs.

The README is parsed for fenced blocks. Python blocks (all of the README's)
run in this process in a scratch directory laid out as the examples assume
(``exp/asr/`` with a tiny trained model, its packed zip and ``speech.wav``);
YAML blocks that name the encoder build an ESPnet model; the command lines of
"Using the encoder" and "Why the wrappers" run, the ``enable``/``disable``
ones with a throwaway virtual environment's ``python`` (never this one's).
"""

import contextlib
import io
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import yaml

pytest.importorskip("flashlight.lib.text.decoder")

from tiny_asr import TEXT, train_tiny_ctc_model  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = ("## Using the encoder", "### Why the wrappers")


def _blocks() -> List[Tuple[str, str, str]]:
    """(section heading, language, code) of every fenced block."""
    blocks, section = [], ""
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.strip()
        elif line.startswith("```"):
            end = lines.index("```", i + 1)
            blocks.append((section, line[3:].strip(), "\n".join(lines[i + 1 : end])))
            i = end
        i += 1
    return blocks


def _of(language: str, sections=None) -> List[str]:
    return [
        code
        for section, lang, code in _blocks()
        if lang == language and (sections is None or section in sections)
    ]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Dict[str, Any]:
    """exp/asr/{config.yaml,valid.loss.ave.pth,packed.zip}, speech.wav,
    data/test/wav.scp: the paths the examples name."""
    from espnet2.main_funcs.pack_funcs import pack

    # The streaming variant: the "Streaming recognition" example needs it,
    # and it decodes offline as well as the other.
    trained = train_tiny_ctc_model(tmp_path_factory.mktemp("model"), streaming=True)
    work = tmp_path_factory.mktemp("work")
    (work / "exp" / "asr").mkdir(parents=True)
    for name in ("config.yaml", "valid.loss.ave.pth"):
        shutil.copy(trained["exp"] / name, work / "exp" / "asr" / name)
    shutil.copy(trained["root"] / "utt1.wav", work / "speech.wav")
    (work / "data" / "test").mkdir(parents=True)
    (work / "data" / "test" / "wav.scp").write_text(f"utt1 {work / 'speech.wav'}\n")
    with contextlib.chdir(trained["root"]):  # pack keeps relative paths
        pack(
            files=dict(asr_model_file=trained["exp"] / "valid.loss.ave.pth"),
            yaml_files=dict(asr_train_config=trained["exp"] / "config.yaml"),
            outpath=work / "exp" / "asr" / "packed.zip",
            option=[trained["decode"], trained["lexicon"], trained["word_lm"]],
        )
    return dict(work=work, **trained)


def test_the_sections_have_examples():
    assert len(_of("python")) >= 2
    assert len(_of("sh", SECTIONS)) >= 2
    assert any("encoder: shared_conformer" in code for code in _of("yaml"))


@pytest.mark.parametrize("index", range(len(_of("python"))))
def test_python_example(workdir, monkeypatch, index):
    """Runs as written; its result, if it prints one or makes a Speech2Text,
    is the model's transcript."""
    import soundfile

    code = _of("python")[index]
    monkeypatch.chdir(workdir["work"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(workdir["work"] / "cache"))
    out = io.StringIO()
    scope: Dict[str, Any] = {"__name__": "__readme__"}
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md python example {index}", "exec"), scope)
    if "print(" in code:
        assert out.getvalue().splitlines()[-1] == TEXT
    if "speech2text" in scope:
        samples, _ = soundfile.read("speech.wav", dtype="float32")
        assert scope["speech2text"](samples)[0][0] == TEXT


@pytest.mark.parametrize("index", range(len(_of("yaml"))))
def test_yaml_example_builds(tmp_path, index):
    from espnet2.tasks.asr import ASRTask

    from espnet_shared_conformer import register
    from espnet_shared_conformer.encoder import SharedConformerEncoder

    register()
    config = tmp_path / "train.yaml"
    config.write_text(_of("yaml")[index])
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blank>\n<unk>\nA\n<sos/eos>\n")
    # The example is the encoder part of a config; CTC alone completes it.
    args = ASRTask.get_parser().parse_args(
        ["--config", str(config), "--token_list", str(tokens)]
        + ["--model_conf", "ctc_weight=1.0"]
    )
    model = ASRTask.build_model(args)
    assert isinstance(model.encoder, SharedConformerEncoder)
    written = yaml.safe_load(_of("yaml")[index])["encoder_conf"]
    assert model.encoder.build_options["num_blocks"] == written["num_blocks"]


def _throwaway_python(root: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True
    )
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "00-base.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


def test_command_lines(workdir, tmp_path, monkeypatch, capsys):
    from espnet_shared_conformer.bin import asr_inference, asr_train, transcribe

    monkeypatch.chdir(workdir["work"])
    commands = [
        line
        for code in _of("sh", SECTIONS)
        for line in code.splitlines()
        if line.strip()
    ]
    venv_python = None
    for line in commands:
        argv = shlex.split(line)
        assert argv[:2] == ["python", "-m"], line
        module, args = argv[2], argv[3:]
        if module == "espnet_shared_conformer.bin.asr_train":
            with pytest.raises(SystemExit) as done:
                asr_train.main(args)
            assert done.value.code == 0
            help_text = capsys.readouterr().out
            assert re.search(r"--encoder \{[^}]*shared_conformer", help_text)
        elif module == "espnet_shared_conformer.bin.asr_inference":
            asr_inference.main(args)
            out = Path(args[args.index("--output_dir") + 1])
            text = (out / "1best_recog" / "text").read_text().split(" ", 1)[1]
            assert text.strip() == TEXT
        elif module == "espnet_shared_conformer.bin.transcribe":
            monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
            assert transcribe.main(args) == 0
            path, text = capsys.readouterr().out.splitlines()[-1].split("\t")
            assert (path, text) == (args[-1], TEXT)
        elif module in (
            "espnet_shared_conformer.enable",
            "espnet_shared_conformer.disable",
        ):
            venv_python = venv_python or _throwaway_python(tmp_path / "venv")
            done = subprocess.run(
                [venv_python, *argv[1:]], capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            written = list(
                (tmp_path / "venv").rglob("espnet_shared_conformer_enable.pth")
            )
            assert len(written) == (1 if module.endswith("enable") else 0)
        else:
            raise AssertionError(f"no test runs this README command: {line}")
