"""Incremental CTC searches: fed in chunks of any size, each ends where its
offline counterpart does, and its partials make sense on the way."""

import itertools
import math

import numpy as np
import pytest
import torch

from espnet_shared_conformer.ctc_search import (
    GreedySearch,
    Hypothesis,
    PrefixBeamSearch,
    TokenText,
    Word,
    greedy_search,
    prefix_beam_search,
)

TOKENS = ["<blank>", "<unk>", "<space>", "A", "C", "O", "T", "Q", "<sos/eos>"]
SHIFT = 0.04  # 10 ms hops, subsampled 4 times
#: Chunk sizes: one frame at a time, a few fixed sizes, random sizes, whole.
CHUNKINGS = {
    "1": [1],
    "2": [2],
    "7": [7],
    "16": [16],
    "random": "random",
    "whole": [10_000],
}


def posteriors(frames: int, seed: int, blank_bias: float = 2.0) -> torch.Tensor:
    """CTC-like log posteriors (T, V): random, mostly blank, a few peaks."""
    generator = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(frames, len(TOKENS), generator=generator)
    logits[:, 0] += blank_bias
    return logits.log_softmax(dim=-1)


def chunks(log_probs: torch.Tensor, sizes, seed: int = 0):
    """``log_probs`` cut into consecutive chunks of the given sizes (repeated)."""
    if sizes == "random":
        rng = np.random.default_rng(seed)
        sizes = rng.integers(1, 12, size=len(log_probs)).tolist()
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(log_probs):
            return
        yield log_probs[start : start + size]
        start += size


def stream(search, log_probs, sizes, seed: int = 0):
    """(final hypothesis, partials after each chunk) of one utterance."""
    search.begin()
    partials = []
    for chunk in chunks(log_probs, sizes, seed):
        search.step(chunk)
        partials.append(search.partial())
    return search.end(), partials


def spelled(text: str, repeat: int = 1) -> torch.Tensor:
    """Confident frames spelling ``text`` (space: <space>), a blank between
    letters; each letter on ``repeat`` frames."""
    frames = ["<blank>"]
    for ch in text:
        frames += [ch if ch != " " else "<space>"] * repeat + ["<blank>"]
    rows = torch.full((len(frames), len(TOKENS)), 0.02)
    for t, token in enumerate(frames):
        rows[t, TOKENS.index(token)] = 0.9
    return (rows / rows.sum(1, keepdim=True)).log()


# ---------------------------------------------------------------- greedy


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS)
def test_greedy_in_chunks_is_the_offline_greedy(sizes, seed):
    log_probs = posteriors(97, seed)
    offline = greedy_search(log_probs, TOKENS, SHIFT)
    final, partials = stream(GreedySearch(TOKENS, SHIFT), log_probs, sizes, seed)

    assert offline.token_ids  # something was said
    assert (final.text, final.token_ids, final.words) == (
        offline.text,
        offline.token_ids,
        offline.words,
    )
    assert final.score == pytest.approx(offline.score, abs=1e-9)
    for partial in partials:  # greedy never takes back what it said
        assert final.token_ids[: len(partial.token_ids)] == partial.token_ids
        assert final.text.startswith(partial.text)


def test_greedy_reads_words_and_their_times():
    log_probs = spelled("CAT TACO", repeat=2)
    result = greedy_search(log_probs, TOKENS, SHIFT)

    assert result.text == "CAT TACO"
    # Frames: blank, C C blank, A A blank, T T blank, <space> ..., T at 13.
    assert result.words == (
        Word("CAT", 1 * SHIFT, 8 * SHIFT),
        Word("TACO", 13 * SHIFT, 23 * SHIFT),
    )
    assert result.score == pytest.approx(len(log_probs) * math.log(0.9 / 1.06))


