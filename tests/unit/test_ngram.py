"""The Kneser-Ney word n-gram estimator and its ARPA files."""

import math
import re
import subprocess
import sys

import pytest

from espnet_shared_conformer.ngram import (
    BOS,
    EOS,
    UNK,
    estimate_kneser_ney,
    read_kaldi_text,
)

TEXT = [
    "THE CAT SAT ON THE MAT",
    "THE DOG SAT ON THE LOG",
    "A CAT AND A DOG",
    "THE CAT SAW THE DOG",
    "IN SAN FRANCISCO THE FOG ROLLS IN",
    "SAN FRANCISCO IS FAR",
    "THE FOG IS IN SAN FRANCISCO",
    "A DOG IS ON A LOG",
]
SENTENCES = [line.split() for line in TEXT]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize(
    "context",
    [(), ("THE",), ("SAN",), ("ZEBRA",), (BOS,), ("THE", "CAT"), ("ON", "THE")],
)
def test_every_context_is_a_distribution(order, context):
    lm = estimate_kneser_ney(SENTENCES, order)
    predictable = [w for w in lm.vocabulary if w != BOS]
    assert EOS in predictable and UNK in predictable
    total = sum(lm.probability(w, context) for w in predictable)
    assert total == pytest.approx(1.0, abs=1e-9)
    assert lm.probability(BOS, context) == 0.0


def test_continuation_counts_lower_words_seen_in_one_context():
    """Kneser-Ney's point: FRANCISCO follows only SAN, so as a unigram it is
    rarer than IS, which is as frequent but follows three different words."""
    lm = estimate_kneser_ney(SENTENCES, 2)
    raw = {w: sum(s.count(w) for s in SENTENCES) for w in ("FRANCISCO", "IS")}
    assert raw["FRANCISCO"] == raw["IS"] == 3
    assert lm.probability("FRANCISCO", ("ZEBRA",)) < lm.probability("IS", ("ZEBRA",))
    # ... while after SAN it is by far the likeliest word.
    assert lm.probability("FRANCISCO", ("SAN",)) > 0.5


def test_unknown_words_score_as_unk():
    lm = estimate_kneser_ney(SENTENCES, 3)
    assert lm.probability("ZEBRA", ("THE",)) == lm.probability(UNK, ("THE",)) > 0


def test_arpa_file_scores_as_kenlm_reads_it(tmp_path):
    """flashlight's KenLM reads the file back and scores every word of
    held-out sentences as the estimator does (log10, backoff included)."""
    kenlm_module = pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    dictionary = pytest.importorskip("flashlight.lib.text.dictionary")
    lm = estimate_kneser_ney(SENTENCES, 3)
    arpa = tmp_path / "lm.arpa"
    lm.write_arpa(arpa)
    assert not (tmp_path / "lm.arpa.tmp").exists()
    words = dictionary.Dictionary()
    for w in lm.vocabulary:
        words.add_entry(w)
    kenlm = kenlm_module.KenLM(str(arpa), words)
    for sentence in (
        ["THE", "CAT", "SAT", "ON", "THE", "LOG"],
        ["SAN", "FRANCISCO", "DOG"],
    ):
        state = kenlm.start(False)
        history = [BOS]
        for w in sentence:
            state, score = kenlm.score(state, words.get_index(w))
            assert score == pytest.approx(
                math.log10(lm.probability(w, history)), abs=1e-5
            )
            history.append(w)
        state, score = kenlm.finish(state)
        assert score == pytest.approx(
            math.log10(lm.probability(EOS, history)), abs=1e-5
        )


def test_arpa_header_counts_match_sections(tmp_path):
    lm = estimate_kneser_ney(SENTENCES, 3)
    lm.write_arpa(tmp_path / "lm.arpa")
    lines = (tmp_path / "lm.arpa").read_text().splitlines()
    for n in (1, 2, 3):
        declared = int(
            next(x for x in lines if x.startswith(f"ngram {n}=")).split("=")[1]
        )
        start = lines.index(f"\\{n}-grams:") + 1
        entries = lines[start : lines.index("", start)]
        assert len(entries) == declared == len(lm.prob[n])
        assert all(len(e.split("\t")[1].split()) == n for e in entries)
    assert lines[-1] == "\\end\\"


@pytest.mark.parametrize(
    "sentences, order, message",
    [
        (SENTENCES, 0, "order (0) must be at least 1"),
        ([["THE", "<s>", "CAT"]], 2, "sentence 1 contains the reserved symbol <s>"),
        ([[], []], 2, "no words"),
    ],
)
def test_bad_input_is_rejected(sentences, order, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        estimate_kneser_ney(sentences, order)


def test_read_kaldi_text_names_an_empty_line(tmp_path):
    text = tmp_path / "text"
    text.write_text("u1 A B\n\nu3 C\n")
    with pytest.raises(ValueError, match=r"text:2: empty line"):
        read_kaldi_text(text)
    text.write_text("u1 A B\nu2\n")
    assert read_kaldi_text(text) == [["A", "B"], []]


def test_command_line(tmp_path):
    text = tmp_path / "text"
    text.write_text("".join(f"u{i} {line}\n" for i, line in enumerate(TEXT)))
    arpa = tmp_path / "out" / "lm.arpa"
    run = [sys.executable, "-m", "espnet_shared_conformer.ngram", "--order", "2"]
    ok = subprocess.run(
        run + ["--text", str(text), "--arpa", str(arpa)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "ngram 2=" in arpa.read_text()
    missing = subprocess.run(
        run + ["--text", str(tmp_path / "nope"), "--arpa", str(tmp_path / "x.arpa")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "nope" in missing.stderr
    assert not (tmp_path / "x.arpa").exists()
