"""Streaming recognition: the recognizer, its command and stage 12's decoding.

Endpointing is pinned on a made-up encoder whose every output frame is a
token written into the input. The rest runs a tiny streaming model (causal,
chunks of 4 frames, 2 left chunks) that learned to hear TEXT said in tones
(``tiny_asr.streaming_utterance``): a stream decodes as the masked forward of
the same model decodes the same stretch of input, a 3-minute stream in
bounded memory, the command prints what the recognizer gives, and
``asr_inference --streaming true`` writes it.
"""

import contextlib
import copy
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("flashlight.lib.text.decoder")

from tiny_asr import (  # noqa: E402
    FS,
    TEXT,
    streaming_utterance,
    train_tiny_ctc_model,
)

from espnet_shared_conformer.ctc_search import (  # noqa: E402
    GreedySearch,
    greedy_search,
    prefix_beam_search,
)
from espnet_shared_conformer.recognizer import (  # noqa: E402
    ChunkEncoder,
    Endpointing,
    StreamingRecognizer,
    TorchChunkEncoder,
    Utterance,
    make_search,
)

TRANSCRIBE = [sys.executable, "-m", "espnet_shared_conformer.bin.transcribe"]

# -- endpointing, on a made-up encoder ----------------------------------------

FAKE_TOKENS = ["<blank>", "<unk>", "<space>", "A", "B", "C"]
SHIFT = 0.04


class TokenFeatures:
    """Features that are the samples: each sample one frame of one value."""

    dim = 1
    hop_length = 1

    def begin(self) -> None:
        pass

    def step(self, samples) -> np.ndarray:
        return np.asarray(samples, dtype=np.float32).reshape(-1, 1)

    def end(self) -> np.ndarray:
        return np.zeros((0, 1), dtype=np.float32)


class TokenEncoder:
    """A :class:`ChunkEncoder` like conv2d's front end (output frame t reads
    input frames 2t .. 2t + 2) whose output frame t is sure of token
    ``input[2t]``. Counts the streams it starts."""

    chunk_size = 2
    stride = 2
    window = 3

    def __init__(self) -> None:
        self.starts = 0

    def init_state(self) -> np.ndarray:
        self.starts += 1
        return np.zeros((0, 1), dtype=np.float32)

    def forward_chunk(self, feats, state, final=False):
        frames = np.concatenate([state, feats])
        ready = (len(frames) - self.window) // self.stride + 1
        ready = max(ready, 0)
        count = ready if final else ready - ready % self.chunk_size
        tokens = frames[: self.stride * count : self.stride, 0].astype(int)
        log_probs = np.full((count, len(FAKE_TOKENS)), np.log(0.02), np.float32)
        log_probs[np.arange(count), tokens] = np.log(0.9)
        return log_probs, frames[self.stride * count :]


def said(tokens: str) -> np.ndarray:
    """Input whose output frames are ``tokens`` ('.' blank, letters tokens)."""
    ids = [0 if c == "." else FAKE_TOKENS.index(c) for c in tokens]
    # Each output frame reads 2 new input frames; the window needs 1 more.
    return np.array([i for i in ids for _ in range(2)] + [0], dtype=np.float32)


def fake_recognizer(endpointing: Endpointing) -> StreamingRecognizer:
    return StreamingRecognizer(
        TokenFeatures(),
        TokenEncoder(),
        GreedySearch(FAKE_TOKENS, SHIFT),
        endpointing,
    )


def run(
    recognizer: StreamingRecognizer, samples: np.ndarray, sizes: Sequence[int]
) -> Tuple[List[Utterance], Utterance]:
    """Feed ``samples`` in blocks of ``sizes`` (cycled): finals and last."""
    finals, start, i = [], 0, 0
    while start < len(samples):
        block = samples[start : start + sizes[i % len(sizes)]]
        finals += recognizer.feed(block).finals
        start += len(block)
        i += 1
    return finals, recognizer.finish()


def summary(utterances: Sequence[Utterance]) -> List[Tuple[str, float, float]]:
    return [(u.text, round(u.start, 6), round(u.end, 6)) for u in utterances]


def test_the_made_up_encoder_has_the_interface():
    assert isinstance(TokenEncoder(), ChunkEncoder)


def test_a_pause_after_speech_ends_an_utterance_at_its_chunk():
    """4 blank frames (0.16 s) after speech: the cut comes after the chunk in
    which the 4th blank is, and the next utterance goes on from there."""
    recognizer = fake_recognizer(Endpointing(silence=0.16, max_utterance=0))
    # Frames: A B | . . | . . | . C | . . (chunks of 2)
    finals, last = run(recognizer, said("AB.....C.."), [1000])

    assert summary(finals) == [("AB", 0.0, 0.24)]  # the blank run is 4 at frame 5
    assert summary([last]) == [("C", 0.24, 0.4)]
    assert last.words[0].start == pytest.approx(0.28)  # stream time, not 0.04
    assert finals[0].final and last.final


