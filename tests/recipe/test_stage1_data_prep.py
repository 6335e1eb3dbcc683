"""LibriSpeech-layout subsets -> Kaldi data dirs (local/librispeech_data_prep.py)."""

from __future__ import annotations

import os
from pathlib import Path

import librispeech_data_prep as prep
import pytest
from datadir import DataDirError
from stage1_helpers import make_chapter, write_flac
from textnorm import normalize_text


def _read(d: Path) -> dict[str, str]:
    return {f: (d / f).read_text() for f in ("wav.scp", "text", "utt2spk", "spk2utt")}


def test_writes_exact_kaldi_files(tiny_subset: Path, tmp_path: Path) -> None:
    dst = tmp_path / "data" / "dev_clean"
    assert prep.prepare([tiny_subset], dst, nj=2) is True
    s = tiny_subset.resolve()
    assert _read(dst) == {
        "wav.scp": (
            f"1034-121119-0000 {s}/1034/121119/1034-121119-0000.flac\n"
            f"19-198-0000 {s}/19/198/19-198-0000.flac\n"
            f"19-198-0001 {s}/19/198/19-198-0001.flac\n"
            f"19-227-0000 {s}/19/227/19-227-0000.flac\n"
        ),
        "text": (
            "1034-121119-0000 HELLO WORLD\n"
            "19-198-0000 NORTHANGER ABBEY\n"
            "19-198-0001 IT WAS A FINE DAY\n"
            "19-227-0000 SHE DIDN'T KNOW\n"
        ),
        "utt2spk": (
            "1034-121119-0000 1034-121119\n"
            "19-198-0000 19-198\n"
            "19-198-0001 19-198\n"
            "19-227-0000 19-227\n"
        ),
        "spk2utt": (
            "1034-121119 1034-121119-0000\n"
            "19-198 19-198-0000 19-198-0001\n"
            "19-227 19-227-0000\n"
        ),
    }
    # Nothing but the finished directory is left behind.
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dev_clean"]


def test_rerun_skips_and_changed_input_redoes(
    tiny_subset: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "dev_clean"
    prep.prepare([tiny_subset], dst)
    before = _read(dst)
    mtime = (dst / "text").stat().st_mtime_ns
    assert prep.prepare([tiny_subset], dst) is False
    assert (dst / "text").stat().st_mtime_ns == mtime
    make_chapter(tiny_subset, "19", "300", {"0000": "A NEW CHAPTER"})
    assert prep.prepare([tiny_subset], dst) is True
    after = _read(dst)
    assert after["text"] == before["text"] + "19-300-0000 A NEW CHAPTER\n"


def test_merges_subsets_and_normalizes_text(tiny_subset: Path, tmp_path: Path) -> None:
    other = tmp_path / "LibriSpeech" / "dev-other"
    make_chapter(other, "200", "7", {"0000": "Mr. Smith's  café—open!"})
    dst = tmp_path / "dev"
    prep.prepare([tiny_subset, other], dst)
    lines = (dst / "text").read_text().splitlines()
    assert len(lines) == 5
    assert lines[-1] == "200-7-0000 MR SMITH'S CAFE OPEN"


def test_duplicate_ids_across_subsets_stop(tiny_subset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    make_chapter(copy, "19", "227", {"0000": "SHE DIDN'T KNOW"})
    with pytest.raises(
        DataDirError, match=r"19-227\.trans\.txt:1: utterance id '19-227-0000' also in"
    ):
        prep.prepare([tiny_subset, copy], tmp_path / "dev")
    assert not (tmp_path / "dev").exists()


def _missing_flac(chapter: Path) -> str:
    (chapter / "19-198-0001.flac").unlink()
    return r"19-198\.trans\.txt:2: audio file missing: .*19-198-0001\.flac"


def _empty_transcript(chapter: Path) -> str:
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 NORTHANGER ABBEY\n19-198-0001 \n"
    )
    return r"19-198\.trans\.txt:2: empty transcript for '19-198-0001'"


def _punctuation_only_transcript(chapter: Path) -> str:
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 NORTHANGER ABBEY\n19-198-0001 -- !\n"
    )
    return r"19-198\.trans\.txt:2: empty transcript for '19-198-0001'"


def _transcript_without_audio(chapter: Path) -> str:
    with open(chapter / "19-198.trans.txt", "a") as f:
        f.write("19-198-0002 AN EXTRA LINE\n")
    return r"19-198\.trans\.txt:3: audio file missing: .*19-198-0002\.flac"


