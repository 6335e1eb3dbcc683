"""`load_model()`: a trained model decodes with its own decoding config.

One tiny CTC-only model (no attention decoder, character tokens) is trained
once per module to say "CAT TACO" for one waveform; the tests decode it from
an experiment directory and from a zip packed by ESPnet's ``pack``, through
the loader and through the inference binary (called in-process).
"""

import contextlib
import logging
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("flashlight.lib.text.decoder")

from tiny_asr import FS, TEXT, train_tiny_ctc_model  # noqa: E402

from espnet_shared_conformer.inference import (  # noqa: E402
    RECORD_NAME,
    count_quantized,
    load_model,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Dict[str, Any]:
    return train_tiny_ctc_model(tmp_path_factory.mktemp("trained"))


def _decode_cli(trained, output_dir: Path, *extra: str, wav_scp=None) -> str:
    """ESPnet's inference through the package's binary, in this process; the
    first utterance's text."""
    from espnet_shared_conformer.bin import asr_inference

    exp = trained["exp"]
    wav_scp = wav_scp or trained["wav_scp"]
    asr_inference.main(
        [
            "--asr_train_config",
            str(exp / "config.yaml"),
            "--asr_model_file",
            str(exp / "valid.loss.ave.pth"),
            "--data_path_and_name_and_type",
            f"{wav_scp},speech,sound",
            "--output_dir",
            str(output_dir),
            "--ngpu",
            "0",
            "--num_workers",
            "0",  # no forked loader worker in this multi-threaded process
            *extra,
        ]
    )
    text = (output_dir / "1best_recog" / "text").read_text().split(" ", 1)[1]
    return text.strip()


def test_espnets_defaults_fail_and_the_loader_does_not(trained):
    """Speech2Text's ctc_weight 0.5 scores half with a decoder the model does
    not have; the loader decodes with ctc_weight 1.0."""
    from espnet2.bin.asr_inference import Speech2Text

    exp = trained["exp"]
    plain = Speech2Text(str(exp / "config.yaml"), str(exp / "valid.loss.ave.pth"))
    assert plain(trained["samples"])[0][0] != TEXT
    transcribe = load_model(exp, decoding=trained["decode"], use_lexicon=False)
    assert transcribe.options["ctc_weight"] == 1.0
    assert transcribe.options["beam_size"] == 4
    assert transcribe.lexicon_decoder is None and transcribe.fs == FS
    assert transcribe(trained["samples"]) == TEXT


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(ctc_weight=0.5), "ctc_weight=0.5 gives the attention decoder"),
        (dict(partial_ar=True), "partial_ar=True needs an attention decoder"),
        (dict(beam=3), "unknown decoding options"),
        (dict(word_score=2.0), "word_score applies to the lexicon search only"),
        (dict(device="cuda", quantize_asr_model=True), "runs on the CPU, not cuda"),
    ],
)
def test_loader_refuses_what_cannot_apply(trained, options, message):
    with pytest.raises(ValueError, match=message):
        load_model(trained["exp"], decoding=trained["decode"], **options)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(beam_size=3), "beam_size=3 tunes ESPnet's beam search"),
        (dict(lm_file="lm.pth"), "decodes with its word LM only; drop --lm_file"),
        (dict(quantize_lm=True), "quantize_lm=True: the lexicon search"),
        # (streaming=True is a streaming decoding's, kept for the recognizer.)
        (dict(time_sync=True), "time_sync=True: the lexicon search"),
        (dict(quantize_modules=["Conv1d"]), "quantize_modules=\\['Conv1d'\\]"),
    ],
)
def test_lexicon_loader_refuses_what_it_cannot_apply(trained, options, message):
    lexicon = dict(lexicon_file=trained["lexicon"], word_lm_file=trained["word_lm"])
    if "quantize_modules" in options:
        options = dict(options, quantize_asr_model=True)
    with pytest.raises(ValueError, match=message):
        load_model(trained["exp"], decoding=trained["decode"], **lexicon, **options)


