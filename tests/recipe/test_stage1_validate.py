"""Every check of datadir.validate_data_dir and its command line
(pyscripts/utils/validate_data_dir.py), each problem naming file and line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest
import validate_data_dir as vdd
from datadir import validate_data_dir
from stage1_helpers import write_flac


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data" / "test"
    d.mkdir(parents=True)
    a = write_flac(tmp_path / "audio" / "a.flac", seed=1)
    b = write_flac(tmp_path / "audio" / "b.flac", seed=2)
    c = write_flac(tmp_path / "audio" / "c.flac", seed=3, sample_rate=8000)
    (d / "wav.scp").write_text(f"s1-u1 {a}\ns1-u2 {b}\ns2-u1 {c}\n")
    (d / "text").write_text("s1-u1 HELLO\ns1-u2 IT'S ME\ns2-u1 GOOD BYE\n")
    (d / "utt2spk").write_text("s1-u1 s1\ns1-u2 s1\ns2-u1 s2\n")
    (d / "spk2utt").write_text("s1 s1-u1 s1-u2\ns2 s2-u1\n")
    return d


def _edit(name: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        content = (d / name).read_text()
        assert old in content
        (d / name).write_text(content.replace(old, new))

    return apply


def _remove(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).unlink()


def _delete_audio(d: Path) -> None:
    path = (d / "wav.scp").read_text().splitlines()[1].split(" ", 1)[1]
    Path(path).unlink()


CASES = {
    "missing file": (_remove("text"), r"test/text: no such file$"),
    "unsorted": (
        _edit("wav.scp", "s1-u1", "s9-u1"),
        r"wav.scp:2: not sorted: 's1-u2' comes after 's9-u1'",
    ),
    "duplicate id": (
        _edit("text", "s1-u2 IT'S ME", "s1-u1 IT'S ME"),
        r"text:2: duplicate id 's1-u1' \(first on line 1\)",
    ),
    "id only in wav.scp": (
        _edit("text", "s1-u2 IT'S ME\n", ""),
        r"wav.scp:2: utterance 's1-u2' is not in text",
    ),
    "id only in text": (
        _edit("text", "s2-u1 GOOD BYE\n", "s2-u1 GOOD BYE\ns2-u9 EXTRA\n"),
        r"text:4: utterance 's2-u9' is not in wav.scp",
    ),
    "empty transcript": (
        _edit("text", "s1-u2 IT'S ME", "s1-u2"),
        r"text:2: empty transcript for 's1-u2'",
    ),
    "lower case": (
        _edit("text", "HELLO", "Hello"),
        r"text:1: characters outside A-Z, apostrophe and space: 'elo'",
    ),
    "digits": (
        _edit("text", "GOOD BYE", "GOOD BY 2"),
        r"text:3: characters outside .*: '2'",
    ),
    "double space": (
        _edit("text", "GOOD BYE", "GOOD  BYE"),
        r"text:3: repeated spaces",
    ),
    "trailing space": (
        _edit("utt2spk", "s2-u1 s2", "s2-u1 s2 "),
        r"utt2spk:3: leading or trailing whitespace",
    ),
    "no newline at end": (
        _edit("spk2utt", "s2 s2-u1\n", "s2 s2-u1"),
        r"spk2utt: last line has no newline",
    ),
    "empty line": (_edit("wav.scp", "\ns2-u1", "\n\ns2-u1"), r"wav.scp:3: empty line"),
    "speaker not a prefix": (
        _edit("utt2spk", "s2-u1 s2", "s2-u1 x2"),
        r"utt2spk:3: utterance id 's2-u1' does not start with its speaker id 'x2'",
    ),
    "spk2utt wrong speaker": (
        _edit("spk2utt", "s1 s1-u1 s1-u2\ns2 s2-u1", "s1 s1-u1 s1-u2 s2-u1\ns2 s2-u1"),
        r"spk2utt:1: speaker 's1' lists 's2-u1', but utt2spk:3 gives speaker 's2'",
    ),
    "spk2utt missing utterance": (
        _edit("spk2utt", "s1 s1-u1 s1-u2", "s1 s1-u1"),
        r"spk2utt:1: speaker 's1' does not list 's1-u2' \(utt2spk:2\)",
    ),
    "spk2utt missing speaker": (
        _edit("spk2utt", "s2 s2-u1\n", ""),
        r"spk2utt: speaker 's2' is missing \(utt2spk:3\)",
    ),
    "spk2utt unknown speaker": (
        _edit("spk2utt", "s2 s2-u1\n", "s2 s2-u1\ns3 s3-u1\n"),
        r"spk2utt:3: speaker 's3' has no utterance in utt2spk",
    ),
    "spk2utt unsorted list": (
        _edit("spk2utt", "s1 s1-u1 s1-u2", "s1 s1-u2 s1-u1"),
        r"spk2utt:1: utterances of speaker 's1' are not sorted",
    ),
    "audio missing": (
        _delete_audio,
        r"wav.scp:2: audio file does not exist: .*b\.flac",
    ),
    "not utf-8": (
        lambda d: (d / "text").write_bytes(b"s1-u1 \xff\n"),
        r"text: not UTF-8 text",
    ),
}


def test_good_dir_passes(good_dir: Path) -> None:
    assert validate_data_dir(good_dir, check_audio=True, nj=2) == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_error_names_file_and_line(case: str, good_dir: Path) -> None:
    damage, pattern = CASES[case]
    damage(good_dir)
    errors = validate_data_dir(good_dir)
    assert any(re.search(pattern, e) for e in errors), errors
    assert all(e.startswith(str(good_dir)) for e in errors), errors


def test_corrupt_audio_found_only_with_check_audio(good_dir: Path) -> None:
    path = Path((good_dir / "wav.scp").read_text().splitlines()[2].split(" ", 1)[1])
    path.write_bytes(b"garbage" * 100)
    assert validate_data_dir(good_dir) == []
    errors = validate_data_dir(good_dir, check_audio=True)
    assert len(errors) == 1
    assert errors[0].startswith(f"{good_dir}/wav.scp:3: cannot read audio {path}")


def test_display_name_replaces_directory(good_dir: Path) -> None:
    (good_dir / "text").unlink()
    assert validate_data_dir(good_dir, display_name="data/final") == [
        "data/final/text: no such file"
    ]


def test_charset_check_can_be_disabled(good_dir: Path) -> None:
    _edit("text", "HELLO", "hello")(good_dir)
    assert validate_data_dir(good_dir, check_charset=False) == []


def test_cli(good_dir: Path, tmp_path: Path, capsys) -> None:
    assert vdd.main([str(good_dir), "--check_audio"]) == 0
    _edit("text", "GOOD BYE", "good bye")(good_dir)
    assert vdd.main([str(good_dir)]) == 1
    err = capsys.readouterr().err
    assert f"ERROR: {good_dir}/text:3: characters outside" in err
    assert vdd.main([str(tmp_path / "nowhere")]) == 1