def test_greedy_merges_repeats_unless_a_blank_separates_them():
    rows = torch.full((5, len(TOKENS)), -10.0)
    for t, token in enumerate(["A", "A", "<blank>", "A", "A"]):
        rows[t, TOKENS.index(token)] = 0.0
    assert greedy_search(rows, TOKENS, SHIFT).text == "AA"
    search = GreedySearch(TOKENS, SHIFT)
    search.begin()
    for t in range(5):  # a repeat split across chunks is still one token
        search.step(rows[t : t + 1])
    assert search.end().text == "AA"


# ---------------------------------------------------------------- prefix search


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS)
def test_prefix_search_in_chunks_is_the_offline_search(sizes, seed):
    log_probs = posteriors(97, seed)
    offline = prefix_beam_search(log_probs, TOKENS, SHIFT, beam_size=6)
    final, partials = stream(
        PrefixBeamSearch(TOKENS, SHIFT, beam_size=6), log_probs, sizes, seed
    )

    assert offline.token_ids
    assert final == offline  # text, tokens, word times and score, exactly
    assert all(isinstance(p, Hypothesis) for p in partials)
    # The last partial is the final: ending adds nothing in CTC.
    assert partials[-1] == final


def _exact_labelings(log_probs: torch.Tensor) -> dict:
    """log P(labeling) of every labeling, by summing all T^V alignments."""
    probs = log_probs.double().exp()
    totals: dict = {}
    frames, vocab = probs.shape
    for path in itertools.product(range(vocab), repeat=frames):
        labels = tuple(
            token
            for i, token in enumerate(path)
            if token != 0 and (i == 0 or token != path[i - 1])
        )
        p = math.prod(probs[t, token].item() for t, token in enumerate(path))
        totals[labels] = totals.get(labels, 0.0) + p
    return {labels: math.log(p) for labels, p in totals.items()}


@pytest.mark.parametrize("seed", range(4))
def test_prefix_search_with_a_full_beam_is_exact(seed):
    """Every labeling's probability, against the sum over all alignments."""
    tokens = ["<blank>", "A", "B"]
    log_probs = (
        torch.randn(5, 3, generator=torch.Generator().manual_seed(seed))
        .log_softmax(-1)
        .double()
    )
    exact = _exact_labelings(log_probs)
    search = PrefixBeamSearch(tokens, SHIFT, beam_size=len(exact), token_beam=3)
    search.begin()
    search.step(log_probs)

    found = {h.token_ids: h.score for h in search.nbest()}
    assert found.keys() == exact.keys()
    for labels, score in exact.items():
        assert found[labels] == pytest.approx(score, abs=1e-9)
    best = max(exact, key=exact.get)
    assert search.end().token_ids == best


def test_prefix_search_sums_alignments_where_greedy_takes_one_path():
    """Blank is each frame's best (greedy: nothing), but the alignments of "A"
    together are likelier (0.64 against 0.36)."""
    rows = torch.tensor([[0.6, 0.4]] * 2).log()
    tokens = ["<blank>", "A"]

    assert greedy_search(rows, tokens, SHIFT).text == ""
    best = prefix_beam_search(rows, tokens, SHIFT, beam_size=4)
    assert best.text == "A" and best.score == pytest.approx(math.log(0.64))


def test_prefix_search_times_its_words():
    result = prefix_beam_search(spelled("CAT TACO", repeat=2), TOKENS, SHIFT)

    assert result.text == "CAT TACO"
    assert result.words == (
        Word("CAT", 1 * SHIFT, 8 * SHIFT),
        Word("TACO", 13 * SHIFT, 23 * SHIFT),
    )


def test_prefix_search_times_a_token_by_its_likeliest_emission():
    """ "A" is likelier at frame 0 than nothing, but the mass of the label
    sequence "A" comes to lie mostly on the paths that emit it at frame 4."""
    frames = [[0.4, 0.6], *[[0.95, 0.05]] * 3, [0.1, 0.9], [0.9, 0.1]]
    search = PrefixBeamSearch(["<blank>", "A"], SHIFT, beam_size=8)
    search.begin()
    search.step(torch.tensor(frames).log())
    hypotheses = {h.text: h for h in search.nbest()}

    assert hypotheses["A"].words == (Word("A", 4 * SHIFT, 5 * SHIFT),)
    assert hypotheses["AA"].words == (Word("AA", 0.0, 5 * SHIFT),)