def test_the_binary_records_and_the_loader_reads_the_exp_dir(trained, caplog):
    exp = trained["exp"]
    plain_dir = exp / "decode_plain" / "logdir" / "output.1"
    assert _decode_cli(trained, plain_dir, "--config", str(trained["decode"])) == TEXT
    record = yaml.safe_load((plain_dir / RECORD_NAME).read_text())
    assert record["ctc_weight"] == 1.0 and record["beam_size"] == 4
    assert record["asr_model_file"] == str((exp / "valid.loss.ave.pth").resolve())
    assert "output_dir" not in record and "data_path_and_name_and_type" not in record
    transcribe = load_model(exp)
    assert transcribe.lexicon_decoder is None and transcribe(trained["samples"]) == TEXT

    lexicon_dir = exp / "decode_lexicon" / "logdir" / "output.1"
    lexicon = ["--lexicon_file", str(trained["lexicon"])]
    lexicon += ["--word_lm_file", str(trained["word_lm"])]
    with caplog.at_level(logging.INFO):
        text = _decode_cli(
            trained, lexicon_dir, "--config", str(trained["decode"]), *lexicon
        )
    assert text == TEXT
    # The YAML's beam_size serves the other search: said, not dropped silently.
    assert "beam_size from" in caplog.text and "do not apply" in caplog.text
    with pytest.raises(ValueError, match="decoded 2 ways.*decode_lexicon"):
        load_model(exp)
    transcribe = load_model(exp, decoding=exp / "decode_lexicon")
    assert transcribe.lexicon_decoder is not None
    assert transcribe.options["lexicon_beam_size"] == 50
    assert transcribe(trained["samples"]) == TEXT


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ctc_weight", "0.3"], "ctc_weight=0.3 gives the attention decoder"),
        (["--quantize_lm", "true"], "--quantize_lm true: there is no LM"),
        (["--lexicon_file", "LEX", "--beam_size", "4"], "beam_size=4 tunes ESPnet's"),
        (["--lexicon_file", "LEX", "--ngram_file", "x"], "drop --ngram_file"),
    ],
)
def test_the_binary_refuses_what_it_would_drop(trained, tmp_path, extra, message):
    extra = [str(trained["lexicon"]) if e == "LEX" else e for e in extra]
    with pytest.raises(SystemExit, match=message):
        _decode_cli(trained, tmp_path / "out", *extra)
    assert not (tmp_path / "out" / RECORD_NAME).exists()


@pytest.mark.parametrize("lexicon", [False, True])
@pytest.mark.parametrize("option", ["--quantize_asr_model", "--quantize_lm"])
def test_the_binary_refuses_quantizing_on_a_gpu_up_front(
    trained, tmp_path, lexicon, option
):
    """Checked on the arguments: the model file does not even exist, and no
    GPU is needed to see the refusal."""
    from espnet_shared_conformer.bin import asr_inference

    args = [
        "--asr_train_config",
        str(trained["exp"] / "config.yaml"),
        "--asr_model_file",
        str(tmp_path / "missing.pth"),
        "--data_path_and_name_and_type",
        f"{trained['wav_scp']},speech,sound",
        "--output_dir",
        str(tmp_path / "out"),
        "--ngpu",
        "1",
        option,
        "true",
    ]
    if lexicon:
        args += ["--lexicon_file", str(trained["lexicon"])]
    with pytest.raises(SystemExit, match=f"{option} true with --ngpu 1: .*CPU only"):
        asr_inference.main(args)
    assert not (tmp_path / "out").exists()


