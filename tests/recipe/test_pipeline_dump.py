"""Stage 3's dump helper: resampling to 16 kHz, formats, fbank, bad input."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from pipeline_helpers import (
    dominant_frequency,
    local_module,
    read_table,
    tone,
    write_data_dir,
)

dump_audio = local_module("dump_audio")


def dump(capsys, *args) -> tuple[int, str]:
    code = dump_audio.main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("rate,fmt", [(8000, "wav"), (48000, "flac"), (22050, "wav")])
def test_resamples_to_16k_keeping_the_content(tmp_path, capsys, rate, fmt):
    src = tone(tmp_path / f"in.{fmt}", rate, seconds=0.5, freq=1000.0)
    data = write_data_dir(tmp_path / "data", {"spk-utt1": str(src)})
    out = tmp_path / "dump" / "set"

    code, err = dump(capsys, data, out)

    assert code == 0, err
    path = read_table(out / "wav.scp")["spk-utt1"]
    samples, out_rate = soundfile.read(path)
    assert out_rate == 16000
    assert soundfile.info(path).format == "FLAC"
    assert abs(len(samples) - 8000) <= 1
    assert int(read_table(out / "utt2num_samples")["spk-utt1"]) == len(samples)
    assert dominant_frequency(samples, 16000) == pytest.approx(1000.0, abs=10)


def test_wav_output_stereo_input_and_companion_files(tmp_path, capsys):
    src = tone(tmp_path / "in.flac", 48000, channels=2)
    data = write_data_dir(
        tmp_path / "data", {"a-1": str(src)}, text={"a-1": "SOME  WORDS"}
    )
    out = tmp_path / "out"

    code, err = dump(capsys, "--audio_format", "wav", data, out)

    assert code == 0, err
    info = soundfile.info(read_table(out / "wav.scp")["a-1"])
    assert (info.format, info.samplerate, info.channels) == ("WAV", 16000, 1)
    assert read_table(out / "text") == {"a-1": "SOME  WORDS"}
    assert read_table(out / "spk2utt") == {"a": "a-1"}
    assert (out / "feats_type").read_text() == "raw\n"
    assert (out / "audio_format").read_text() == "wav\n"
    assert not (tmp_path / "out.tmp").exists()


def test_pipe_entries_are_run(tmp_path, capsys):
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    src = tone(tmp_path / "in.wav", 16000, seconds=1.0)
    data = write_data_dir(tmp_path / "data", {"a-1": f"sox {src} -t wav - speed 2.0 |"})

    code, err = dump(capsys, data, tmp_path / "out")

    assert code == 0, err
    assert abs(int(read_table(tmp_path / "out" / "utt2num_samples")["a-1"]) - 8000) < 50


def test_fbank_features(tmp_path, capsys):
    import kaldiio

    src = tone(tmp_path / "in.wav", 8000, seconds=1.0)
    data = write_data_dir(tmp_path / "data", {"a-1": str(src), "a-2": str(src)})
    out = tmp_path / "fbank"

    code, err = dump(capsys, "--feats_type", "fbank", "--n_mels", "40", data, out)

    assert code == 0, err
    feats = kaldiio.load_scp(str(out / "feats.scp"))
    assert feats["a-1"].shape == (98, 40)  # 1 s, 25 ms windows every 10 ms
    assert read_table(out / "feats_shape") == {"a-1": "98,40", "a-2": "98,40"}
    np.testing.assert_array_equal(feats["a-1"], feats["a-2"])


def _digest(directory: Path) -> str:
    h = hashlib.md5()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(directory).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_rerun_gives_identical_output(tmp_path, capsys):
    wav = {
        f"s-{i}": str(tone(tmp_path / f"{i}.wav", 44100, freq=300 + i))
        for i in range(5)
    }
    data = write_data_dir(tmp_path / "data", wav)
    out = tmp_path / "out"

    assert dump(capsys, "--nj", "2", data, out)[0] == 0
    first = _digest(out)
    assert dump(capsys, "--nj", "1", data, out)[0] == 0

    assert _digest(out) == first


@pytest.fixture
def good(tmp_path) -> dict:
    return {
        "s-1": str(tone(tmp_path / "1.wav", 16000)),
        "s-2": str(tone(tmp_path / "2.wav", 16000)),
        "s-3": str(tone(tmp_path / "3.wav", 16000)),
    }


def _assert_fails_cleanly(capsys, data, out, *expected):
    out.mkdir(parents=True)
    (out / "wav.scp").write_text("previous content\n")

    code, err = dump(capsys, data, out)

    assert code == 1
    for text in expected:
        assert text in err
    assert (out / "wav.scp").read_text() == "previous content\n"
    assert not out.with_name(out.name + ".tmp").exists()


def test_missing_audio_names_file_and_line(tmp_path, capsys, good):
    good["s-2"] = str(tmp_path / "nowhere.flac")
    data = write_data_dir(tmp_path / "data", good)
    _assert_fails_cleanly(
        capsys, data, tmp_path / "out", f"{data / 'wav.scp'}:2", "nowhere.flac"
    )


def test_corrupt_audio_names_file_and_line(tmp_path, capsys, good):
    bad = tmp_path / "corrupt.flac"
    bad.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    good["s-3"] = str(bad)
    data = write_data_dir(tmp_path / "data", good)
    _assert_fails_cleanly(
        capsys, data, tmp_path / "out", f"{data / 'wav.scp'}:3", "corrupt.flac"
    )


def test_too_low_sample_rate_is_refused(tmp_path, capsys, good):
    good["s-1"] = str(tone(tmp_path / "low.wav", 4000, freq=500))
    data = write_data_dir(tmp_path / "data", good)
    _assert_fails_cleanly(
        capsys, data, tmp_path / "out", f"{data / 'wav.scp'}:1", "4000 Hz"
    )


def test_empty_transcript_names_text_line(tmp_path, capsys, good):
    data = write_data_dir(
        tmp_path / "data", good, text={"s-1": "A", "s-2": "", "s-3": "C"}
    )
    _assert_fails_cleanly(
        capsys, data, tmp_path / "out", f"{data / 'text'}:2", "empty transcript"
    )


def test_disagreeing_files_name_the_line(tmp_path, capsys, good):
    data = write_data_dir(tmp_path / "data", good)
    with (data / "utt2spk").open("a") as f:
        f.write("s-4 s\n")
    _assert_fails_cleanly(
        capsys, data, tmp_path / "out", f"{data / 'utt2spk'}:4", "'s-4'"
    )


def test_spk2utt_disagreeing_with_utt2spk(tmp_path, capsys, good):
    data = write_data_dir(tmp_path / "data", good)
    (data / "spk2utt").write_text("s s-1 s-2\n")
    _assert_fails_cleanly(capsys, data, tmp_path / "out", "'s-3'", "spk2utt")


def test_duplicate_utterance_names_both_lines(tmp_path, capsys, good):
    data = write_data_dir(tmp_path / "data", good)
    (data / "wav.scp").write_text(
        (data / "wav.scp").read_text() + f"s-1 {good['s-1']}\n"
    )
    _assert_fails_cleanly(
        capsys, data, tmp_path / "out", f"{data / 'wav.scp'}:4", "line 1"
    )


def test_missing_data_dir(tmp_path, capsys):
    code, err = dump(capsys, tmp_path / "absent", tmp_path / "out")
    assert code == 1
    assert "absent" in err
    assert not (tmp_path / "out").exists()