def _audio_without_transcript(chapter: Path) -> str:
    write_flac(chapter / "19-198-0005.flac")
    return r"19-198-0005\.flac: no line for it in .*19-198\.trans\.txt"


def _corrupt_flac(chapter: Path) -> str:
    (chapter / "19-198-0001.flac").write_bytes(b"fLaC not really a flac file" * 10)
    return r"19-198\.trans\.txt:2: cannot read audio .*19-198-0001\.flac"


def _empty_flac(chapter: Path) -> str:
    (chapter / "19-198-0000.flac").write_bytes(b"")
    return r"19-198\.trans\.txt:1: cannot read audio .*19-198-0000\.flac"


def _foreign_id(chapter: Path) -> str:
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 NORTHANGER ABBEY\n19-199-0001 IT WAS\n"
    )
    return r"19-198\.trans\.txt:2: utterance id '19-199-0001' does not belong to chapter 19-198"


def _duplicate_line(chapter: Path) -> str:
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 NORTHANGER ABBEY\n19-198-0001 IT WAS\n19-198-0000 AGAIN\n"
    )
    return r"19-198\.trans\.txt:3: duplicate utterance id '19-198-0000' \(first on line 1\)"


def _missing_transcript_file(chapter: Path) -> str:
    (chapter / "19-198.trans.txt").unlink()
    return r"19-198\.trans\.txt: transcript file missing \(2 flac files"


@pytest.mark.parametrize(
    "damage",
    [
        _missing_flac,
        _empty_transcript,
        _punctuation_only_transcript,
        _transcript_without_audio,
        _audio_without_transcript,
        _corrupt_flac,
        _empty_flac,
        _foreign_id,
        _duplicate_line,
        _missing_transcript_file,
    ],
)
def test_bad_input_stops_naming_file_and_line(
    damage,
    tiny_subset: Path,
    tmp_path: Path,
) -> None:
    pattern = damage(tiny_subset / "19" / "198")
    dst = tmp_path / "data" / "dev_clean"
    with pytest.raises(DataDirError, match=pattern):
        prep.prepare([tiny_subset], dst)
    assert not dst.exists()
    leftovers = (
        list((tmp_path / "data").iterdir()) if (tmp_path / "data").exists() else []
    )
    assert leftovers == []


def test_bad_input_leaves_previous_dir_untouched(
    tiny_subset: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "dev_clean"
    prep.prepare([tiny_subset], dst)
    good = _read(dst)
    _corrupt_flac(tiny_subset / "19" / "198")
    make_chapter(tiny_subset, "19", "300", {"0000": "CHANGED INPUT"})  # forces a redo
    with pytest.raises(DataDirError):
        prep.prepare([tiny_subset], dst)
    assert _read(dst) == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LibriSpeech", "dev_clean"]


def test_all_problems_are_listed(tiny_subset: Path, tmp_path: Path) -> None:
    _missing_flac(tiny_subset / "19" / "198")
    (tiny_subset / "1034" / "121119" / "1034-121119.trans.txt").write_text(
        "1034-121119-0000\n"
    )
    with pytest.raises(DataDirError) as info:
        prep.prepare([tiny_subset], tmp_path / "x")
    message = str(info.value)
    assert "2 problem(s)" in message
    assert "1034-121119.trans.txt:1: empty transcript" in message
    assert "19-198.trans.txt:2: audio file missing" in message


def test_cli_exit_status(tiny_subset: Path, tmp_path: Path, capsys) -> None:
    assert prep.main(["--dst", str(tmp_path / "ok"), str(tiny_subset)]) == 0
    assert (
        prep.main(["--dst", str(tmp_path / "bad"), str(tmp_path / "no-such-subset")])
        == 1
    )
    assert "no-such-subset: subset directory does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "raw, normalized",
    [
        ("HELLO WORLD", "HELLO WORLD"),
        ("it's  a 'quoted' word", "IT'S A QUOTED WORD"),
        ("Fête—à  l’heure", "FETE A L'HEURE"),
        ("good-humoured, (and) so on...", "GOOD HUMOURED AND SO ON"),
        ("'TIS THE LADIES' HOUR", "TIS THE LADIES HOUR"),
        ("", ""),
    ],
)
def test_normalize_text(raw: str, normalized: str) -> None:
    assert normalize_text(raw) == normalized
    assert normalize_text(normalized) == normalized


def test_wav_scp_points_at_existing_absolute_paths(
    tiny_subset: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "d"
    prep.prepare([tiny_subset], dst)
    for line in (dst / "wav.scp").read_text().splitlines():
        path = line.split(" ", 1)[1]
        assert os.path.isabs(path) and os.path.isfile(path)