def test_a_too_short_utterance_does_not_stop_the_lexicon_decoding(
    trained, tmp_path, caplog
):
    """Between two good utterances, one too short for the encoder's
    subsampling: warned about by name, and given the placeholder ESPnet's own
    inference writes, line for line; the others are decoded."""
    import soundfile

    short = tmp_path / "short.wav"
    soundfile.write(short, trained["samples"][:600], FS)  # 5 frames: too few
    good = trained["root"] / "utt1.wav"
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text(f"a_good {good}\nb_short {short}\nc_good {good}\n")
    lexicon = ["--lexicon_file", str(trained["lexicon"])]
    lexicon += ["--word_lm_file", str(trained["word_lm"])]
    with caplog.at_level(logging.WARNING):
        _decode_cli(trained, tmp_path / "lexicon", *lexicon, wav_scp=wav_scp)
    assert "Utterance ['b_short']" in caplog.text
    assert "too short" in caplog.text.lower()
    _decode_cli(trained, tmp_path / "espnet", wav_scp=wav_scp)

    for name in ("text", "token", "token_int", "score"):
        ours = (tmp_path / "lexicon" / "1best_recog" / name).read_text()
        espnets = (tmp_path / "espnet" / "1best_recog" / name).read_text()
        ours, espnets = ours.splitlines(), espnets.splitlines()
        assert [line.split(" ", 1)[0] for line in ours] == [
            "a_good",
            "b_short",
            "c_good",
        ]
        assert ours[1] == espnets[1], name
    text = (tmp_path / "lexicon" / "1best_recog" / "text").read_text().splitlines()
    assert text[0] == f"a_good {TEXT}" and text[2] == f"c_good {TEXT}"


def test_packed_zip_decodes_with_its_lexicon(trained, tmp_path, monkeypatch):
    """The zip of recipe stage 14: decoding YAML, lexicon and word LM inside."""
    from espnet2.main_funcs.pack_funcs import pack

    root, exp = trained["root"], trained["exp"]
    monkeypatch.chdir(root)  # pack stores paths relative to the working dir
    pack(
        files=dict(asr_model_file=exp / "valid.loss.ave.pth"),
        yaml_files=dict(asr_train_config=exp / "config.yaml"),
        outpath=tmp_path / "packed.zip",
        option=[trained["decode"], trained["lexicon"], trained["word_lm"]],
    )
    transcribe = load_model(tmp_path / "packed.zip", unpack_dir=tmp_path / "unpacked")
    assert transcribe.lexicon_decoder is not None
    assert Path(transcribe.options["lexicon_file"]).is_relative_to(tmp_path)
    assert transcribe(trained["samples"]) == TEXT
    without = load_model(
        tmp_path / "packed.zip", unpack_dir=tmp_path / "unpacked", use_lexicon=False
    )
    assert without.lexicon_decoder is None and without(trained["samples"]) == TEXT

    # int8: the decoded model's Linear layers are quantized, and it still reads.
    fp32_linears = sum(
        type(m) is torch.nn.Linear for m in transcribe.asr_model.modules()
    )
    int8 = load_model(
        tmp_path / "packed.zip",
        unpack_dir=tmp_path / "unpacked",
        quantize_asr_model=True,
    )
    assert fp32_linears > 0
    assert count_quantized(int8.asr_model) == fp32_linears
    assert not any(type(m) is torch.nn.Linear for m in int8.asr_model.modules())
    assert int8(trained["samples"]) == TEXT


def test_the_binarys_lexicon_path_quantizes(trained, tmp_path, caplog):
    """--quantize_asr_model true with --lexicon_file decodes at int8."""
    exp = trained["exp"]
    fp32 = load_model(exp, decoding=trained["decode"], use_lexicon=False)
    linears = sum(type(m) is torch.nn.Linear for m in fp32.asr_model.modules())
    with caplog.at_level(logging.INFO):
        text = _decode_cli(
            trained,
            tmp_path / "out",
            "--lexicon_file",
            str(trained["lexicon"]),
            "--quantize_asr_model",
            "true",
        )
    assert text == TEXT
    assert f"dynamic qint8: {linears} Linear layers quantized" in caplog.text
    record = yaml.safe_load((tmp_path / "out" / RECORD_NAME).read_text())
    assert record["quantize_asr_model"] is True


def test_input_of_the_wrong_shape(trained):
    transcribe = load_model(trained["exp"], decoding=trained["decode"])
    with pytest.raises(ValueError, match=r"takes \(T,\) samples"):
        transcribe(np.zeros((100, 2), dtype=np.float32))


def test_missing_sources_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model"):
        load_model(tmp_path / "nothing.zip")
    (tmp_path / "truncated.zip").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ValueError, match="truncated.zip: not a readable model archive"):
        load_model(tmp_path / "truncated.zip")
    (tmp_path / "config.yaml").write_text("encoder: shared_conformer\n")
    with pytest.raises(FileNotFoundError, match=f"no {RECORD_NAME}"):
        load_model(tmp_path)


