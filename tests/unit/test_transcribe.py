"""``python -m espnet_shared_conformer.bin.transcribe``: the package's command.

Bad audio of every kind, long recordings and memory are tested in
``tests/recipe/test_bad_audio.py`` (with the recipe's audio helpers); here,
what the command itself promises: its exit codes and messages, a quiet
terminal (the transcript on stdout, nothing on stderr unless ``--verbose``)
and a start that imports none of ESPnet's task zoo. One tiny model, trained
once, packed with its lexicon and word LM as stage 14 packs it.
"""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("flashlight.lib.text.decoder")

from tiny_asr import TEXT, train_tiny_ctc_model  # noqa: E402

from espnet_shared_conformer._cli import captured_output  # noqa: E402

TRANSCRIBE = [sys.executable, "-m", "espnet_shared_conformer.bin.transcribe"]


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TRANSCRIBE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """The tiny model's zip with decoding YAML, lexicon and word LM, and its wav."""
    from espnet2.main_funcs.pack_funcs import pack

    trained = train_tiny_ctc_model(tmp_path_factory.mktemp("trained"))
    zip_path = trained["root"] / "packed.zip"
    with contextlib.chdir(trained["root"]):  # pack keeps relative paths
        pack(
            files=dict(asr_model_file=trained["exp"] / "valid.loss.ave.pth"),
            yaml_files=dict(asr_train_config=trained["exp"] / "config.yaml"),
            outpath=zip_path,
            option=[trained["decode"], trained["lexicon"], trained["word_lm"]],
        )
    return dict(trained, zip=zip_path, wav=trained["root"] / "utt1.wav")


def test_a_missing_model_is_reported(tmp_path):
    result = _run("--model", tmp_path / "none.zip", "a.wav")

    assert result.returncode == 1
    assert "transcribe: ERROR: no such model file or directory" in result.stderr
    assert result.stdout == ""


def test_a_search_window_longer_than_the_window_is_a_usage_error(tmp_path):
    model = tmp_path / "model.zip"
    model.write_bytes(b"")
    result = _run("--model", model, "--search_seconds", "30", "a.wav")

    assert result.returncode == 2
    assert "--search_seconds (30.0) must be in (0, --window_seconds (20.0)]" in (
        result.stderr
    )


def test_the_transcript_alone_on_a_quiet_terminal(packed, tmp_path):
    """KenLM's progress bar, ESPnet's notices and warnings stay off stderr;
    --verbose shows them (so there is something to keep off)."""
    unpack = tmp_path / "unpacked"
    quiet = _run("--model", packed["zip"], "--unpack_dir", unpack, packed["wav"])
    verbose = _run(
        "--model", packed["zip"], "--unpack_dir", unpack, "--verbose", packed["wav"]
    )

    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == f"{packed['wav']}\t{TEXT}\n"
    assert quiet.stderr == ""
    assert verbose.stdout == quiet.stdout
    assert "Reading " in verbose.stderr and "*****" in verbose.stderr  # KenLM's