def test_a_search_object_decodes_one_utterance_after_another():
    search = PrefixBeamSearch(TOKENS, SHIFT, beam_size=4)
    first, second = posteriors(40, 5), posteriors(50, 6)
    for log_probs in (first, second, first):
        search.begin()
        search.step(log_probs)
        assert search.end() == prefix_beam_search(log_probs, TOKENS, SHIFT, 4)


# ---------------------------------------------------------------- words


def test_sentencepiece_pieces_make_words_at_their_marks():
    tokens = ["<blank>", "<unk>", "\u2581THE", "\u2581C", "AT", "S", "\u2581"]
    text = TokenText(tokens, 0.1)
    words = text.words([2, 3, 4, 5, 6, 3], [0, 2, 3, 5, 7, 8])

    assert words == [
        Word("THE", 0.0, pytest.approx(0.1)),
        Word("CATS", pytest.approx(0.2), pytest.approx(0.6)),
        Word("C", pytest.approx(0.8), pytest.approx(0.9)),
    ]


# ---------------------------------------------------------------- errors


def test_bad_input_is_refused_with_its_name():
    search = GreedySearch(TOKENS, SHIFT)
    with pytest.raises(RuntimeError, match="step\\(\\) before begin\\(\\)"):
        search.step(posteriors(3, 0))
    search.begin()
    with pytest.raises(ValueError, match=r"log_probs must be \(T, 9\) .* not \(3, 5\)"):
        search.step(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"not \(1, 3, 9\)"):
        search.step(torch.zeros(1, 3, 9))
    with pytest.raises(ValueError, match="beam_size \\(0\\) must be at least 1"):
        PrefixBeamSearch(TOKENS, SHIFT, beam_size=0)
    with pytest.raises(ValueError, match="token_beam \\(0\\) must be at least 1"):
        PrefixBeamSearch(TOKENS, SHIFT, token_beam=0)
    with pytest.raises(ValueError, match="frame_shift \\(0\\) must be positive"):
        GreedySearch(TOKENS, 0)
    with pytest.raises(ValueError, match="must start with <blank>"):
        GreedySearch(TOKENS[1:], SHIFT)


def test_no_frames_is_no_words():
    for search in (GreedySearch(TOKENS, SHIFT), PrefixBeamSearch(TOKENS, SHIFT)):
        search.begin()
        assert search.partial().text == ""
        result = search.end()
        assert (result.text, result.token_ids, result.words) == ("", (), ())
    assert greedy_search(torch.zeros(0, len(TOKENS)), TOKENS, SHIFT).score == 0.0


# ---------------------------------------------------------------- lexicon


@pytest.fixture
def lexicon_decoder(tmp_path):
    """Builds lexicon decoders over CAT, COT, TACO, CA, OCTA and a word bigram."""
    pytest.importorskip("flashlight.lib.text.decoder")
    from espnet_shared_conformer.lexicon import (
        CTCLexiconDecoder,
        LexiconDecoderConfig,
        write_lexicon,
    )
    from espnet_shared_conformer.ngram import estimate_kneser_ney

    lexicon = tmp_path / "lexicon.txt"
    write_lexicon(["CAT", "COT", "TACO", "CA", "OCTA"], TOKENS, lexicon)
    arpa = tmp_path / "lm.arpa"
    estimate_kneser_ney([["CAT", "TACO"], ["COT", "CAT"], ["TACO"]], 2).write_arpa(arpa)

    def build(word_lm: bool = True, **config):
        return CTCLexiconDecoder(
            TOKENS, lexicon, arpa if word_lm else None, LexiconDecoderConfig(**config)
        )

    return build


