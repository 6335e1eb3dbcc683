"""Bad audio, anywhere a user can hand it in (the one loader, the package's audio_io).

Each kind of file is tried where a user can give it: the loader itself, data
preparation (librispeech_data_prep.py, prepare_real_clips.py,
validate_data_dir.py --check_audio), dumping (dump_audio.py) and
transcription (``python -m espnet_shared_conformer.bin.transcribe`` with a
real, randomly initialized packed model).
Good kinds are decoded and resampled; bad kinds are named with the reason, and
data preparation and dumping then write nothing.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest
import soundfile
from bad_audio_helpers import BAD, GOOD, RATE, build_packed_model, speech, write
from pipeline_helpers import local_module, run
from pipeline_helpers import write_data_dir as write_kaldi_dir

from espnet_shared_conformer import audio_io

dump_audio = local_module("dump_audio")
validate_data_dir = local_module("validate_data_dir")
librispeech_data_prep = local_module("librispeech_data_prep")
prepare_real_clips = local_module("prepare_real_clips")
DataDirError = local_module("datadir").DataDirError

# Beyond the list: a WAV whose data chunk is cut short (libsndfile
# would silently read the part that is there).
EXTRA_BAD = {"truncated data": "truncated: the header promises 1.00 s of samples"}


def _truncated_data(d: Path) -> Path:
    whole = write(d / "whole.wav", speech(1.0), subtype="PCM_16").read_bytes()
    (d / "whole.wav").unlink()
    path = d / "truncated_data.wav"
    path.write_bytes(whole[:8044])  # the header and 0.25 s of 1 s
    return path


ALL_BAD = {**BAD, "truncated data": (_truncated_data, EXTRA_BAD["truncated data"])}


def _reference(rate: int, seconds: float = 2.0) -> np.ndarray:
    """What the good kinds hold, as the loader should return it (16 kHz)."""
    return speech(seconds, rate)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------- the loader


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_loader_decodes_good_kind(kind: str, tmp_path: Path) -> None:
    path = GOOD[kind](tmp_path)
    samples = audio_io.load_audio(str(path), RATE)
    info = soundfile.info(str(path))

    assert audio_io.check_audio(str(path)) is None
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == round(info.frames * RATE / info.samplerate)
    if kind == "3 s of silence":
        assert not samples.any()
    elif kind == "stereo":  # channels averaged: (x + 0.5 x) / 2
        left = soundfile.read(str(path), always_2d=True)[0][:, 0]
        np.testing.assert_allclose(samples, 0.75 * left, atol=2e-5)
    elif kind != "50 ms clip":
        # Same speech as written, at 16 kHz (u-law and Vorbis are lossy).
        assert _correlation(samples, _reference(RATE)) > 0.9


@pytest.mark.parametrize("kind", sorted(ALL_BAD))
def test_loader_names_bad_kind(kind: str, tmp_path: Path) -> None:
    make, reason = ALL_BAD[kind]
    path = make(tmp_path)

    assert audio_io.check_audio(str(path)).startswith(reason)
    with pytest.raises(audio_io.AudioError) as error:
        audio_io.load_audio(str(path), RATE)
    assert str(error.value).startswith(f"{path}: {reason}")


def test_loader_finds_corrupt_data_part_way(tmp_path: Path) -> None:
    # A 30 s FLAC file whose last third is garbage: the header is fine,
    # decoding fails in the block where the garbage starts (after 10 s).
    good = write(tmp_path / "a.flac", speech(30.0), format="FLAC").read_bytes()
    cut = 2 * len(good) // 3
    path = tmp_path / "corrupt.flac"
    path.write_bytes(good[:cut] + bytes(range(256)) * ((len(good) - cut) // 256))

    reason = audio_io.check_audio(str(path))

    match = re.fullmatch(
        r"corrupt or truncated audio data between ([\d.]+) s and ([\d.]+) s \((.+)\)",
        reason or "",
    )
    assert match, reason
    assert float(match[1]) >= 10.0 and float(match[2]) <= 30.0


def test_long_audio_is_read_in_blocks(tmp_path: Path) -> None:
    # 3 minutes at 48 kHz come out in blocks of BLOCK_SECONDS, resampled.
    path = write(tmp_path / "long.wav", speech(180.0, 48000), 48000, subtype="PCM_16")
    blocks = list(audio_io.audio_blocks(str(path), RATE))

    assert sum(len(b) for b in blocks) == 180 * RATE
    assert max(len(b) for b in blocks) <= (audio_io.BLOCK_SECONDS + 0.1) * RATE


# ------------------------------------------------------- windows at pauses


def test_windows_are_the_input_cut_at_pauses() -> None:
    rng = np.random.default_rng(0)
    samples = (0.3 * rng.standard_normal(70 * RATE)).astype(np.float32)
    # Pauses (0.3 s of silence) that the windows should be cut in.
    pauses = [17.0, 33.5, 51.2]
    for start in pauses:
        samples[int(start * RATE) : int((start + 0.3) * RATE)] = 0.0
    blocks = [samples[i : i + 3 * RATE] for i in range(0, len(samples), 3 * RATE)]

    windows = list(audio_io.split_at_pauses(blocks, RATE, 20.0, 5.0))

    np.testing.assert_array_equal(np.concatenate(windows), samples)
    assert all(len(w) <= 20 * RATE for w in windows)
    cuts = np.cumsum([len(w) for w in windows])[:-1] / RATE
    assert len(cuts) == len(pauses)
    for cut, start in zip(cuts, pauses, strict=True):
        assert start < cut < start + 0.3


def test_windows_of_audio_without_pauses_keep_the_maximum() -> None:
    samples = np.ones(45 * RATE, dtype=np.float32)
    windows = list(audio_io.split_at_pauses([samples], RATE, 20.0, 5.0))

    assert sum(len(w) for w in windows) == len(samples)
    assert all(15 * RATE <= len(w) <= 20 * RATE for w in windows[:-1])


# ------------------------------------------- data preparation and dumping


def _data_dir_with(tmp_path: Path, bad_path: Path) -> Tuple[Path, Dict[str, str]]:
    """A data dir of two good files and ``bad_path`` (utterance s-2)."""
    wav = {
        "s-1": str(write(tmp_path / "good1.wav", speech(1.0), subtype="PCM_16")),
        "s-2": str(bad_path),
        "s-3": str(write(tmp_path / "good3.flac", speech(1.5), format="FLAC")),
    }
    return write_kaldi_dir(tmp_path / "data", wav), wav


@pytest.mark.parametrize("kind", sorted(ALL_BAD))
def test_dump_names_bad_kind_and_writes_nothing(
    kind: str, tmp_path: Path, capsys
) -> None:
    make, reason = ALL_BAD[kind]
    data, wav = _data_dir_with(tmp_path, make(tmp_path))
    out = tmp_path / "dump" / "org" / "train"

    code = dump_audio.main([str(data), str(out)])

    err = capsys.readouterr().err
    assert code == 1
    assert f"{data / 'wav.scp'}:2: {wav['s-2']}: {reason}" in err
    assert not (tmp_path / "dump").exists()  # not even a temporary directory


def test_dump_names_every_bad_file(tmp_path: Path, capsys) -> None:
    files = tmp_path / "files"
    files.mkdir()
    wav = {f"s-{i}": str(make(files)) for i, (make, _) in enumerate(ALL_BAD.values())}
    wav["s-good"] = str(write(files / "good.wav", speech(1.0)))
    data = write_kaldi_dir(tmp_path / "data", wav)

    code = dump_audio.main([str(data), str(tmp_path / "out"), "--nj", "2"])

    err = capsys.readouterr().err
    assert code == 1
    assert f"{data}: bad audio, nothing written; {len(ALL_BAD)} problem(s)" in err
    for i, (_, reason) in enumerate(ALL_BAD.values()):
        assert f"{wav[f's-{i}']}: {reason}" in err
    assert "good.wav" not in err
    assert not (tmp_path / "out").exists()


def test_dump_takes_every_good_kind(tmp_path: Path, capsys) -> None:
    files = tmp_path / "files"
    wav = {f"s-{i}": str(GOOD[k](files)) for i, k in enumerate(sorted(GOOD))}
    data = write_kaldi_dir(tmp_path / "data", wav)
    out = tmp_path / "out"

    assert dump_audio.main([str(data), str(out)]) == 0, capsys.readouterr().err

    lengths = {}
    for line in (out / "utt2num_samples").read_text().splitlines():
        utt, n = line.split()
        lengths[utt] = int(n)
    for utt, path in wav.items():
        info = soundfile.info(path)
        assert lengths[utt] == round(info.frames * RATE / info.samplerate), path


@pytest.mark.parametrize("kind", sorted(ALL_BAD))
def test_validate_data_dir_names_bad_kind(kind: str, tmp_path: Path) -> None:
    make, reason = ALL_BAD[kind]
    data, wav = _data_dir_with(tmp_path, make(tmp_path))

    errors = validate_data_dir.validate_data_dir(data, check_audio=True)

    assert errors == [
        f"{data}/wav.scp:2: cannot read audio {wav['s-2']}: "
        + audio_io.check_audio(wav["s-2"])
    ]
    assert reason in errors[0]


def _chapter(subset: Path, files: Dict[str, Path]) -> Path:
    """A LibriSpeech chapter 19/198 whose utterances hold ``files``' bytes."""
    chapter = subset / "19" / "198"
    chapter.mkdir(parents=True)
    lines = []
    for number, source in files.items():
        shutil.copyfile(source, chapter / f"19-198-{number}.flac")
        lines.append(f"19-198-{number} HELLO WORLD\n")
    (chapter / "19-198.trans.txt").write_text("".join(lines))
    return chapter


