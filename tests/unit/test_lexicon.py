"""Lexicon-constrained CTC decoding with a word n-gram LM, and its binary."""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("flashlight.lib.text.decoder")

from espnet_shared_conformer.lexicon import (  # noqa: E402
    CTCLexiconDecoder,
    LexiconDecoderConfig,
    write_lexicon,
)
from espnet_shared_conformer.ngram import estimate_kneser_ney  # noqa: E402

TOKENS = ["<blank>", "<unk>", "<space>", "A", "C", "O", "T", "Q", "<sos/eos>"]


def emissions(frames):
    """Log posteriors (T, V) from a list of {token: probability} frames; the
    rest of each frame's mass is spread over the other tokens."""
    rows = []
    for frame in frames:
        rest = (1.0 - sum(frame.values())) / (len(TOKENS) - len(frame))
        rows.append([frame.get(t, rest) for t in TOKENS])
    return torch.tensor(rows).log()


def spelled(word_frames):
    """Frames that spell words confidently, with blanks and <space> between."""
    frames = [{"<blank>": 0.9}]
    for i, word in enumerate(word_frames):
        if i:
            frames += [{"<space>": 0.9}, {"<blank>": 0.9}]
        for frame in word:
            frames += [
                frame if isinstance(frame, dict) else {frame: 0.9},
                {"<blank>": 0.9},
            ]
    return emissions(frames)


@pytest.fixture
def lexicon(tmp_path):
    path = tmp_path / "lexicon.txt"
    write_lexicon(["CAT", "COT", "TACO", "CA", "CAT"], TOKENS, path)
    return path


def decoder(lexicon, lm=None, **config):
    return CTCLexiconDecoder(TOKENS, lexicon, lm, LexiconDecoderConfig(**config))


def test_write_lexicon_spells_in_tokens_and_skips_what_it_cannot(tmp_path):
    path = tmp_path / "lexicon.txt"
    written, skipped = write_lexicon(
        ["TACO", "CAT", "DOG", "CAT", "<unk>"], TOKENS, path
    )
    assert (written, skipped) == (2, ["DOG"])
    assert path.read_text() == "CAT C A T <space>\nTACO T A C O <space>\n"
    assert not (tmp_path / "lexicon.txt.tmp").exists()


def test_write_lexicon_needs_character_tokens(tmp_path):
    with pytest.raises(ValueError, match="no <space>.*--token_type char"):
        write_lexicon(
            ["CAT"], ["<blank>", "<unk>", "▁CAT", "<sos/eos>"], tmp_path / "x"
        )
    with pytest.raises(ValueError, match="no word of the text can be spelled"):
        write_lexicon(["DOG"], TOKENS, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_clean_emissions_decode_to_the_words(lexicon):
    words, ids, score = decoder(lexicon)(spelled(["CAT", "TACO"]))[0]
    assert words == ["CAT", "TACO"]
    assert [TOKENS[i] for i in ids] == list("CAT") + ["<space>"] + list("TACO")
    assert np.isfinite(score)


def test_the_last_word_is_complete_without_trailing_frames(lexicon):
    """ESPnet's character transcripts end without <space>: a word whose last
    letter is the last frame must still come out whole."""
    cat = [{"<blank>": 0.9}, {"C": 0.9}, {"<blank>": 0.9}, {"A": 0.9}, {"T": 0.9}]
    assert decoder(lexicon)(emissions(cat))[0][0] == ["CAT"]
    taco = [{"T": 0.9}, {"A": 0.9}, {"C": 0.9}, {"O": 0.9}]
    assert decoder(lexicon)(emissions(taco))[0][0] == ["TACO"]


def test_only_lexicon_words_come_out(lexicon):
    """Greedy CTC would read "CQT"; the nearest lexicon word is CAT."""
    log_probs = spelled([["C", {"Q": 0.6, "A": 0.3, "O": 0.05}, "T"]])
    greedy = [TOKENS[i] for i in log_probs.argmax(-1).tolist() if i != 0]
    assert greedy == ["C", "Q", "T"]
    assert decoder(lexicon)(log_probs)[0][0] == ["CAT"]


def test_the_word_lm_overrules_weak_acoustics(lexicon, tmp_path):
    """COT is acoustically a little likelier; an LM that has seen CAT often
    and COT once flips the decision, and only with weight."""
    lm = estimate_kneser_ney([["CAT"]] * 20 + [["COT"], ["TACO"], ["TACO"]], 2)
    arpa = tmp_path / "lm.arpa"
    lm.write_arpa(arpa)
    log_probs = spelled([["C", {"O": 0.5, "A": 0.4}, "T"]])
    assert decoder(lexicon, arpa, lm_weight=0.0)(log_probs)[0][0] == ["COT"]
    assert decoder(lexicon, arpa, lm_weight=2.0)(log_probs)[0][0] == ["CAT"]


def test_nbest_is_ordered(lexicon):
    results = decoder(lexicon, nbest=3, beam_size=10)(
        spelled([["C", {"O": 0.5, "A": 0.4}, "T"]])
    )
    assert [r[0] for r in results[:2]] == [["COT"], ["CAT"]]
    scores = [r[2] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_empty_input_decodes_to_nothing(lexicon):
    assert decoder(lexicon)(torch.zeros(0, len(TOKENS))) == [([], [], 0.0)]


@pytest.mark.parametrize(
    "content, message",
    [
        ("CAT C A T <space>\nDOG D O G <space>\n", "lexicon.txt:2: token 'D' of 'DOG'"),
        ("CAT\n", "lexicon.txt:1: no spelling for the word 'CAT'"),
        ("\n", "the lexicon is empty"),
    ],
)
def test_bad_lexicon_names_the_line(tmp_path, content, message):
    path = tmp_path / "lexicon.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        decoder(path)


def test_bad_arguments(lexicon, tmp_path):
    with pytest.raises(FileNotFoundError, match="word_lm_file: no such file"):
        decoder(lexicon, tmp_path / "missing.arpa")
    with pytest.raises(ValueError, match="must start with <blank>"):
        CTCLexiconDecoder(TOKENS[1:] + TOKENS[:1], lexicon)
    with pytest.raises(ValueError, match=re.escape("log_probs must be (T, 9)")):
        decoder(lexicon)(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="lexicon_beam_size \\(0\\)"):
        LexiconDecoderConfig(beam_size=0)
    with pytest.raises(ValueError, match="nbest \\(5\\)"):
        LexiconDecoderConfig(beam_size=4, nbest=5)


def test_search_options_are_defined_once_for_the_binary_and_the_loader():
    from espnet_shared_conformer import inference
    from espnet_shared_conformer.bin.asr_inference import get_parser

    parser = get_parser()
    fields = LexiconDecoderConfig.option_fields()
    for option, name in fields.items():
        assert parser.get_default(option) == getattr(LexiconDecoderConfig(), name)
    assert set(inference.LEXICON_OPTIONS) == {"lexicon_file", "word_lm_file", *fields}
    given = dict(lexicon_beam_size=7, word_score=0.5, beam_size=99)
    assert LexiconDecoderConfig.from_options(given, nbest=3) == LexiconDecoderConfig(
        beam_size=7, word_score=0.5, nbest=3
    )


def _tiny_model(tmp_path):
    """A seeded, untrained shared-conformer CTC model with character tokens."""
    from tiny_asr import build_tiny_model

    model, args = build_tiny_model(tmp_path, TOKENS)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))