def test_a_pause_is_counted_in_whole_frames():
    """0.28 s is 7 frames of 0.04 s (not 8: 0.28 / 0.04 is 7.000000000000001)."""
    recognizer = fake_recognizer(Endpointing(silence=0.28, max_utterance=0))
    finals, _ = run(recognizer, said("A.........B"), [100])
    assert summary(finals) == [("A", 0.0, 0.32)]  # the 7th blank is frame 7


def test_finish_ends_the_last_utterance_whatever_endpointing_says():
    """The flush's frames reach the maximum, and still belong to the last."""
    recognizer = fake_recognizer(Endpointing(silence=0, max_utterance=0.04))
    finals, last = run(recognizer, said("A.B"), [100])
    # Frames 0-1 come as a chunk (cut: max_utterance), frame 2 with finish().
    assert summary(finals) == [("A", 0.0, 0.08)]
    assert summary([last]) == [("B", 0.08, 0.12)]


def test_a_pause_before_any_speech_ends_nothing():
    recognizer = fake_recognizer(Endpointing(silence=0.16, max_utterance=0))
    finals, last = run(recognizer, said("............A"), [7])

    assert finals == []
    assert summary([last]) == [("A", 0.0, 0.52)]


def test_a_long_utterance_is_cut_at_the_chunk_that_reaches_the_maximum():
    """0.2 s is 5 frames; the cut comes after the chunk holding frame 5."""
    recognizer = fake_recognizer(Endpointing(silence=0, max_utterance=0.2))
    finals, last = run(recognizer, said("ABABABABABABABA"), [5])

    assert summary(finals) == [
        ("ABABAB", 0.0, 0.24),
        ("ABABAB", 0.24, 0.48),
    ]
    assert summary([last]) == [("ABA", 0.48, 0.6)]


@pytest.mark.parametrize("sizes", [[1], [3, 1, 8], [10_000]], ids=str)
def test_cuts_do_not_depend_on_the_blocks_and_lose_no_input(sizes):
    """Fed in one block, the encoder has computed past a cut: those frames
    are computed again, by a new stream, from the input it had buffered."""
    pattern = "A..B.....C.AA.....B...."
    recognizer = fake_recognizer(Endpointing(silence=0.12, max_utterance=0))
    finals, last = run(recognizer, said(pattern * 3), sizes)

    texts = [u.text for u in [*finals, last]]
    # Cut after frames 7, 15, 21, 29, ... (by hand); the stream ends blank.
    assert texts == ["AB", "CA", "B"] * 3 + [""]
    assert recognizer.encoder.starts == len(finals) + 1  # one per utterance
    # Utterances follow each other without gap or overlap.
    for before, after in zip([*finals, last], [*finals, last][1:], strict=False):
        assert after.start == pytest.approx(before.end)
    assert last.end == pytest.approx(len(pattern) * 3 * SHIFT)


def test_endpointing_off_is_one_utterance():
    recognizer = fake_recognizer(Endpointing.off())
    finals, last = run(recognizer, said("A" + "." * 600 + "B"), [9])
    assert finals == [] and last.text == "AB"


def test_finish_starts_a_new_stream_at_time_zero():
    recognizer = fake_recognizer(Endpointing())
    first = run(recognizer, said("A..B"), [3])
    assert run(recognizer, said("A..B"), [3]) == first
    assert summary([recognizer.finish()]) == [("", 0.0, 0.0)]  # nothing fed


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(silence=-0.5), r"silence \(-0.5\) must be a non-negative number"),
        (dict(max_utterance=float("inf")), r"max_utterance \(inf\) must be"),
        (dict(max_utterance=float("nan")), r"max_utterance \(nan\) must be"),
    ],
)
def test_impossible_endpointing_is_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        Endpointing(**options)


def test_unknown_searches_are_refused():
    with pytest.raises(ValueError, match=r"search \('beam'\) must be one of greedy"):
        make_search("beam", FAKE_TOKENS, SHIFT)
    with pytest.raises(ValueError, match="search 'lexicon' needs the model's lexicon"):
        make_search("lexicon", FAKE_TOKENS, SHIFT)


# -- a tiny streaming model ---------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Dict[str, Any]:
    """The streaming tiny model, its zip (decoding YAML, lexicon, word LM),
    and a copy of its experiment whose config streams nothing."""
    from espnet2.main_funcs.pack_funcs import pack

    trained = train_tiny_ctc_model(tmp_path_factory.mktemp("trained"), streaming=True)
    root = trained["root"]
    with contextlib.chdir(root):  # pack keeps relative paths
        pack(
            files=dict(asr_model_file=trained["exp"] / "valid.loss.ave.pth"),
            yaml_files=dict(asr_train_config=trained["exp"] / "config.yaml"),
            outpath=root / "packed.zip",
            option=[trained["decode"], trained["lexicon"], trained["word_lm"]],
        )
    offline = root / "exp_offline"
    shutil.copytree(trained["exp"], offline)
    config = yaml.safe_load((offline / "config.yaml").read_text())
    for name in ("causal_conv", "chunk_size", "num_left_chunks"):
        del config["encoder_conf"][name]
    (offline / "config.yaml").write_text(yaml.safe_dump(config))
    return dict(trained, zip=root / "packed.zip", offline=offline)


