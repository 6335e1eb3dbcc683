"""local/data.sh end to end: its interface and the data dirs it promises."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import prepare_real_clips as real
import pytest
from datadir import DataDirError, validate_data_dir
from pipeline_helpers import LOCAL_DIR
from stage1_helpers import RangeServer, make_chapter, write_flac

DATA_SH = LOCAL_DIR / "data.sh"


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    return subprocess.run(
        ["bash", str(DATA_SH), "--python", sys.executable, "--nj", "2", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _librispeech_copy(root: Path, subsets: list[str]) -> None:
    for i, subset in enumerate(subsets):
        make_chapter(
            root / "LibriSpeech" / subset,
            str(100 + i),
            "10",
            {"0000": f"WORDS OF {subset.upper()}"},
        )


def test_help_and_option_errors(tmp_path: Path) -> None:
    shown = subprocess.run(
        ["bash", str(DATA_SH), "--help"], capture_output=True, text=True
    )
    assert shown.returncode == 0
    for option in (
        "--corpus",
        "--datadir",
        "--librispeech_root",
        "--download",
        "--download_subsets",
        "--mini_root",
        "--mini_hours",
        "--seed",
        "--nj",
    ):
        assert option in shown.stdout
    for args, message in (
        (["--no_such_option", "1"], "unknown option --no_such_option"),
        (
            ["--corpus", "timit"],
            "--corpus must be one of: mini librispeech; got 'timit'",
        ),
        (["--download", "maybe"], "--download must be one of: true false"),
        (["--nj", "0"], "--nj must be a positive integer"),
        (["--seed"], "option --seed needs a value"),
    ):
        result = _run(tmp_path, *args)
        assert result.returncode == 2, args
        assert message in result.stderr
    assert not (tmp_path / "data").exists()


def test_librispeech_download_and_prep(server: RangeServer, tmp_path: Path) -> None:
    subsets = ["train-clean-100", "dev-clean", "dev-other", "test-clean"]
    stage = tmp_path / "stage"
    _librispeech_copy(stage, subsets)
    sums = []
    for subset in subsets:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(stage / "LibriSpeech" / subset, arcname=f"LibriSpeech/{subset}")
        server.files[f"/ls/{subset}.tar.gz"] = buffer.getvalue()
        sums.append(f"{hashlib.md5(buffer.getvalue()).hexdigest()}  {subset}.tar.gz\n")
    (tmp_path / "md5sum.txt").write_text("".join(sums))
    work = tmp_path / "recipe"
    work.mkdir()
    args = (
        "--corpus",
        "librispeech",
        "--librispeech_root",
        "downloads",
        "--base_url",
        server.base_url,
        "--md5",
        str(tmp_path / "md5sum.txt"),
        "--download_subsets",
        ",".join(subsets),
    )
    result = _run(work, *args)
    assert result.returncode == 0, result.stderr
    data = work / "data"
    assert sorted(p.name for p in data.iterdir()) == [
        "dev",
        "dev_clean",
        "dev_other",
        "test_clean",
        "train_clean_100",
    ]
    for d in data.iterdir():
        assert validate_data_dir(d, check_audio=True) == []
    assert (data / "dev" / "text").read_text() == (
        "101-10-0000 WORDS OF DEV CLEAN\n102-10-0000 WORDS OF DEV OTHER\n"
    )
    assert (
        data / "train_clean_100" / "text"
    ).read_text() == "100-10-0000 WORDS OF TRAIN CLEAN\n"
    assert "Stage 1 data: LibriSpeech" in result.stderr
    assert len(server.requests) == 4

    before = _snapshot(data)
    again = _run(work, *args)
    assert again.returncode == 0, again.stderr
    assert _snapshot(data) == before
    assert len(server.requests) == 4


def test_existing_copy_full_training_set_is_train_960(tmp_path: Path) -> None:
    subsets = [
        "train-clean-100",
        "train-clean-360",
        "train-other-500",
        "dev-clean",
        "test-other",
    ]
    _librispeech_copy(tmp_path / "corpus", subsets)
    # The root may also be the LibriSpeech directory itself; nothing is
    # downloaded when every subset is there (the URL leads nowhere).
    result = _run(
        tmp_path,
        "--corpus",
        "librispeech",
        "--download",
        "true",
        "--base_url",
        "http://127.0.0.1:9/nothing-here",
        "--librispeech_root",
        str(tmp_path / "corpus" / "LibriSpeech"),
        "--download_subsets",
        " ".join(subsets),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "dev",
        "dev_clean",
        "test_other",
        "train_960",
    ]
    assert len((tmp_path / "data" / "train_960" / "text").read_text().splitlines()) == 3


def test_two_training_subsets_are_named_after_them(tmp_path: Path) -> None:
    subsets = ["train-clean-100", "train-other-500", "dev-clean"]
    _librispeech_copy(tmp_path / "corpus", subsets)
    result = _run(
        tmp_path,
        "--corpus",
        "librispeech",
        "--download",
        "false",
        "--librispeech_root",
        "corpus",
        "--download_subsets",
        " ".join(subsets),
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "train_clean_100_other_500").is_dir()


def test_missing_subset_without_download_fails(tmp_path: Path) -> None:
    _librispeech_copy(tmp_path / "corpus", ["dev-clean"])
    result = _run(
        tmp_path,
        "--corpus",
        "librispeech",
        "--download",
        "false",
        "--librispeech_root",
        "corpus",
        "--download_subsets",
        "dev-clean test-clean",
    )
    assert result.returncode != 0
    assert "LibriSpeech subset test-clean not found under corpus" in result.stderr


def test_bad_input_stops_stage_naming_file_and_line(tmp_path: Path) -> None:
    _librispeech_copy(tmp_path / "corpus", ["dev-clean"])
    chapter = tmp_path / "corpus" / "LibriSpeech" / "dev-clean" / "100" / "10"
    (chapter / "100-10-0000.flac").write_bytes(b"not audio")
    result = _run(
        tmp_path,
        "--corpus",
        "librispeech",
        "--download",
        "false",
        "--librispeech_root",
        "corpus",
        "--download_subsets",
        "dev-clean",
    )
    assert result.returncode != 0
    assert (
        "corpus/LibriSpeech/dev-clean/100/10/100-10.trans.txt:1: cannot read audio"
        in result.stderr
    )
    assert not (tmp_path / "data" / "dev_clean").exists()
    assert "Successfully finished" not in result.stderr


def test_mini_corpus_end_to_end(tmp_path: Path) -> None:
    args = (
        "--corpus",
        "mini",
        "--mini_hours",
        "0.003",
        "--seed",
        "2",
        "--mini_root",
        "synth",
    )
    result = _run(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "data"
    expected = {
        "train",
        "dev",
        "test_sentences",
        "test_voices",
        "test_librivox",
        "local",
    }
    names = {p.name for p in data.iterdir()}
    assert expected <= names <= expected | {"test_asterisk"}
    for name in names - {"local"}:
        assert validate_data_dir(data / name, check_audio=True) == [], name
    assert len((data / "test_librivox" / "text").read_text().splitlines()) == 5
    assert len((data / "dev" / "text").read_text().splitlines()) == 10
    lm = (data / "local" / "other_text" / "text").read_text().splitlines()
    assert len(lm) > 15000 and lm[0].startswith("austen_lm_0000001 ")
    assert (tmp_path / "synth" / "train-synth").is_dir()
    assert "Successfully finished" in result.stderr

    before = _snapshot(data)
    again = _run(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert "is complete, skipping synthesis" in again.stderr
    assert _snapshot(data) == before


ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
ASTERISK_AUDIO = Path("/usr/share/asterisk/sounds/en")


def test_librivox_sphinx_transcripts(tmp_path: Path) -> None:
    audio = tmp_path / "clips"
    write_flac(
        audio / "a-01.wav", seed=1
    )  # the format follows the content, not the name
    write_flac(audio / "a-02.wav", seed=2)
    transcription = audio / "transcription"
    transcription.write_text(
        "<s> mister john's  dog </s> (a-01)\n<s> he was not </s> (a-02)\n"
    )
    dst = tmp_path / "test_librivox"
    assert real.prepare("sphinx", transcription, audio, "librivox", dst) is True
    assert (
        dst / "text"
    ).read_text() == "librivox-a-01 MISTER JOHN'S DOG\nlibrivox-a-02 HE WAS NOT\n"
    assert real.prepare("sphinx", transcription, audio, "librivox", dst) is False

    transcription.write_text(
        "<s> one </s> (a-01)\n<s> two </s> (a-03)\n<s> </s> (a-02)\nno id here\n"
    )
    with pytest.raises(DataDirError) as info:
        real.prepare("sphinx", transcription, audio, "librivox", tmp_path / "bad")
    message = str(info.value)
    assert f"{transcription}:2: audio file missing: {audio}/a-03.wav" in message
    assert f"{transcription}:3: empty transcript for 'a-02'" in message
    assert f"{transcription}:4: expected '<s> words </s> (fileid)'" in message
    assert not (tmp_path / "bad").exists()


@pytest.mark.skipif(
    not (ASTERISK_AUDIO.is_dir() and ASTERISK_TEXT.is_file()),
    reason="optional set: asterisk-core-sounds-en(-wav) not installed",
)
def test_asterisk_prompts(tmp_path: Path) -> None:
    dst = tmp_path / "test_asterisk"
    real.prepare("asterisk", ASTERISK_TEXT, ASTERISK_AUDIO, "allison", dst)
    text = dict(line.split(" ", 1) for line in (dst / "text").read_text().splitlines())
    assert len(text) > 300
    assert text["allison-auth-thankyou"] == "THANK YOU"
    assert not any(
        k.startswith("allison-spy-iax") for k in text
    )  # acronym prompts left out
    assert validate_data_dir(dst, check_audio=True) == []