def _inference(tmp_path, *extra):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_shared_conformer.bin.asr_inference",
            "--asr_train_config",
            str(tmp_path / "config.yaml"),
            "--asr_model_file",
            str(tmp_path / "model.pth"),
            "--data_path_and_name_and_type",
            f"{tmp_path / 'wav.scp'},speech,sound",
            "--output_dir",
            str(tmp_path / "decode"),
            "--ngpu",
            "0",
            "--batch_size",
            "1",
            *extra,
        ],
        capture_output=True,
        text=True,
    )


def test_inference_binary_decodes_with_the_lexicon(tmp_path, lexicon):
    """The wrapper's --lexicon_file path writes ESPnet's output files, one
    line per utterance, every word from the lexicon; options from --config."""
    import soundfile

    _tiny_model(tmp_path)
    rng = np.random.default_rng(0)
    lines = []
    for key in ("utt1", "utt2"):
        wav = tmp_path / f"{key}.wav"
        soundfile.write(wav, rng.standard_normal(12000).astype(np.float32) * 0.1, 16000)
        lines.append(f"{key} {wav}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    arpa = tmp_path / "lm.arpa"
    estimate_kneser_ney([["CAT", "TACO"], ["COT"]], 2).write_arpa(arpa)
    decode_config = tmp_path / "decode.yaml"
    decode_config.write_text("beam_size: 3\nlexicon_beam_size: 20\nword_score: 5.0\n")
    result = _inference(
        tmp_path,
        "--config",
        str(decode_config),
        "--lexicon_file",
        str(lexicon),
        "--word_lm_file",
        str(arpa),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "beam_size=20" in result.stderr and "word_score=5.0" in result.stderr
    # one "best hypo" line per utterance: the recipe counts them for progress
    assert result.stderr.count("best hypo: ") == 2
    best = tmp_path / "decode" / "1best_recog"
    texts = dict(
        line.split(" ", 1) for line in (best / "text").read_text().splitlines()
    )
    assert sorted(texts) == ["utt1", "utt2"]
    words = {w for text in texts.values() for w in text.split()}
    spelled = {line.split()[0] for line in lexicon.read_text().splitlines()}
    assert words and words <= spelled, f"{words - spelled} not in the lexicon"
    for name in ("token", "token_int", "score"):
        assert len((best / name).read_text().splitlines()) == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--lm_file", "lm.pth"],
            "--lexicon_file decodes with its word LM only; drop --lm_file",
        ),
        (["--batch_size", "2"], "--batch_size must be 1, not 2"),
    ],
)
def test_inference_binary_rejects_contradictions(tmp_path, lexicon, extra, message):
    (tmp_path / "wav.scp").write_text("")
    result = _inference(tmp_path, "--lexicon_file", str(lexicon), *extra)
    assert result.returncode == 1
    assert message in result.stderr


def test_word_lm_without_lexicon_is_an_error(tmp_path):
    (tmp_path / "wav.scp").write_text("")
    result = _inference(tmp_path, "--word_lm_file", "lm.arpa")
    assert result.returncode == 1
    assert "--word_lm_file needs --lexicon_file" in result.stderr