@pytest.fixture(scope="module")
def transcriber(trained):
    from espnet_shared_conformer.inference import load_model

    # The zip: its lexicon and word LM are found by name.
    return load_model(trained["zip"], unpack_dir=trained["root"] / "unpacked")


def repeated(times: int) -> np.ndarray:
    """TEXT said ``times`` times, 2.048 s apart (chunk-aligned)."""
    return np.tile(streaming_utterance(), times)


def offline_features(model, samples: np.ndarray) -> torch.Tensor:
    """The model's normalized input features (T, D) of the whole of ``samples``."""
    speech = torch.from_numpy(samples)[None]
    lengths = torch.tensor([speech.size(1)])
    with torch.no_grad():
        feats, feats_lengths = model.frontend(speech, lengths)
        feats, _ = model.normalize(feats, feats_lengths)
    return feats[0]


def offline_log_probs(
    model, feats: torch.Tensor, chunks: Optional[Tuple[int, int]] = None
) -> torch.Tensor:
    """CTC log posteriors (T', V) of ``model``'s masked forward over ``feats``
    (T, D), at the encoder's chunks or at ``chunks`` (chunk, left chunks)."""
    encoder = model.encoder
    if chunks is not None:
        encoder = copy.deepcopy(encoder)
        encoder.streaming = dataclasses.replace(
            encoder.streaming, chunk_size=chunks[0], num_left_chunks=chunks[1]
        )
    with torch.no_grad():
        out, _, _ = encoder(feats[None], torch.tensor([len(feats)]))
        return model.ctc.log_softmax(out)[0]


def offline_search(transcriber, kind: str, log_probs: torch.Tensor):
    tokens, shift = transcriber.asr_model.token_list, 0.032
    if kind == "greedy":
        return greedy_search(log_probs, tokens, shift)
    if kind == "prefix_beam":
        return prefix_beam_search(log_probs, tokens, shift, beam_size=4)
    words, ids, score = transcriber.lexicon_decoder(log_probs)[0]
    return " ".join(words), tuple(ids)


def test_the_frame_shift_is_the_features_hop_times_the_subsampling(transcriber):
    recognizer = StreamingRecognizer.from_model(transcriber)
    # 128-sample hops at 16 kHz, subsampled 4 times.
    assert recognizer.frame_shift == 0.032
    assert recognizer.encoder.chunk_size == 4 and recognizer.encoder.stride == 4
    assert type(recognizer.search).__name__ == "LexiconSearch"  # the model's


@pytest.mark.parametrize("chunks", [None, (8, 1)], ids=["model's chunks", "8-1"])
@pytest.mark.parametrize("kind", ["greedy", "prefix_beam", "lexicon"])
def test_a_stream_decodes_as_the_masked_forward(transcriber, kind, chunks):
    samples = repeated(3)
    recognizer = StreamingRecognizer.from_model(
        transcriber,
        search=kind,
        chunk_size=chunks and chunks[0],
        num_left_chunks=chunks and chunks[1],
        endpointing=Endpointing.off(),
    )
    rng = np.random.default_rng(len(kind))
    sizes = rng.integers(1, 4000, size=50).tolist()
    finals, last = run(recognizer, samples, sizes)

    model = transcriber.asr_model
    expected = offline_search(
        transcriber, kind, offline_log_probs(model, offline_features(model, samples))
    )
    assert finals == []
    if kind == "lexicon":
        assert (last.text, last.token_ids) == expected
    else:
        assert (last.text, last.token_ids) == (expected.text, expected.token_ids)
        assert last.words == pytest.approx(expected.words)
    if chunks is None:
        # Not TEXT three times: the model learned the first C from the
        # stream's start (endpointing gives each utterance one).
        assert last.text.startswith(TEXT) and last.text.count("TACO") == 3
    # The next stream starts from nothing (blocks change float rounding only).
    again = run(recognizer, samples, [len(samples)])[1]
    assert dataclasses.replace(again, score=last.score) == last
    assert again.score == pytest.approx(last.score, abs=1e-4)


def test_partials_grow_into_the_final(transcriber):
    recognizer = StreamingRecognizer.from_model(
        transcriber, search="greedy", endpointing=Endpointing.off()
    )
    partials = [
        recognizer.feed(block).partial.text
        for block in np.array_split(streaming_utterance(), 40)
    ]
    final = recognizer.finish().text

    assert final == TEXT
    assert all(final.startswith(partial) for partial in partials)
    assert len(set(partials)) > 3  # it did grow