def test_a_bad_option_in_the_model_is_reported_without_the_noise(packed, tmp_path):
    result = _run(
        "--model", packed["zip"], "--unpack_dir", tmp_path, "--beam_size", "3", "a.wav"
    )

    assert result.returncode == 1
    assert result.stderr.startswith(f"transcribe: ERROR: cannot load {packed['zip']}")
    assert "beam_size=3 tunes ESPnet's beam search" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_loading_a_lexicon_model_imports_no_espnet_task(packed, tmp_path):
    """ESPnet's ASR task and inference binary import every model ESPnet has
    (most of the command's start); the recipe's models need neither."""
    code = (
        "import sys\n"
        "from espnet_shared_conformer.inference import load_model\n"
        f"model = load_model({str(packed['zip'])!r}, unpack_dir={str(tmp_path)!r})\n"
        "print(model.lexicon_decoder is not None,\n"
        "      [m for m in ('espnet2.tasks.asr', 'espnet2.bin.asr_inference',\n"
        "                   'espnet2.tasks.abs_task') if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "True []"


# ---------------------------------------------------------------- the parts


#: Configs the fast path builds: the tiny model's own, and the other choices
#: it knows (the recipe's SpecAugment and global MVN; fbank input).
FAST_PATH_CONFIGS = {
    "as trained": {},
    "specaug, global_mvn": {
        "specaug": "specaug",
        "specaug_conf": {
            "apply_time_warp": False,
            "apply_freq_mask": True,
            "freq_mask_width_range": [0, 5],
            "num_freq_mask": 1,
            "apply_time_mask": False,
        },
        "normalize": "global_mvn",
    },
    "fbank input, no normalize": {"input_size": 20, "normalize": None},
}


@pytest.mark.parametrize("change", FAST_PATH_CONFIGS.values(), ids=FAST_PATH_CONFIGS)
def test_the_model_built_without_espnets_task_is_espnets(packed, tmp_path, change):
    """Same classes, same weights, same encoder output as ASRTask builds."""
    import numpy as np
    from espnet2.tasks.asr import ASRTask

    from espnet_shared_conformer import register
    from espnet_shared_conformer._asr_model import build_from_files

    register()
    config = yaml.safe_load((packed["exp"] / "config.yaml").read_text())
    if change.get("normalize") == "global_mvn":
        stats = tmp_path / "feats_stats.npz"
        rng = np.random.default_rng(0)
        np.savez(
            stats, count=100, sum=rng.normal(size=20), sum_square=np.full(20, 300.0)
        )
        change = dict(change, normalize_conf={"stats_file": str(stats)})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, **change}))
    config = tmp_path / "config.yaml"
    # The trained weights, plus what the changed config adds (MVN statistics).
    espnets, _ = ASRTask.build_model_from_file(
        config, packed["exp"] / "valid.loss.ave.pth", "cpu"
    )
    weights = tmp_path / "model.pth"
    torch.save(espnets.state_dict(), weights)

    ours, our_args = build_from_files(config, weights)
    espnets, espnet_args = ASRTask.build_model_from_file(config, weights, "cpu")

    assert [type(m) for m in ours.modules()] == [type(m) for m in espnets.modules()]
    assert ours.training == espnets.training
    theirs = espnets.state_dict()
    assert list(ours.state_dict()) == list(theirs)
    assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items())
    assert vars(our_args) == vars(espnet_args)
    if "input_size" in change:
        speech = torch.randn(1, 50, change["input_size"])
    else:
        speech = torch.from_numpy(packed["samples"])[None]
    lengths = torch.tensor([speech.size(1)])
    with torch.no_grad():
        ours.eval(), espnets.eval()
        assert torch.equal(
            ours.encode(speech, lengths)[0], espnets.encode(speech, lengths)[0]
        )


@pytest.mark.parametrize(
    "change",
    [
        {"encoder": "conformer"},
        {"decoder": "transformer"},
        {"frontend": "s3prl"},
        {"normalize": "utterance_norm"},
        {"preencoder": "linear"},
        {"model": "espnet_ctc_segmentation"},
    ],
)
def test_other_models_are_left_to_espnets_task(packed, tmp_path, change):
    from espnet_shared_conformer._asr_model import build_from_files

    config = yaml.safe_load((packed["exp"] / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, **change}))
    weights = packed["exp"] / "valid.loss.ave.pth"

    assert build_from_files(tmp_path / "config.yaml", weights) is None


def test_weights_that_do_not_fit_are_left_to_espnets_task(packed, tmp_path):
    """ESPnet renames legacy checkpoints' keys; the fast path loads exact ones."""
    from espnet_shared_conformer._asr_model import build_from_files

    state = torch.load(packed["exp"] / "valid.loss.ave.pth", weights_only=True)
    renamed = {k.replace("ctc.ctc_lo", "ctc.lo"): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "legacy.pth")

    assert (
        build_from_files(packed["exp"] / "config.yaml", tmp_path / "legacy.pth") is None
    )


def test_speech2text_defaults_read_from_source_are_the_signatures():
    import inspect

    from espnet2.bin.asr_inference import Speech2Text

    from espnet_shared_conformer.inference import _speech2text_defaults

    signature = inspect.signature(Speech2Text.__init__).parameters.items()
    assert _speech2text_defaults() == {
        name: p.default
        for name, p in signature
        if p.default is not inspect.Parameter.empty
    }


def test_captured_output_takes_what_c_code_writes_and_shows_it_on_failure(capfd):
    with captured_output() as captured:
        os.write(2, b"a C library's progress bar\n")
        os.write(1, b"a notice on stdout\n")
    assert capfd.readouterr() == ("", "")
    assert captured.text.splitlines() == [
        "a C library's progress bar",
        "a notice on stdout",
    ]

    with pytest.raises(ValueError), captured_output(expected=(ValueError,)):
        os.write(2, b"noise\n")
        raise ValueError("reported by the caller")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError), captured_output(expected=(ValueError,)):
        os.write(2, b"what explains it\n")
        raise RuntimeError("unexpected")
    assert capfd.readouterr().err == "what explains it\n"
    with captured_output(enabled=False):
        os.write(2, b"verbose\n")
    assert capfd.readouterr().err == "verbose\n"


def test_a_config_that_is_not_an_asr_dump_is_left_to_espnet(tmp_path):
    from espnet_shared_conformer._asr_model import build_from_files

    (tmp_path / "config.yaml").write_text("encoder: shared_conformer\n")
    assert build_from_files(tmp_path / "config.yaml", Path("unused.pth")) is None