def _noisy(text: str, seed: int) -> torch.Tensor:
    """Spelled frames of ``text`` blurred by noise: the search has choices."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(spelled(text)), len(TOKENS), generator=generator)
    return (spelled(text) + 1.5 * noise).log_softmax(-1)


@pytest.mark.parametrize("word_lm", [True, False], ids=["word LM", "no LM"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS)
def test_lexicon_search_in_chunks_is_the_offline_decoder(
    lexicon_decoder, sizes, seed, word_lm
):
    from espnet_shared_conformer.ctc_search import LexiconSearch

    log_probs = _noisy("CAT TACO COT", seed)
    decoder = lexicon_decoder(word_lm, beam_size=8, beam_threshold=10.0)
    words, ids, score = decoder(log_probs)[0]
    final, partials = stream(LexiconSearch(decoder, SHIFT), log_probs, sizes, seed)

    assert words  # something was said
    assert final.text == " ".join(words)
    assert list(final.token_ids) == ids
    assert final.score == score
    assert [w.word for w in final.words] == words
    for partial in partials:  # completed words, all of them lexicon words
        assert set(partial.text.split()) <= {"CAT", "COT", "TACO", "CA", "OCTA"}


def test_lexicon_search_times_words_and_settles_them_at_the_space(lexicon_decoder):
    from espnet_shared_conformer.ctc_search import LexiconSearch

    log_probs = spelled("CAT TACO", repeat=2)
    search = LexiconSearch(lexicon_decoder(), SHIFT)
    search.begin()
    search.step(log_probs[:10])  # up to CAT's last letter and the blank after
    assert search.partial().words == ()
    search.step(log_probs[10:13])  # its <space>
    assert [w.word for w in search.partial().words] == ["CAT"]
    search.step(log_probs[13:])
    result = search.end()

    assert result.text == "CAT TACO"
    assert result.words == (
        Word("CAT", 1 * SHIFT, 8 * SHIFT),
        Word("TACO", 13 * SHIFT, 23 * SHIFT),
    )


def test_lexicon_search_of_no_frames_is_the_offline_nothing(lexicon_decoder):
    from espnet_shared_conformer.ctc_search import LexiconSearch

    decoder = lexicon_decoder()
    search = LexiconSearch(decoder, SHIFT)
    search.begin()
    assert search.end() == Hypothesis("", (), (), 0.0)
    assert decoder(torch.zeros(0, len(TOKENS))) == [([], [], 0.0)]
    # The decoder is ready for the next utterance.
    log_probs = spelled("TACO")
    search.begin()
    search.step(log_probs)
    assert search.end().text == "TACO" == " ".join(decoder(log_probs)[0][0])


def test_greedy_and_prefix_beam_search_numpy_without_torch():
    """What a device without torch runs: numpy log posteriors in, the same
    hypotheses as from torch ones, and no torch imported."""
    import json
    import subprocess
    import sys

    log_probs = posteriors(60, seed=11)
    script = f"""
import json, sys
import numpy as np
from espnet_shared_conformer import ctc_search
rows = np.array({log_probs.tolist()!r}, dtype=np.float32)
tokens = {TOKENS!r}
greedy = ctc_search.GreedySearch(tokens, {SHIFT})
greedy.begin()
for chunk in np.array_split(rows, 7):
    greedy.step(chunk)
beam = ctc_search.prefix_beam_search(rows, tokens, {SHIFT}, beam_size=4)
heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "torchaudio")]
print(json.dumps([greedy.end().token_ids, beam.token_ids, heavy]))
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    greedy_ids, beam_ids, heavy = json.loads(run.stdout)
    assert heavy == []
    assert tuple(greedy_ids) == greedy_search(log_probs, TOKENS, SHIFT).token_ids
    expected = prefix_beam_search(log_probs, TOKENS, SHIFT, beam_size=4).token_ids
    assert tuple(beam_ids) == expected and len(expected) > 3