def _rss() -> int:
    """Resident memory of this process now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_three_minutes_stream_in_bounded_memory_and_as_cut_offline(transcriber):
    """A 3-minute stream, endpointing on (the defaults): memory does not grow
    from minute 1 to minute 3, every utterance is TEXT, cut at the pauses, and
    each is what the masked forward gives on its stretch of input frames."""
    minutes = 3
    samples = repeated(int(minutes * 60 * FS / len(streaming_utterance())) + 1)
    assert len(samples) >= minutes * 60 * FS
    recognizer = StreamingRecognizer.from_model(transcriber, search="greedy")
    block = FS // 10  # 0.1 s, as a microphone delivers it
    finals: List[Utterance] = []
    memory = {}
    tracemalloc.start()
    try:
        for start in range(0, len(samples), block):
            finals += recognizer.feed(samples[start : start + block]).finals
            for minute in (1, 3):
                if start < minute * 60 * FS <= start + block:
                    memory[minute] = (_rss(), tracemalloc.get_traced_memory()[0])
        last = recognizer.finish()
    finally:
        tracemalloc.stop()

    rss_growth = memory[3][0] - memory[1][0]
    python_growth = memory[3][1] - memory[1][1]
    assert rss_growth < 4 * 2**20, rss_growth
    # The utterances the test keeps (~60 of them) and nothing else.
    assert python_growth < 256 * 2**10, python_growth
    utterances = [*finals, last]
    assert len(utterances) == len(samples) // len(streaming_utterance())
    assert {u.text for u in utterances} == {TEXT}
    # Cut in the pauses: silence (endpoint_silence 0.8 s) after each TEXT.
    period = len(streaming_utterance()) / FS
    for i, u in enumerate(finals):
        assert i * period + 1.3 + 0.8 <= u.end <= (i + 1) * period + 0.6

    # The same cuts, offline: each utterance's input frames, masked forward.
    model = transcriber.asr_model
    feats = offline_features(model, samples)
    shift, stride = recognizer.frame_shift, recognizer.encoder.stride
    for u in utterances:
        first = round(u.start / shift)
        frames = round(u.end / shift) - first
        # Output frame t reads input frames 4t .. 4t + 6; the last gets the rest.
        end = None if u is last else stride * (first + frames - 1) + 7
        log_probs = offline_log_probs(model, feats[stride * first : end])
        assert len(log_probs) == frames
        expected = greedy_search(log_probs, model.token_list, shift)
        assert u.token_ids == expected.token_ids
        assert [w.start - u.start for w in u.words] == pytest.approx(
            [w.start for w in expected.words]
        )


def test_a_stream_too_short_for_a_frame_is_empty(transcriber):
    recognizer = StreamingRecognizer.from_model(transcriber, search="greedy")
    assert recognizer.finish().text == ""
    recognizer.feed(np.zeros(100, dtype=np.float32))  # less than n_fft / 2
    assert recognizer.finish() == Utterance("", (), 0.0, 0.0, True)


def test_dumped_features_decode_as_samples(transcriber):
    """FeatureFrames (a model fed the recipe's dumped features) normalizes as
    the model does: fed the frontend's features, it recognizes the same. (Its
    frames are Kaldi's, 10 ms apart: these are 8 ms, so times differ.)"""
    samples = repeated(2)
    model = transcriber.asr_model
    speech = torch.from_numpy(samples)[None]
    with torch.no_grad():
        raw = model.frontend(speech, torch.tensor([speech.size(1)]))[0][0]
    kwargs = dict(search="greedy", endpointing=Endpointing.off())
    by_samples = StreamingRecognizer.from_model(transcriber, **kwargs)
    by_frames = StreamingRecognizer.from_model(transcriber, frames_in=True, **kwargs)
    last = run(by_samples, samples, [999])[1]
    frames_last = run(by_frames, raw.numpy(), [37])[1]

    assert by_frames.frame_shift == 0.04  # Kaldi's 10 ms, subsampled 4 times
    assert (frames_last.text, frames_last.token_ids) == (last.text, last.token_ids)
    assert [w.start / 0.04 for w in frames_last.words] == pytest.approx(
        [w.start / 0.032 for w in last.words]
    )
    with pytest.raises(ValueError, match=r"frames must be \(n, 20\) features"):
        by_frames.feed(samples)


def test_a_model_that_cannot_stream_is_refused_with_the_reason(trained):
    from espnet_shared_conformer.inference import load_asr_model

    model, _ = load_asr_model(
        trained["offline"] / "config.yaml", trained["offline"] / "valid.loss.ave.pth"
    )
    with pytest.raises(ValueError, match=r"the model cannot stream: chunk_size \(0\)"):
        TorchChunkEncoder(model)
    with pytest.raises(ValueError, match=r"chunk_size \(16\) needs causal_conv"):
        TorchChunkEncoder(model, chunk_size=16)


# -- raw PCM from a pipe -------------------------------------------------------


class Pipe(io.RawIOBase):
    """A pipe that gives at most ``most`` bytes per read, as a live one does."""

    def __init__(self, data: bytes, most: int) -> None:
        self.data, self.most = data, most

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        chunk = self.data[: min(size, self.most)]
        self.data = self.data[len(chunk) :]
        return chunk


@pytest.mark.parametrize("fmt", ["s16le", "s32le", "f32le"])
@pytest.mark.parametrize("most", [1, 7, 10_000])
def test_raw_pcm_is_read_as_it_comes(fmt, most):
    """Stereo PCM in odd pieces (sample frames cut anywhere): the mean of the
    channels, at full scale 1.0."""
    from espnet_shared_conformer.audio_io import raw_blocks

    rng = np.random.default_rng(0)
    left, right = rng.uniform(-0.9, 0.9, size=(2, 300))
    dtype, scale = {"s16le": ("<i2", 2**15), "s32le": ("<i4", 2**31)}.get(
        fmt, ("<f4", 1.0)
    )
    stereo = np.stack([left, right], axis=1) * scale
    data = stereo.astype(dtype).tobytes()
    blocks = list(raw_blocks(Pipe(data + b"\x01", most), 8000, fmt, channels=2))

    expected = stereo.astype(dtype).astype(np.float64).mean(axis=1) / scale
    assert np.allclose(np.concatenate(blocks), expected, atol=1e-6)
    assert all(b.dtype == np.float32 for b in blocks)
    assert max(len(b) for b in blocks) <= 800  # block_seconds 0.1 at 8 kHz


def test_raw_pcm_is_resampled_and_checked():
    from espnet_shared_conformer.audio_io import AudioError, raw_blocks

    tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype("<f4")
    blocks = list(raw_blocks(io.BytesIO(tone.tobytes()), 8000, "f32le", 1, 16000))
    assert abs(len(np.concatenate(blocks)) - 16000) <= 1
    bad = np.array([0.0, np.nan], dtype="<f4").tobytes()
    with pytest.raises(AudioError, match=r"^mic: NaN/inf samples \(first at 0.000"):
        list(raw_blocks(io.BytesIO(bad), 8000, "f32le", source="mic"))
    with pytest.raises(ValueError, match=r"sample_format \('u8'\) must be one of"):
        list(raw_blocks(io.BytesIO(b""), 8000, "u8"))


# -- the command ------------------------------------------------------------


def _transcribe(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TRANSCRIBE, *map(str, args)],
        capture_output=True,
        timeout=300,
        **kwargs,
    )


