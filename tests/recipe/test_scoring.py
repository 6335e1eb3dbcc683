"""Stage 13: sclite's counts for hand-made pairs, trn files, RESULTS.md."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pipeline_helpers import UTILS_DIR, local_module, run

make_results = local_module("make_results")
score_sclite = local_module("score_sclite")


pytestmark = pytest.mark.skipif(
    not any(
        shutil.which(p) or Path(p).exists()
        for p in ("sclite", "/usr/lib/sctk/bin/sclite")
    ),
    reason="sclite (Debian sctk) is not installed",
)

REF = {
    "s1-u1": "THE CAT SAT ON THE MAT",  # hyp drops one THE: 1 deletion
    "s1-u2": "HELLO WORLD AGAIN",  # hyp adds BIG: 1 insertion
    "s2-u3": "A B C D",  # hyp says X for B: 1 substitution
    "s2-u4": "ONE TWO",  # hyp is empty: 2 deletions
}
HYP = {
    "s1-u1": "THE CAT SAT ON MAT",
    "s1-u2": "HELLO BIG WORLD AGAIN",
    "s2-u3": "A X C D",
    "s2-u4": "",
}


def write_text(path: Path, rows: dict) -> Path:
    path.write_text(
        "".join(f"{k} {v}\n" if v else f"{k}\n" for k, v in sorted(rows.items()))
    )
    return path


@pytest.fixture
def scored(tmp_path):
    ref = write_text(tmp_path / "ref", REF)
    hyp = write_text(tmp_path / "hyp", HYP)
    utt2spk = write_text(tmp_path / "utt2spk", {u: u.split("-")[0] for u in REF})
    summaries = score_sclite.score(ref, hyp, tmp_path / "decode", utt2spk_path=utt2spk)
    return tmp_path / "decode", summaries


def test_word_counts_are_sclites(scored):
    _, summaries = scored
    wer = summaries["wer"]

    assert (wer["Snt"], wer["Wrd"]) == (4, 15)
    assert (wer["n_Corr"], wer["n_Sub"], wer["n_Del"], wer["n_Ins"]) == (11, 1, 3, 1)
    assert wer["n_Err"] == 5
    assert wer["Err"] == pytest.approx(33.3)
    assert wer["S.Err"] == 100.0


def test_character_counts(scored):
    cer = scored[1]["cer"]
    # 22 + 17 + 7 + 7 characters, a space is one <space> token.
    assert cer["Wrd"] == 53
    # THE and its space deleted (4), " BIG" inserted (4), B -> X (1),
    # "ONE TWO" deleted (7).
    assert (cer["n_Sub"], cer["n_Del"], cer["n_Ins"]) == (1, 11, 4)


def test_trn_files_carry_speaker_and_utterance(scored):
    decode, _ = scored
    ref = (decode / "score_wer" / "ref.trn").read_text().splitlines()
    hyp = (decode / "score_wer" / "hyp.trn").read_text().splitlines()
    cer_ref = (decode / "score_cer" / "ref.trn").read_text().splitlines()

    assert ref[0] == "THE CAT SAT ON THE MAT (s1-s1-u1)"
    assert hyp[3] == " (s2-s2-u4)"
    assert cer_ref[2] == "A <space> B <space> C <space> D (s2-s2-u3)"
    assert (
        "SYSTEM SUMMARY PERCENTAGES by SPEAKER"
        in (decode / "score_wer" / "result.txt").read_text()
    )
    assert not (decode / "score_ter").exists()  # no sentencepiece model given


def test_token_error_rate_on_sentencepiece_pieces(tmp_path):
    import sentencepiece as spm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(list(REF.values()) * 20) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(tmp_path / "bpe"),
        vocab_size=20,
        model_type="unigram",
        minloglevel=2,
    )
    model = spm.SentencePieceProcessor(model_file=str(tmp_path / "bpe.model"))
    ref = write_text(tmp_path / "ref", REF)

    ter = score_sclite.score(
        ref, ref, tmp_path / "d", bpemodel=str(tmp_path / "bpe.model")
    )["ter"]

    pieces = sum(len(model.encode(t, out_type=str)) for t in REF.values())
    assert (ter["Wrd"], ter["n_Corr"], ter["Err"]) == (pieces, pieces, 0.0)


def test_missing_hypothesis_names_the_reference_line(tmp_path):
    ref = write_text(tmp_path / "ref", REF)
    hyp = write_text(tmp_path / "hyp", {k: v for k, v in HYP.items() if k != "s1-u2"})

    result = run(
        [
            "python",
            UTILS_DIR / "score_sclite.py",
            "--ref",
            ref,
            "--hyp",
            hyp,
            tmp_path / "d",
        ]
    )

    assert result.returncode == 1
    assert f"{ref}:2: utterance 's1-u2' has no hypothesis" in result.stderr
    assert not (tmp_path / "d" / "score_wer").exists()


def test_results_md_has_espnets_table_format(scored, tmp_path):
    decode, _ = scored
    exp = tmp_path / "exp"
    (exp / "decode_asr_model").mkdir(parents=True)
    shutil.move(str(decode), exp / "decode_asr_model" / "test_clean")

    text = make_results.render(exp, make_results.collect(exp))

    lines = text.splitlines()
    assert lines[1] == "# RESULTS"
    assert lines[2] == "## Environments"
    assert re.search(r"^- espnet version: `espnet \S+`$", text, flags=re.M)
    assert re.search(r"^- pytorch version: `pytorch \S+`$", text, flags=re.M)
    assert f"## {exp.as_posix()}" in lines
    wer = lines.index("### WER")
    assert lines[wer + 1 : wer + 5] == [
        "",
        "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|",
        "|---|---|---|---|---|---|---|---|---|",
        "|decode_asr_model/test_clean|4|15|73.3|6.7|20.0|6.7|33.3|100.0|",
    ]
    assert "### CER" in lines
    assert "### TER" not in lines


def test_parse_result_reads_sums_and_percentages(tmp_path):
    result = tmp_path / "result.txt"
    result.write_text(
        "       | SPKR   | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |\n"
        "       | Sum/Avg| 2620  52576 | 97.6    2.2    0.2    0.3    2.7   31.5 |\n"
        "        | Sum  | 2620  52576 | 51314   1157    105    158   1420    825 |\n"
    )

    parsed = score_sclite.parse_result(result)

    assert parsed["Corr"] == 97.6 and parsed["S.Err"] == 31.5
    assert (parsed["n_Sub"], parsed["n_Del"], parsed["n_Ins"]) == (1157, 105, 158)


def test_make_results_without_scores_fails(tmp_path):
    result = run(["python", UTILS_DIR / "make_results.py", tmp_path])

    assert result.returncode == 1
    assert "no */*/score_*/result.txt" in result.stderr
