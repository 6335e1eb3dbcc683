"""Helpers of stages 2, 4 and 5: outputs and errors."""

from __future__ import annotations

import shutil

import pytest
from pipeline_helpers import (
    local_module,
    read_table,
    tone,
    write_data_dir,
)

dump_audio = local_module("dump_audio")
filter_utts = local_module("filter_utts")
make_token_list = local_module("make_token_list")
perturb_speed = local_module("perturb_speed")


def test_speed_perturbation_copies_and_stretches(tmp_path):
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    wav = {"a-1": str(tone(tmp_path / "x y.wav", 16000, seconds=1.0))}
    data = write_data_dir(tmp_path / "data", wav, text={"a-1": "HI THERE"})
    out = tmp_path / "data_sp"

    assert perturb_speed.main(["--factors", "0.9 1.0 1.1", str(data), str(out)]) == 0

    assert read_table(out / "text") == {
        "a-1": "HI THERE",
        "sp0.9-a-1": "HI THERE",
        "sp1.1-a-1": "HI THERE",
    }
    assert read_table(out / "utt2spk")["sp0.9-a-1"] == "sp0.9-a"
    assert read_table(out / "spk2utt") == {
        "a": "a-1",
        "sp0.9-a": "sp0.9-a-1",
        "sp1.1-a": "sp1.1-a-1",
    }
    assert read_table(out / "wav.scp")["a-1"] == wav["a-1"]
    # Stage 3 runs the sox pipes: 0.9 x speed lasts 1/0.9 as long.
    assert dump_audio.main([str(out), str(tmp_path / "dump")]) == 0
    lengths = read_table(tmp_path / "dump" / "utt2num_samples")
    assert abs(int(lengths["sp0.9-a-1"]) - 16000 / 0.9) < 20
    assert abs(int(lengths["sp1.1-a-1"]) - 16000 / 1.1) < 20
    assert int(lengths["a-1"]) == 16000


@pytest.mark.parametrize("factors", ["", "0.9 fast", "0.9 0.90", "5"])
def test_speed_perturbation_rejects_bad_factors(tmp_path, capsys, factors):
    data = write_data_dir(
        tmp_path / "data", {"a-1": str(tone(tmp_path / "a.wav", 16000))}
    )

    assert (
        perturb_speed.main(["--factors", factors, str(data), str(tmp_path / "o")]) == 1
    )
    assert "--factors" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def dumped(tmp_path, seconds: dict, text: dict):
    wav = {
        u: str(tone(tmp_path / f"{u}.wav", 16000, seconds=s))
        for u, s in seconds.items()
    }
    data = write_data_dir(tmp_path / "data", wav, text=text)
    # Stage 3 refuses empty transcripts, so blank one after dumping, as a
    # user-edited dump directory might.
    dump_dir = tmp_path / "org"
    assert dump_audio.main([str(data), str(dump_dir)]) == 0
    return dump_dir


def test_filter_drops_short_long_and_empty(tmp_path, capsys):
    org = dumped(
        tmp_path,
        {"s-1": 0.05, "s-2": 1.0, "s-3": 3.0, "s-4": 1.0},
        {"s-1": "A", "s-2": "B", "s-3": "C", "s-4": "D"},
    )
    (org / "text").write_text("s-1 A\ns-2 B\ns-3 C\ns-4\n")
    out = tmp_path / "filtered"

    code = filter_utts.main(
        ["--min_duration", "0.1", "--max_duration", "2", str(org), str(out)]
    )

    assert code == 0
    assert read_table(out / "text") == {"s-2": "B"}
    assert list(read_table(out / "wav.scp")) == ["s-2"]
    assert read_table(out / "utt2num_samples") == {"s-2": "16000"}
    assert read_table(out / "spk2utt") == {"s": "s-2"}
    assert (out / "feats_type").read_text() == "raw\n"
    err = capsys.readouterr().err
    assert (
        "kept 1 of 4" in err
        and "1 shorter" in err
        and "1 longer" in err
        and "1 with empty" in err
    )


def test_filter_refuses_to_drop_everything(tmp_path, capsys):
    org = dumped(tmp_path, {"s-1": 0.5}, {"s-1": "A"})

    code = filter_utts.main(["--min_duration", "1", str(org), str(tmp_path / "f")])

    assert code == 1
    assert "no utterance is between 1.0 and 20.0 seconds" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


def test_filter_names_a_bad_length_line(tmp_path, capsys):
    org = dumped(tmp_path, {"s-1": 0.5, "s-2": 0.5}, {"s-1": "A", "s-2": "B"})
    (org / "utt2num_samples").write_text("s-1 8000\ns-2 many\n")

    assert filter_utts.main([str(org), str(tmp_path / "f")]) == 1
    assert f"{org / 'utt2num_samples'}:2" in capsys.readouterr().err


def write_text(tmp_path, lines):
    path = tmp_path / "text"
    path.write_text("".join(f"u{i:03d} {line}\n" for i, line in enumerate(lines)))
    return path


def test_char_token_list_layout(tmp_path):
    text = write_text(tmp_path, ["AB BA", "A C"])

    assert (
        make_token_list.main(
            ["--token_type", "char", str(text), str(tmp_path / "char")]
        )
        == 0
    )

    tokens = (tmp_path / "char" / "tokens.txt").read_text().split("\n")[:-1]
    # A x3, B x2, <space> x2 (tie: byte order), C x1.
    assert tokens == ["<blank>", "<unk>", "A", "<space>", "B", "C", "<sos/eos>"]


def test_bpe_token_list_has_nbpe_entries(tmp_path):
    text = write_text(
        tmp_path,
        ["THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"] * 5 + ["A B C D E"] * 5,
    )
    out = tmp_path / "bpe"

    assert make_token_list.main(["--nbpe", "30", str(text), str(out)]) == 0

    tokens = (out / "tokens.txt").read_text().split("\n")[:-1]
    assert len(tokens) == 30
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>"
    assert len(set(tokens)) == 30
    assert (out / "bpe.model").is_file()


def test_bpe_vocabulary_too_large_is_explained(tmp_path, capsys):
    text = write_text(tmp_path, ["A B"])

    assert (
        make_token_list.main(["--nbpe", "5000", str(text), str(tmp_path / "bpe")]) == 1
    )

    err = capsys.readouterr().err
    assert "--nbpe 5000" in err and "Vocabulary size too high" in err
    assert not (tmp_path / "bpe").exists() and not (tmp_path / "bpe.tmp").exists()