def _lines(recognizer: StreamingRecognizer, name: str, samples) -> List[str]:
    """The lines the command prints for ``samples``, from the recognizer."""
    finals, last = run(recognizer, samples, [3200])
    return [f"{name}\t{u.start:.2f}\t{u.end:.2f}\t{u.text}" for u in [*finals, last]]


def test_the_command_streams_files_and_standard_input(trained, transcriber, tmp_path):
    """One line per utterance, as the recognizer gives them; raw PCM on
    stdin (here 16-bit at 8 kHz, resampled) as a file; nothing else printed."""
    import soundfile

    samples = repeated(3)
    wav, silent = tmp_path / "three.wav", tmp_path / "short.wav"
    soundfile.write(wav, samples, FS, subtype="FLOAT")  # read back as it is
    soundfile.write(silent, np.zeros(100, dtype=np.float32), FS)  # not a frame
    pcm = (samples[::2] * 32767).astype("<i2").tobytes()  # 8 kHz
    options = ["--model", trained["zip"], "--unpack_dir", tmp_path / "unpacked"]
    result = _transcribe(
        *options, "--streaming", wav, silent, "-", "--rate", 8000, input=pcm
    )

    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    lines = result.stdout.decode().splitlines()
    expected = _lines(StreamingRecognizer.from_model(transcriber), str(wav), samples)
    assert lines[:3] == expected
    # Nothing recognized: still a line, so that every file has one.
    assert lines[3] == f"{silent}\t0.00\t0.00\t"
    assert [line.split("\t")[0] for line in lines[4:]] == ["-"] * 3
    assert {line.split("\t")[3] for line in lines[:3] + lines[4:]} == {TEXT}
    assert "\r" not in result.stdout.decode()  # not a terminal


