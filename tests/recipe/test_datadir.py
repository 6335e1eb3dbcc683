"""The data-directory library (datadir.py) and the text normalizer
(textnorm.py) every stage uses: tables, errors naming file and line, putting
a finished directory in place, spellings as data."""

from __future__ import annotations

from pathlib import Path

import datadir
import pytest
import textnorm
from pipeline_helpers import RECIPE_DIR


@pytest.mark.parametrize(
    "content, message",
    [
        ("a 1\nb 2\na 3\n", "t:3: duplicate id 'a' (first on line 1)"),
        ("a 1\n\nb 2\n", "t:2: empty line"),
        ("a 1\nb\n", "t:2: no value after id 'b'"),
    ],
)
def test_read_table_names_file_and_line(tmp_path: Path, content, message) -> None:
    (tmp_path / "t").write_text(content)
    with pytest.raises(datadir.DataDirError) as error:
        datadir.read_table(tmp_path / "t")
    assert str(error.value) == f"{tmp_path}/{message}"


def test_read_table_keeps_the_rest_of_the_line(tmp_path: Path) -> None:
    (tmp_path / "wav.scp").write_text("a sox x.wav -t wav - speed 0.9 |\nb\tb.wav\n")
    table = datadir.read_table(tmp_path / "wav.scp")
    assert table == {"a": "sox x.wav -t wav - speed 0.9 |", "b": "b.wav"}
    assert table.where("b") == f"{tmp_path / 'wav.scp'}:2"


def test_write_table_sorts_in_byte_order(tmp_path: Path) -> None:
    datadir.write_table(
        tmp_path / "t", [("b", "2"), ("B", "1"), ("a-1", ""), ("a", "0")]
    )
    assert (tmp_path / "t").read_text() == "B 1\na 0\na-1\nb 2\n"


def test_read_data_dir_lists_every_problem(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("s-1 a.wav\ns-2 b.wav\n")
    (data / "text").write_text("s-1 A\ns-2\n")
    (data / "utt2spk").write_text("s-1 s\ns-3 s\n")
    with pytest.raises(datadir.DataDirError) as error:
        datadir.read_data_dir(data)
    assert str(error.value).splitlines() == [
        f"{data}: not a usable data directory; 3 problem(s):",
        f"  {data}/wav.scp:2: utterance 's-2' is not in utt2spk",
        f"  {data}/utt2spk:2: utterance 's-3' is not in wav.scp",
        f"  {data}/text:2: empty transcript for 's-2'",
    ]


def test_listing_counts_what_it_leaves_out() -> None:
    problems = [f"p{i}" for i in range(datadir.MAX_REPORTED + 3)]
    lines = str(datadir.DataDirError.listing("h", problems)).splitlines()
    assert lines[0] == f"h; {len(problems)} problem(s):"
    assert len(lines) == datadir.MAX_REPORTED + 2
    assert lines[-1] == "  ... and 3 more"


def test_building_replaces_the_directory_only_when_finished(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old").write_text("old\n")
    (tmp_path / "out.old").mkdir()  # left by a run killed in replace_dir
    (tmp_path / "out.old" / "stale").write_text("stale\n")
    with pytest.raises(RuntimeError):
        with datadir.building(final) as tmp:
            (tmp / "new").write_text("half\n")
            raise RuntimeError("stage failed")
    assert sorted(p.name for p in final.iterdir()) == ["old"]
    assert not (tmp_path / "out.tmp").exists()

    with datadir.building(final) as tmp:
        assert tmp == tmp_path / "out.tmp" and not any(tmp.iterdir())
        (tmp / "new").write_text("new\n")
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


SPELLINGS = {"Mr.": "Mister", "Mrs.": "Missus", "St.": "Saint", "&": "and"}


@pytest.mark.parametrize(
    "written, said",
    [
        ("Mr. and Mrs. Dashwood", "Mister and Missus Dashwood"),
        ("MR. DASHWOOD & co", "Mister DASHWOOD and co"),
        # Only a whole word is spelled out; a form without its dot is not.
        ("Mr Palmer, Mrs.Jennings, A&B, St.s", "Mr Palmer, Mrs.Jennings, A&B, St.s"),
    ],
)
def test_spell_out(written: str, said: str) -> None:
    assert textnorm.spell_out(written, SPELLINGS) == said


def test_normalize_text_with_spellings_is_idempotent() -> None:
    text = textnorm.normalize_text(
        "\u201cMr. Smith\u2019s caf\u00e9\u201d & St. Ives", SPELLINGS
    )
    assert text == "MISTER SMITH'S CAFE AND SAINT IVES"
    assert textnorm.normalize_text(text, SPELLINGS) == text


def test_the_recipe_spellings_file_reads() -> None:
    spellings = textnorm.read_spellings(RECIPE_DIR / "conf" / "spellings.txt")
    assert spellings["Mr."] == "Mister" and spellings["&"] == "and"


@pytest.mark.parametrize(
    "content, message",
    [
        ("# comment\nMr.\n", "spellings.txt:2: 'Mr.' has no spoken form"),
        ("Mr. Mister\n\nMr. Master\n", "spellings.txt:3: 'Mr.' is given twice"),
    ],
)
def test_read_spellings_names_file_and_line(tmp_path: Path, content, message) -> None:
    (tmp_path / "spellings.txt").write_text(content)
    with pytest.raises(datadir.DataDirError) as error:
        textnorm.read_spellings(tmp_path / "spellings.txt")
    assert str(error.value) == f"{tmp_path}/{message}"