@pytest.mark.parametrize("kind", sorted(ALL_BAD))
def test_librispeech_data_prep_names_bad_kind(kind: str, tmp_path: Path) -> None:
    make, reason = ALL_BAD[kind]
    files = tmp_path / "files"
    files.mkdir()
    good = write(files / "good.flac", speech(1.0), format="FLAC")
    chapter = _chapter(tmp_path / "dev-clean", {"0000": good, "0001": make(files)})
    dst = tmp_path / "data" / "dev"

    with pytest.raises(DataDirError) as error:
        librispeech_data_prep.prepare([tmp_path / "dev-clean"], dst)

    message = str(error.value)
    assert (
        f"{chapter}/19-198.trans.txt:2: cannot read audio "
        f"{chapter.resolve()}/19-198-0001.flac: {reason}" in message
    )
    assert "19-198-0000" not in message
    assert not dst.exists()


def test_data_prep_names_every_bad_file(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    bad = {f"{i:04d}": make(files) for i, (make, _) in enumerate(ALL_BAD.values())}
    _chapter(tmp_path / "dev-clean", bad)

    with pytest.raises(DataDirError) as error:
        librispeech_data_prep.prepare([tmp_path / "dev-clean"], tmp_path / "dev")

    message = str(error.value)
    assert f"{len(ALL_BAD)} problem(s)" in message
    for number, (_, reason) in zip(bad, ALL_BAD.values(), strict=True):
        assert re.search(rf"19-198-{number}\.flac: {re.escape(reason)}", message)


def test_real_clips_prep_names_every_bad_file(tmp_path: Path) -> None:
    audio_dir = tmp_path / "clips"
    audio_dir.mkdir()
    names = []
    for i, (make, _) in enumerate(ALL_BAD.values()):
        make(audio_dir).rename(audio_dir / f"clip{i}.wav")
        names.append(f"clip{i}")
    write(audio_dir / "good.wav", speech(1.0))
    names.append("good")
    transcripts = tmp_path / "transcription"
    transcripts.write_text("".join(f"<s> hello world </s> ({n})\n" for n in names))
    dst = tmp_path / "data" / "clips"

    with pytest.raises(DataDirError) as error:
        prepare_real_clips.prepare("sphinx", transcripts, audio_dir, "clips", dst)

    message = str(error.value)
    for i, (_, reason) in enumerate(ALL_BAD.values()):
        assert f"clip{i}.wav: {reason}" in message
    assert "good.wav" not in message
    assert not dst.exists()


def test_spaces_and_non_ascii_in_corpus_path_through_prep_and_dump(
    tmp_path: Path, capsys
) -> None:
    # A corpus under a path a user may well have: spaces and accents.
    subset = tmp_path / "my corpora" / "LibriSpeech Zürich" / "dev-clean"
    files = tmp_path / "files"
    files.mkdir()
    clips = {
        "0000": write(files / "a.flac", speech(1.0), format="FLAC"),
        "0001": write(files / "b.flac", speech(1.5), format="FLAC"),
    }
    _chapter(subset, clips)
    data = tmp_path / "data" / "dev"
    librispeech_data_prep.prepare([subset], data)
    assert " " in (data / "wav.scp").read_text()

    out = tmp_path / "dump"
    assert dump_audio.main([str(data), str(out)]) == 0, capsys.readouterr().err
    assert (out / "utt2num_samples").read_text() == (
        f"19-198-0000 {RATE}\n19-198-0001 {int(1.5 * RATE)}\n"
    )


# ------------------------------------------------------------- transcription

TRANSCRIBE = [sys.executable, "-m", "espnet_shared_conformer.bin.transcribe"]
_FILE_LOG = re.compile(
    r"INFO: (?P<path>.+): (?P<seconds>[\d.]+) s of audio in (?P<windows>\d+) "
    r"window\(s\), decoded in [\d.]+ s, peak RSS (?P<rss>\d+) MiB"
)
#: How much more memory 3 minutes may take than 10 s: the longest window
#: (20 s) against 10 s, and allocator slack. Decoded whole, the 180 s file
#: takes about 900 MiB more with this model (measured).
MEMORY_GROWTH_BOUND_MIB = 100


@pytest.fixture(scope="module")
def packed_model(tmp_path_factory) -> Path:
    # A blank bias makes the random CTC head emit mostly blanks, as a trained
    # one does; ESPnet's beam search then needs few steps per window.
    return build_packed_model(tmp_path_factory.mktemp("model"), blank_bias=10.0)


@pytest.fixture(scope="module")
def transcription(packed_model: Path, tmp_path_factory):
    """One transcribe run over every kind, bad ones between good ones, a
    10 s recording first and a 3-minute one last (for the memory bound)."""
    files = tmp_path_factory.mktemp("audio")
    paths: Dict[str, Path] = {
        "10 s": write(files / "ten_seconds.wav", speech(10.0), subtype="PCM_16")
    }
    bad = sorted(ALL_BAD)
    for i, good in enumerate(sorted(GOOD)):  # alternately, as long as both last
        paths[good] = GOOD[good](files)
        if i < len(bad):
            paths[bad[i]] = ALL_BAD[bad[i]][0](files)
    paths["3 min"] = write(files / "three_minutes.wav", speech(180.0), subtype="PCM_16")
    unpack = tmp_path_factory.mktemp("unpacked")
    result = run(
        [*TRANSCRIBE, "--model", packed_model, "--unpack_dir", unpack]
        + ["--verbose", *paths.values()],
        timeout=600,
    )
    lines = {}
    for line in result.stdout.splitlines():
        path, tab, text = line.partition("\t")
        assert tab, f"not <file><TAB><text>: {line!r}"
        lines[path] = text
    logs = {m["path"]: m for m in _FILE_LOG.finditer(result.stderr)}
    return result, paths, lines, logs


@pytest.mark.parametrize("kind", sorted(ALL_BAD))
def test_transcribe_names_bad_kind(kind: str, transcription) -> None:
    result, paths, lines, _ = transcription
    path = str(paths[kind])

    assert f"transcribe: ERROR: {path}: {ALL_BAD[kind][1]}" in result.stderr
    assert path not in lines


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_transcribe_transcribes_good_kind(kind: str, transcription) -> None:
    result, paths, lines, logs = transcription
    path = str(paths[kind])

    assert path in lines, result.stderr[-3000:]
    assert float(logs[path]["seconds"]) == pytest.approx(
        soundfile.info(path).duration, abs=1e-3
    )
    if kind == "50 ms clip":
        assert re.search(
            rf"transcribe: note: {re.escape(path)}: 50 ms is shorter than the "
            r"model's minimum of \d+ ms; padded with silence to 200 ms",
            result.stderr,
        )


def test_transcribe_exit_status_order_and_no_traceback(transcription) -> None:
    result, paths, lines, _ = transcription
    good = [str(p) for k, p in paths.items() if k not in ALL_BAD]

    assert result.returncode == 1
    assert list(lines) == good  # every good file, in the order given
    assert "Traceback" not in result.stderr
    assert (
        f"transcribe: {len(ALL_BAD)} of {len(paths)} file(s) not transcribed"
        in result.stderr
    )


def test_transcribe_three_minutes_completely_in_bounded_memory(transcription):
    _, paths, lines, logs = transcription
    ten, long = logs[str(paths["10 s"])], logs[str(paths["3 min"])]

    assert str(paths["3 min"]) in lines
    assert float(long["seconds"]) == 180.0  # every sample went to the model
    assert int(long["windows"]) >= 9  # in windows of at most 20 s
    assert int(long["rss"]) - int(ten["rss"]) < MEMORY_GROWTH_BOUND_MIB


def test_transcribe_good_files_only_exits_zero(packed_model: Path, tmp_path: Path):
    silence, short = GOOD["3 s of silence"](tmp_path), GOOD["50 ms clip"](tmp_path)
    result = run(
        [*TRANSCRIBE, "--model", packed_model]
        + ["--unpack_dir", tmp_path / "unpacked", silence, short],
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        str(silence),
        str(short),
    ]