def test_the_command_shows_partials_in_place_on_a_terminal(
    trained, tmp_path, monkeypatch
):
    from espnet_shared_conformer.bin import transcribe

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(
        sys,
        "stdin",
        io.TextIOWrapper(
            io.BytesIO((streaming_utterance() * 32767).astype("<i2").tobytes())
        ),
    )
    monkeypatch.setattr(sys, "stdout", terminal)
    status = transcribe.main(
        ["--model", str(trained["zip"]), "--unpack_dir", str(tmp_path)]
        + ["--streaming", "--word_times", "--search", "greedy", "-"]
    )

    assert status == 0
    shown = terminal.getvalue()
    # Partials rewrite the line; the final clears it and stays.
    assert "\r\x1b[KCAT\r\x1b[K" in shown or "\r\x1b[KCAT T" in shown
    final = shown.rsplit("\r\x1b[K", 1)[1]
    name, start, end, text, words = final.rstrip("\n").split("\t")
    assert (name, start, text) == ("-", "0.00", TEXT)
    assert words.startswith("CAT:0.") and " TACO:" in words
    assert final.endswith("\n") and final.count("\n") == 1


def _wait_until_read(process: subprocess.Popen, timeout: float = 60) -> None:
    """Until ``process`` has read everything written to its stdin pipe."""
    import fcntl
    import termios
    import time

    pipe = os.open(f"/proc/{process.pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            unread = bytearray(4)
            fcntl.ioctl(pipe, termios.FIONREAD, unread)
            if int.from_bytes(unread, sys.byteorder) == 0:
                return
            time.sleep(0.1)
    finally:
        os.close(pipe)
    raise AssertionError(f"the process did not read its input in {timeout} s")


def test_ctrl_c_prints_the_utterance_under_way(trained, tmp_path):
    """A microphone's stream ends with Ctrl-C: what was said is not lost."""
    import signal
    import time

    pcm = (repeated(2) * 32767).astype("<i2").tobytes()
    process = subprocess.Popen(
        [*TRANSCRIBE, "--model", str(trained["zip"]), "--unpack_dir", str(tmp_path)]
        + ["--streaming", "--search", "greedy", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=False,
        # As in a terminal's foreground: a suite started in the background
        # (`cmd &`) passes SIGINT on ignored, and Python keeps it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        process.stdin.write(pcm)  # the pipe stays open: a live microphone
        process.stdin.flush()
        first = process.stdout.readline().decode()  # the first pause's cut
        # The second utterance read (no pause after it yet) and recognized.
        _wait_until_read(process)
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=60)
    finally:
        process.kill()

    assert first.split("\t")[3] == f"{TEXT}\n"
    assert process.returncode == 130, errors.decode()
    name, start, _, text = rest.decode().split("\t")
    assert (name, start, text) == ("-", "2.30", f"{TEXT}\n")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--chunk_size", "4", "a.wav"], "--chunk_size needs --streaming"),
        (["-"], r"reading standard input \(-\) needs --streaming"),
        (["--streaming", "-", "-"], r"standard input \(-\) can be read once"),
        (
            ["--streaming", "--endpoint_silence", "-1", "a.wav"],
            r"--endpoint_silence|silence \(-1.0\) must be a non-negative",
        ),
        (["--streaming", "--channels", "0", "-"], r"--channels \(0\) must be"),
    ],
)
def test_the_commands_streaming_usage_errors(tmp_path, args, message):

    result = _transcribe("--model", tmp_path, *args)
    assert result.returncode == 2
    assert re.search(message, result.stderr.decode())


def test_the_command_refuses_a_model_that_cannot_stream(trained):
    result = _transcribe(
        "--model",
        trained["offline"],
        "--decoding",
        trained["decode"],
        "--streaming",
        trained["root"] / "utt1.wav",
    )
    assert result.returncode == 1
    assert result.stderr.decode().startswith("transcribe: ERROR: ")
    assert "the model cannot stream: chunk_size (0) must be" in result.stderr.decode()
    assert result.stdout == b""


# -- on ONNX Runtime, without torch -------------------------------------------


@pytest.fixture(scope="module")
def onnx_graph(trained) -> Path:
    """The streaming tiny model's chunk step, exported by the command, with
    its sidecar and frontend data beside it."""
    pytest.importorskip("onnxruntime")
    from espnet_shared_conformer.onnx_export import main as export

    out = trained["root"] / "onnx" / "model.onnx"
    out.parent.mkdir()
    exp = trained["exp"]
    status = export(
        ["--config", str(exp / "config.yaml"), "--model"]
        + [str(exp / "valid.loss.ave.pth"), "--out", str(out), "--streaming"]
    )
    assert status == 0
    return out


def _outcome(utterances: Sequence[Utterance]) -> List[Tuple[Any, ...]]:
    return [(u.text, u.token_ids, u.start, u.end, u.final) for u in utterances]


