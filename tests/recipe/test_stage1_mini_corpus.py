"""Mini corpus synthesis (local/make_mini_corpus.py): text, plan, audio, layout.

Needs the Debian packages the CI installs: flite, espeak-ng, sox and
r-cran-janeaustenr (with R)."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

import librispeech_data_prep as prep
import make_mini_corpus as mini
import pytest
import soundfile
from datadir import DataDirError

TINY = dict(
    hours=0.004, seed=3, nj=2, eval_fraction=0.1, min_eval_utts=2, show_progress=False
)


@pytest.fixture(scope="module")
def austen_sentences() -> list[mini.Sentence]:
    return mini.extract_sentences(mini.load_austen())


@pytest.fixture(scope="module")
def tiny_corpora(tmp_path_factory) -> tuple[Path, Path]:
    """The same tiny corpus built twice, in two places."""
    base = tmp_path_factory.mktemp("mini")
    first, second = base / "a" / "corpus", base / "b" / "corpus"
    assert mini.build_corpus(first, **TINY) is True
    assert mini.build_corpus(second, **TINY) is True
    return first, second


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------- text


def test_sentence_cleaning_keeps_speech_and_transcript_in_step(tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    book.write_text(
        "TITLE PAGE\n\nCHAPTER 1\n\nThis sentence in chapter one is excluded entirely.\n\n"
        "CHAPTER 2\n\n"
        'Mr. Knightley--a sensible man--was not pleased.  "Oh!" said she.  '
        "It was _very_ good-humoured of Mrs. Weston, was it not?\n"
        "He paid 30 pounds for it, which was far too much.  "
        "The letter was signed by Miss B. and nobody else at all.  "
        "Hers was a FINE house indeed, they all said.  "
        "'I cannot,' said Anne, 'think of going there today.'  "
        "A café of the régime was where they met for tea.\n"
    )
    sentences = mini.extract_sentences(
        mini.load_text_dir(tmp_path), excluded_chapters=frozenset({("book", 1)})
    )
    assert [(s.speakable, s.transcript, s.source) for s in sentences] == [
        (
            "Mister Knightley, a sensible man, was not pleased.",
            "MISTER KNIGHTLEY A SENSIBLE MAN WAS NOT PLEASED",
            "book:2",
        ),
        (
            "It was very good-humoured of Missus Weston, was it not?",
            "IT WAS VERY GOOD HUMOURED OF MISSUS WESTON WAS IT NOT",
            "book:2",
        ),
        (
            "I cannot, said Anne, think of going there today.",
            "I CANNOT SAID ANNE THINK OF GOING THERE TODAY",
            "book:2",
        ),
        (
            "A cafe of the regime was where they met for tea.",
            "A CAFE OF THE REGIME WAS WHERE THEY MET FOR TEA",
            "book:2",
        ),
    ]


def test_austen_text_excludes_the_librivox_chapter(austen_sentences) -> None:
    assert len(austen_sentences) > 15000
    assert not any(s.source == "sensesensibility:1" for s in austen_sentences)
    transcripts = " \n".join(s.transcript for s in austen_sentences)
    # Words read in the LibriVox clips of data/test_librivox.
    assert "MISTER JOHN DASHWOOD HAD THEN LEISURE TO CONSIDER" not in transcripts
    assert "HE MIGHT EVEN HAVE BEEN MADE AMIABLE HIMSELF" not in transcripts
    assert len({s.transcript for s in austen_sentences}) == len(austen_sentences)
    for s in austen_sentences[:2000]:
        assert 4 <= len(s.transcript.split()) <= 30


# --------------------------------------------------------------- plan


def test_plan_is_a_function_of_the_seed(austen_sentences) -> None:
    one = mini.plan_corpus(austen_sentences, 0.2, seed=7)
    again = mini.plan_corpus(austen_sentences, 0.2, seed=7)
    other = mini.plan_corpus(austen_sentences, 0.2, seed=8)
    assert one == again
    assert [j.sentence for j in one[1]] != [j.sentence for j in other[1]]
    assert [s.pitch for s in one[0]] != [s.pitch for s in other[0]]


def test_plan_keeps_sentences_and_voices_apart(austen_sentences) -> None:
    speakers, jobs = mini.plan_corpus(austen_sentences, 2.0, seed=1)
    by_subset = {name: [j for j in jobs if j.subset == name] for name in mini.SUBSETS}
    texts = {
        name: {j.sentence.transcript for j in js} for name, js in by_subset.items()
    }
    for a in mini.SUBSETS:
        for b in mini.SUBSETS:
            if a < b:
                assert not texts[a] & texts[b], (a, b)
    train_speakers = {j.speaker.id for j in by_subset["train-synth"]}
    train_voices = {j.speaker.voice for j in by_subset["train-synth"]}
    assert len(train_speakers) >= 12 and len(train_voices) >= 12
    assert {j.speaker.id for j in by_subset["dev-synth"]} <= train_speakers
    assert {j.speaker.id for j in by_subset["test-sentences-synth"]} <= train_speakers
    held = {j.speaker for j in by_subset["test-voices-synth"]}
    assert len(held) >= 2 and all(s.held_out for s in held)
    assert not {s.voice for s in held} & train_voices
    # ~2 h of training speech by the text-length estimate, ~12 min per eval set.
    est = {
        n: sum(
            mini._estimate_seconds(j.sentence, j.speed, j.pad_begin + j.pad_end)
            for j in js
        )
        for n, js in by_subset.items()
    }
    assert 7200 <= est["train-synth"] < 7200 + 60
    for name in ("dev-synth", "test-sentences-synth", "test-voices-synth"):
        assert 720 <= est[name] < 720 + 60
    # Speakers take turns: within an engine the training set is balanced, and
    # each flite speaker has FLITE_TRAIN_TURNS x an espeak-ng speaker's share.
    counts = Counter(j.speaker for j in by_subset["train-synth"])
    turns = mini.FLITE_TRAIN_TURNS
    flite = [n for s, n in counts.items() if s.voice.engine == "flite"]
    espeak = [n for s, n in counts.items() if s.voice.engine == "espeak-ng"]
    n_flite = sum(v.engine == "flite" for v in mini.TRAIN_VOICES)
    assert len(flite) == n_flite and len(espeak) == len(mini.TRAIN_VOICES) - n_flite
    assert max(flite) - min(flite) <= turns and max(espeak) - min(espeak) <= 1
    assert abs(sum(flite) / len(flite) - turns * sum(espeak) / len(espeak)) <= turns
    # The eval subsets stay one turn per speaker.
    for name in ("dev-synth", "test-sentences-synth", "test-voices-synth"):
        per_speaker = Counter(j.speaker.id for j in by_subset[name]).values()
        assert max(per_speaker) - min(per_speaker) <= 1, name


def test_flite_weighting_changes_only_the_training_set(
    austen_sentences, monkeypatch
) -> None:
    weighted = mini.plan_corpus(austen_sentences, 0.5, seed=3)
    monkeypatch.setattr(mini, "FLITE_TRAIN_TURNS", 1)
    even = mini.plan_corpus(austen_sentences, 0.5, seed=3)
    assert weighted[0] == even[0]  # the same speakers

    def split(jobs):
        train = [j for j in jobs if j.subset == "train-synth"]
        return train, [j for j in jobs if j.subset != "train-synth"]

    (train_w, eval_w), (train_e, eval_e) = split(weighted[1]), split(even[1])
    assert eval_w == eval_e
    share = [
        sum(j.speaker.voice.engine == "flite" for j in t) / len(t)
        for t in (train_w, train_e)
    ]
    assert share[0] > 1.5 * share[1]


def test_plan_rejects_impossible_sizes(austen_sentences) -> None:
    with pytest.raises(DataDirError, match="ran out of sentences"):
        mini.plan_corpus(austen_sentences[:50], 1.0, seed=1)
    with pytest.raises(DataDirError, match="--hours must be positive"):
        mini.plan_corpus(austen_sentences, 0, seed=1)


# --------------------------------------------------------------- corpus


def test_same_seed_gives_identical_corpus(tiny_corpora) -> None:
    first, second = tiny_corpora
    tree = _tree(first)
    assert tree == _tree(second)  # file list, transcripts and audio bytes
    assert any(name.endswith(".flac") for name in tree)


def test_layout_is_librispeech_and_audio_is_16k(tiny_corpora) -> None:
    root = tiny_corpora[0]
    assert (root / ".done").is_file()
    assert not root.with_name(root.name + ".tmp").exists()
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(mini.SUBSETS)
    for subset in mini.SUBSETS:
        transcripts = list((root / subset).glob("*/*/*.trans.txt"))
        assert transcripts, subset
        for trans in transcripts:
            speaker, chapter = trans.parent.parent.name, trans.parent.name
            assert trans.name == f"{speaker}-{chapter}.trans.txt"
            for line in trans.read_text().splitlines():
                utt, text = line.split(" ", 1)
                assert utt.startswith(f"{speaker}-{chapter}-")
                info = soundfile.info(str(trans.parent / f"{utt}.flac"))
                assert (info.samplerate, info.channels, info.subtype) == (
                    16000,
                    1,
                    "PCM_16",
                )
                assert 0.5 < info.duration < 20
                assert text == text.upper() and text.strip()
    speakers_txt = (root / "SPEAKERS.TXT").read_text()
    assert "flite" in speakers_txt and "espeak-ng" in speakers_txt
    assert "test-voices-synth" in (root / "README.TXT").read_text()


def test_no_digital_silence_and_noise_at_the_planned_snr(tiny_corpora) -> None:
    """Every file carries background noise: no run of exact zeros (which
    synthesizers write and microphones never record) and a noise floor in
    the planned speech-to-noise range."""
    import numpy as np

    files = sorted(tiny_corpora[0].rglob("*.flac"))
    for flac in files:
        samples, _ = soundfile.read(str(flac), dtype="int16")
        assert (samples == 0).mean() < 0.02, flac
    lead = [soundfile.read(str(f), dtype="float64")[0][:800] for f in files]
    assert min(np.sqrt(np.mean(x**2)) for x in lead) > 1e-5


def test_add_noise_hits_the_snr_and_is_seeded() -> None:
    import numpy as np

    t = np.arange(16000) / 16000
    speech = np.zeros(24000, dtype=np.int16)
    speech[4000:20000] = (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)
    for tilt in (0.0, 0.9):
        noisy = mini.add_noise(speech, 30.0, tilt, seed=7)
        noise = noisy.astype(np.float64) - speech
        voiced = speech[speech != 0].astype(np.float64)
        snr = 10 * np.log10(np.mean(voiced**2) / np.mean(noise**2))
        assert abs(snr - 30.0) < 0.5
        assert np.array_equal(noisy, mini.add_noise(speech, 30.0, tilt, seed=7))
        assert not np.array_equal(noisy, mini.add_noise(speech, 30.0, tilt, seed=8))


def test_corpus_reads_with_the_librispeech_prep(tiny_corpora, tmp_path: Path) -> None:
    root = tiny_corpora[0]
    texts = {}
    for subset in mini.SUBSETS:
        dst = tmp_path / subset
        prep.prepare([root / subset], dst, nj=2)
        texts[subset] = {
            line.split(" ", 1)[1] for line in (dst / "text").read_text().splitlines()
        }
    assert len(texts["test-sentences-synth"]) >= 2
    for a in mini.SUBSETS:
        for b in mini.SUBSETS:
            if a < b:
                assert not texts[a] & texts[b]
    lm = set((root / "austen-lm-norm.txt").read_text().splitlines())
    assert texts["train-synth"] <= lm
    assert not lm & (
        texts["dev-synth"] | texts["test-sentences-synth"] | texts["test-voices-synth"]
    )


def test_rerun_skips_and_other_parameters_refuse(tiny_corpora) -> None:
    root = tiny_corpora[0]
    before = _tree(root)
    assert mini.build_corpus(root, **TINY) is False
    assert _tree(root) == before
    with pytest.raises(DataDirError, match="was made with other parameters"):
        mini.build_corpus(root, **{**TINY, "seed": 4})


def test_interrupted_build_resumes(tmp_path: Path, tiny_corpora) -> None:
    root = tmp_path / "corpus"
    build = root.with_name("corpus.tmp")
    # Simulate an interrupted run: the finished corpus minus metadata and some audio.
    reference = tiny_corpora[0]
    shutil.copytree(reference, build)
    for extra in ("README.TXT", "SPEAKERS.TXT", "austen-lm-norm.txt", ".done"):
        (build / extra).unlink()
    for trans in build.rglob("*.trans.txt"):
        trans.unlink()
    flacs = sorted(build.rglob("*.flac"))
    for flac in flacs[::2]:
        flac.unlink()
    (build / ".params").write_text((reference / ".done").read_text())
    assert mini.build_corpus(root, **TINY) is True
    assert _tree(root) == _tree(reference)


def test_existing_unfinished_root_is_not_touched(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "mine.txt").write_text("user data")
    with pytest.raises(DataDirError, match="exists but is not a finished mini corpus"):
        mini.build_corpus(root, **TINY)
    assert (root / "mine.txt").read_text() == "user data"


def test_synthesis_failure_names_the_utterance(tmp_path: Path) -> None:
    bad = mini.Speaker(
        "101", mini.Voice("espeak-ng", "xx-no-such-voice", "M"), 50.0, 1.0, -3.0, False
    )
    sentence = mini.Sentence("It was a fine day.", "IT WAS A FINE DAY", "book:2")
    job = mini.Job(
        "train-synth",
        bad,
        "1101",
        "101-1101-0000",
        sentence,
        1.0,
        0.1,
        0.1,
        30.0,
        0.5,
        1,
    )
    out = tmp_path / "101-1101-0000.flac"
    with pytest.raises(
        DataDirError,
        match=r"espeak-ng failed for 101-1101-0000 \('It was a fine day.'\)",
    ):
        mini.synthesize(job, out, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no audio, no .part, no temporary wav


def test_missing_flite_voice_is_reported() -> None:
    speaker = mini.Speaker(
        "101", mini.Voice("flite", "no_such_voice", "M"), 1.0, 1.0, -3.0, False
    )
    with pytest.raises(DataDirError, match="flite has no voice 'no_such_voice'"):
        mini._check_tools([speaker])
