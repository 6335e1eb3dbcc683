"""Stage 15's decoding-speed measurement loads the packed model as a user does.

``pyscripts/utils/report.py`` times ``pyscripts/utils/packed_model.py``, which delegates to
``espnet_shared_conformer.inference.load_model``: the packed decoding config
and lexicon apply, and a zip whose decoding config is ambiguous is an error,
not a silent fall-back to ESPnet's defaults. A real, randomly initialized
packed model (``bad_audio_helpers.build_packed_model``) and real wav files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from bad_audio_helpers import DECODING, RATE, TOKENS, build_packed_model, write
from pipeline_helpers import local_module

pytest.importorskip("flashlight.lib.text.decoder")

packed_model = local_module("packed_model")
report = local_module("report")


def _data_dir(root: Path, seconds=(1.0, 0.5)) -> Path:
    """A dump dir of noise utterances: wav.scp and utt2num_samples."""
    rng = np.random.default_rng(0)
    data = root / "data"
    wav_scp, num_samples = [], []
    for i, s in enumerate(seconds):
        samples = (0.1 * rng.standard_normal(int(s * RATE))).astype(np.float32)
        path = write(root / "wav" / f"utt{i}.wav", samples, subtype="FLOAT")
        wav_scp.append(f"utt{i} {path}")
        num_samples.append(f"utt{i} {len(samples)}")
    data.mkdir()
    (data / "wav.scp").write_text("\n".join(wav_scp) + "\n")
    (data / "utt2num_samples").write_text("\n".join(num_samples) + "\n")
    return data


@pytest.fixture(scope="module")
def lexicon_zip(tmp_path_factory) -> Path:
    """A zip as stage 14 packs it with --use_word_lm true (lexicon, no LM here)."""
    from espnet_shared_conformer.lexicon import write_lexicon

    root = tmp_path_factory.mktemp("lexicon_model")
    write_lexicon(["THE", "FOX", "DOG"], TOKENS, root / "lexicon.txt")
    return build_packed_model(
        root / "model", blank_bias=10.0, extra_files=[root / "lexicon.txt"]
    )


def test_the_packed_model_decodes_as_load_model_does(lexicon_zip, tmp_path):
    from espnet_shared_conformer.inference import load_model

    model = packed_model.load_speech2text(lexicon_zip, tmp_path / "unpacked")
    assert model.lexicon_decoder is not None and model.n_mels is None
    assert model.fs == RATE
    data = _data_dir(tmp_path)
    wav = data.parent / "wav" / "utt0.wav"
    import soundfile

    samples, _ = soundfile.read(wav, dtype="float32")
    reference = load_model(lexicon_zip, unpack_dir=tmp_path / "unpacked")
    assert model.transcribe_file(wav) == reference(samples)
    # Every word comes from the lexicon: the lexicon search decoded.
    assert set(model.transcribe_file(wav).split()) <= {"THE", "FOX", "DOG"}

    without = packed_model.load_speech2text(
        lexicon_zip, tmp_path / "unpacked", use_lexicon=False
    )
    assert without.lexicon_decoder is None
    assert without.transcriber.options["beam_size"] == DECODING["beam_size"]


def test_report_measures_the_packed_model(lexicon_zip, tmp_path):
    data = _data_dir(tmp_path)
    measured = report.measure_rtf(lexicon_zip, data, 5)
    assert measured["utterances"] == 2 and measured["threads"] == 1
    assert measured["audio_seconds"] == 1.5
    # decode_seconds is rounded to 10 ms, the RTF computed before rounding.
    assert abs(measured["rtf"] * 1.5 - measured["decode_seconds"]) <= 0.005 + 1e-4
    assert measured["rtf"] > 0 and measured["load_seconds"] > 0


def test_an_ambiguous_decoding_config_is_an_error(tmp_path):
    """Two YAMLs besides the model's: which one stage 12 used is unknown."""
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(dict(DECODING, beam_size=9)))
    packed = build_packed_model(
        tmp_path / "model", blank_bias=10.0, extra_files=[other]
    )
    with pytest.raises(ValueError, match="holds 2 decoding YAMLs"):
        report.measure_rtf(packed, _data_dir(tmp_path), 1)