@pytest.mark.parametrize("kind", ["greedy", "prefix_beam"])
def test_the_onnx_recognizer_recognizes_what_the_torch_one_does(
    transcriber, onnx_graph, kind
):
    """A stream of three utterances, endpointing on, odd blocks: the same
    cuts, texts, token ids and word times (the model's chunks: the graph's)."""
    samples = repeated(3)
    by_torch = StreamingRecognizer.from_model(transcriber, search=kind, beam_size=4)
    by_onnx = StreamingRecognizer.from_onnx(str(onnx_graph), search=kind, beam_size=4)
    sizes = np.random.default_rng(7).integers(1, 3000, size=40).tolist()
    torch_finals, torch_last = run(by_torch, samples, sizes)
    onnx_finals, onnx_last = run(by_onnx, samples, sizes)

    assert by_onnx.frame_shift == by_torch.frame_shift == 0.032
    assert by_onnx.encoder.chunk_size == by_torch.encoder.chunk_size == 4
    assert len(torch_finals) == 2  # cut at two pauses; finish() ends the third
    assert _outcome(onnx_finals + [onnx_last]) == _outcome(torch_finals + [torch_last])
    assert [u.text for u in onnx_finals + [onnx_last]] == [TEXT] * 3
    for got, expected in zip(
        onnx_finals + [onnx_last], torch_finals + [torch_last], strict=True
    ):
        assert got.words == pytest.approx(expected.words)
        assert got.score == pytest.approx(expected.score, abs=1e-3)