def test_every_option_of_espnets_binary_is_audited_for_the_lexicon_path():
    """Applied, a beam-search option (refused when given), refused, or
    per-run: a new ESPnet option fails here until it is placed."""
    from espnet_shared_conformer import inference
    from espnet_shared_conformer.bin.asr_inference import get_parser

    placed = {
        *inference._APPLIED_WITH_LEXICON,
        *inference._SEARCH_OPTIONS,
        *inference._NOT_WITH_LEXICON,
        *inference._PER_RUN,
        *inference.LEXICON_OPTIONS,
        *inference.STREAMING_OPTIONS,  # need --streaming true (test_recognizer)
    }
    dests = {a.dest for a in get_parser()._actions} - {"help"}
    assert dests - placed == set()


def _pack_recipe(trained, recipe: Path, decode: str) -> Path:
    """A recipe directory (exp/, conf/) and the zip stage 14 packs from it."""
    import shutil

    from espnet2.main_funcs.pack_funcs import pack

    shutil.copytree(trained["exp"], recipe / "exp" / "asr", dirs_exist_ok=True)
    (recipe / "exp" / "word_lm").mkdir(exist_ok=True)
    for name in ("lexicon", "word_lm"):
        shutil.copy(trained[name], recipe / "exp" / "word_lm")
    (recipe / "conf").mkdir(exist_ok=True)
    (recipe / "conf" / "decode_asr.yaml").write_text(decode)
    (recipe / "packed.zip").unlink(missing_ok=True)
    with contextlib.chdir(recipe):  # pack stores paths relative to the cwd
        pack(
            files=dict(asr_model_file="exp/asr/valid.loss.ave.pth"),
            yaml_files=dict(asr_train_config="exp/asr/config.yaml"),
            outpath="packed.zip",
            option=[
                "conf/decode_asr.yaml",
                "exp/word_lm/lexicon.txt",
                "exp/word_lm/word_lm.arpa",
            ],
        )
    return recipe / "packed.zip"


def test_a_packed_zip_loads_again_from_the_same_unpack_dir(
    trained, tmp_path, monkeypatch
):
    """The recipe's layout: ``--unpack_dir unpacked`` next to exp/. ESPnet's
    unpack cache looks one level up and returns the recipe's own exp/ files;
    the loader takes the model's files from the archive's own members."""
    recipe = tmp_path / "recipe"
    packed = _pack_recipe(trained, recipe, "lexicon_beam_size: 50\n")
    monkeypatch.chdir(recipe)
    unpacked = recipe / "unpacked"
    first = load_model(packed, unpack_dir="unpacked")
    model_file = unpacked / "exp" / "asr" / "valid.loss.ave.pth"
    written = model_file.stat().st_mtime_ns
    # Files of others in the unpack dir are not the model's.
    (unpacked / "conf" / "notes.yaml").write_text("beam_size: 1\n")
    for transcribe in (first, load_model(packed, unpack_dir="unpacked")):
        assert transcribe.lexicon_decoder is not None
        assert transcribe.options["lexicon_beam_size"] == 50
        assert Path(transcribe.options["lexicon_file"]).is_relative_to(unpacked)
        assert transcribe(trained["samples"]) == TEXT
    assert model_file.stat().st_mtime_ns == written  # unpacked once

    # From another working directory: the unpacked config names absolute paths.
    monkeypatch.chdir(tmp_path)
    assert load_model(packed, unpack_dir=unpacked)(trained["samples"]) == TEXT

    # Another archive into the same directory is unpacked, not taken for the first.
    packed = _pack_recipe(trained, recipe, "lexicon_beam_size: 7\n")
    assert load_model(packed, unpack_dir=unpacked).options["lexicon_beam_size"] == 7


def test_a_packed_zip_loads_again_from_the_default_unpack_dir(
    trained, tmp_path, monkeypatch
):
    packed = _pack_recipe(trained, tmp_path / "recipe", "lexicon_beam_size: 50\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for _ in range(2):
        transcribe = load_model(packed)
        assert Path(transcribe.options["lexicon_file"]).is_relative_to(
            tmp_path / "cache"
        )
        assert transcribe(trained["samples"]) == TEXT