def test_onnx_recognizer_refuses_what_it_cannot_run(onnx_graph, tmp_path):
    with pytest.raises(
        ValueError, match=r"search \('lexicon'\)|search 'lexicon' needs"
    ):
        StreamingRecognizer.from_onnx(str(onnx_graph), search="lexicon")
    # Exported before the frontend data were written.
    old = tmp_path / "old.onnx"
    shutil.copy(onnx_graph, old)
    spec = json.loads(onnx_graph.with_suffix(".json").read_text())
    del spec["frontend"]
    old.with_suffix(".json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"old.json: no frontend data .* export it"):
        StreamingRecognizer.from_onnx(str(old))


#: Modules a device without torch must not have loaded.
HEAVY = ("torch", "torchaudio", "espnet", "espnet2")


def test_the_onnx_recognizer_and_command_import_neither_torch_nor_espnet(
    trained, transcriber, onnx_graph, tmp_path
):
    """What an always-on device runs, in a fresh process: the recognizer on
    a stream, then ``transcribe --onnx ... --streaming`` on a wav file; the
    command prints what the PyTorch recognizer gives."""
    import textwrap

    import soundfile

    wav = tmp_path / "three.wav"
    soundfile.write(wav, repeated(3), FS, subtype="FLOAT")
    script = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        import soundfile
        from espnet_shared_conformer.recognizer import StreamingRecognizer
        from espnet_shared_conformer.bin import transcribe

        recognizer = StreamingRecognizer.from_onnx({str(onnx_graph)!r}, "greedy")
        samples, _ = soundfile.read({str(wav)!r}, dtype="float32")
        texts = [u.text for u in recognizer.feed(samples).finals]
        texts.append(recognizer.finish().text)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = transcribe.main(
                ["--onnx", {str(onnx_graph)!r}, "--streaming", {str(wav)!r}]
            )
        heavy = {HEAVY!r}
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        print(json.dumps(dict(texts=texts, status=status, lines=out.getvalue(),
                              loaded=loaded)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert report["texts"] == [TEXT, TEXT, TEXT]
    assert report["status"] == 0
    expected = _lines(
        StreamingRecognizer.from_model(transcriber), str(wav), repeated(3)
    )
    assert report["lines"].splitlines() == expected and len(expected) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--onnx", "m.onnx", "--model", "z.zip", "-"], "not allowed with argument"),
        (["a.wav"], "one of the arguments --model --onnx is required"),
        (["--onnx", "m.onnx", "a.wav"], r"--onnx needs --streaming"),
        (
            ["--onnx", "m.onnx", "--streaming", "--chunk_size", "8", "a.wav"],
            r"--chunk_size applies to --model only",
        ),
        (
            ["--onnx", "m.onnx", "--streaming", "--search", "lexicon", "a.wav"],
            r"--search lexicon needs --model .* greedy or prefix_beam",
        ),
    ],
)
def test_the_commands_onnx_usage_errors(args, message):
    result = _transcribe(*args)
    assert result.returncode == 2
    assert re.search(message, result.stderr.decode()), result.stderr.decode()


def test_the_command_says_why_a_graph_cannot_load(trained, onnx_graph, tmp_path):
    old = tmp_path / "old.onnx"
    shutil.copy(onnx_graph, old)
    spec = json.loads(onnx_graph.with_suffix(".json").read_text())
    old.with_suffix(".json").write_text(json.dumps({**spec, "frontend": None}))
    result = _transcribe("--onnx", old, "--streaming", trained["root"] / "utt1.wav")
    assert result.returncode == 1
    assert re.match(
        r"transcribe: ERROR: cannot load .*old.onnx: .*old.json: frontend null",
        result.stderr.decode(),
    )
    assert result.stdout == b""


# -- stage 12: asr_inference --streaming true --------------------------------


def _asr_inference(exp: Path, out: Path, *extra: str, wav_scp: Path) -> List[str]:
    """The package's inference binary in this process; its text lines."""
    from espnet_shared_conformer.bin import asr_inference

    asr_inference.main(
        ["--asr_train_config", str(exp / "config.yaml")]
        + ["--asr_model_file", str(exp / "valid.loss.ave.pth")]
        + ["--data_path_and_name_and_type", f"{wav_scp},speech,sound"]
        + ["--output_dir", str(out), "--ngpu", "0", "--num_workers", "0"]
        + [*extra]
    )
    return (out / "1best_recog" / "text").read_text().splitlines()


@pytest.fixture(scope="module")
def long_scp(trained) -> Path:
    """Two utterances: TEXT once, and three times."""
    import soundfile

    root = trained["root"]
    soundfile.write(root / "three.wav", repeated(3), FS)
    scp = root / "two.scp"
    scp.write_text(f"a {root / 'utt1.wav'}\nb {root / 'three.wav'}\n")
    return scp


@pytest.mark.parametrize("lexicon", [False, True], ids=["prefix beam", "lexicon"])
def test_stage_12_decodes_as_the_recognizer_streams(
    trained, transcriber, tmp_path, long_scp, lexicon
):
    """At chunks other than the model's (which decode differently)."""
    import soundfile

    extra = ["--streaming", "true", "--chunk_size", "16", "--num_left_chunks", "0"]
    extra += ["--config", str(trained["decode"])]  # beam_size 4, as recipes do
    if lexicon:
        extra += ["--lexicon_file", str(trained["lexicon"])]
        extra += ["--word_lm_file", str(trained["word_lm"])]
    lines = _asr_inference(trained["exp"], tmp_path, *extra, wav_scp=long_scp)

    def recognized(chunks: Tuple[Optional[int], Optional[int]]) -> List[str]:
        recognizer = StreamingRecognizer.from_model(
            transcriber,
            search="lexicon" if lexicon else "prefix_beam",
            chunk_size=chunks[0],
            num_left_chunks=chunks[1],
            endpointing=Endpointing.off(),
        )
        lines = []
        for line in long_scp.read_text().splitlines():
            key, path = line.split()
            samples, _ = soundfile.read(path, dtype="float32")  # as ESPnet reads it
            lines.append(f"{key} {run(recognizer, samples, [1600])[1].text}")
        return lines

    assert lines == recognized((16, 0))
    assert lines != recognized((None, None))
    record = yaml.safe_load((tmp_path / "decoding.yaml").read_text())
    assert (record["streaming"], record["chunk_size"], record["num_left_chunks"]) == (
        True,
        16,
        0,
    )


def test_a_streaming_record_gives_the_recognizer_its_chunks(trained, tmp_path):
    """load_model of an experiment decoded as a stream: the recognizer takes
    the chunks it was scored with."""
    from espnet_shared_conformer.inference import load_model

    exp = tmp_path / "exp"
    shutil.copytree(trained["exp"], exp)
    _asr_inference(
        exp,
        exp / "decode_streaming",
        *["--streaming", "true", "--chunk_size", "8", "--num_left_chunks", "1"],
        wav_scp=trained["wav_scp"],
    )
    recognizer = StreamingRecognizer.from_model(load_model(exp))
    assert (recognizer.encoder.chunk_size, recognizer.encoder.num_left_chunks) == (8, 1)


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], r"the model cannot stream: chunk_size \(0\) must be at least 1"),
        (["--chunk_size", "4"], r"chunk_size \(4\) needs causal_conv"),
    ],
)
def test_stage_12_refuses_a_model_that_cannot_stream(trained, tmp_path, extra, message):
    with pytest.raises(SystemExit, match=message):
        _asr_inference(
            trained["offline"],
            tmp_path,
            "--streaming",
            "true",
            *extra,
            wav_scp=trained["wav_scp"],
        )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--chunk_size", "4"], "--chunk_size needs --streaming true"),
        (["--streaming", "true", "--lm_weight", "0.5"], "lm_weight=0.5 tunes ESPnet"),
        (["--streaming", "true", "--ctc_weight", "0.3"], "ctc_weight=0.3: --streaming"),
        (["--streaming", "true", "--nbest", "2"], "nbest=2: --streaming gives the"),
        (
            ["--streaming", "true", "--lm_file", "lm.pth"],
            "--streaming decodes without a neural or token LM; drop --lm_file",
        ),
        (
            ["--streaming", "true", "--word_lm_file", "lm.arpa"],
            "--word_lm_file needs --lexicon_file",
        ),
        (["--streaming", "true", "--batch_size", "2"], "--batch_size must be 1"),
    ],
)
def test_stage_12_streaming_refuses_what_it_would_drop(
    trained, tmp_path, extra, message
):
    with pytest.raises(SystemExit, match=message):
        _asr_inference(trained["exp"], tmp_path, *extra, wav_scp=trained["wav_scp"])
