"""The recipe's configs: defaults resolve, the tiny 960 h models keep their budget."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml
from pipeline_helpers import RECIPE_DIR, UTILS_DIR

CONF = RECIPE_DIR / "conf"
SHARED_960H = sorted((CONF / "tuning").glob("train_asr_shared_conformer_*_960h.yaml"))
LEVELS = {"l1_repeat", "l2_share_modules", "l3_tie", "l4_lowrank", "combined"}
# The combined model trained to stream, next to the levels.
VARIANTS = {"streaming"}


def load(path):
    with path.open() as f:
        return yaml.safe_load(f)


def best_model_name(config):
    """Run pyscripts/utils/best_model_name.py on a config, as asr.sh does."""
    script = UTILS_DIR / "best_model_name.py"
    return subprocess.run(
        [sys.executable, str(script), str(config)], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "name",
    [
        "train_asr.yaml",
        "train_asr_debug.yaml",
        "decode_asr.yaml",
        "train_lm.yaml",
        "train_asr_960h.yaml",
        "decode_asr_960h.yaml",
        "train_lm_960h.yaml",
    ],
)
def test_default_configs_are_symlinks_into_tuning(name):
    path = CONF / name
    assert path.is_symlink()
    assert path.resolve().parent == (CONF / "tuning").resolve()
    assert isinstance(load(path), dict)


def test_one_960h_config_per_sharing_level():
    names = {
        p.name[len("train_asr_shared_conformer_") : -len("_960h.yaml")]
        for p in SHARED_960H
    }
    assert names == LEVELS | VARIANTS


@pytest.mark.parametrize("corpus", ["960h", "mini"])
def test_streaming_configs_are_their_defaults_trained_to_stream(corpus):
    """The streaming configs change nothing but the streaming options, and
    one stream's cache at 640 ms chunks with 4 left chunks is at most the
    model's weights (issue 21)."""
    params = pytest.importorskip("espnet_shared_conformer.params")
    base = "combined_960h" if corpus == "960h" else "mini"
    streaming = CONF / "tuning" / f"train_asr_shared_conformer_streaming_{corpus}.yaml"
    config = load(streaming)
    default = load(CONF / "tuning" / f"train_asr_shared_conformer_{base}.yaml")
    added = {
        "causal_conv": True,
        "dynamic_chunk_training": True,
        "dynamic_left_chunks": True,
    }
    assert config["encoder_conf"] == {**default["encoder_conf"], **added}
    assert {k: v for k, v in config.items() if k != "encoder_conf"} == {
        k: v for k, v in default.items() if k != "encoder_conf"
    }
    report = params.ParameterReport.from_config(
        str(streaming), vocab_size=256 if corpus == "960h" else 31
    )
    cache = report.streaming_cache
    assert (cache.chunk_size, cache.num_left_chunks) == (16, 4)
    assert 0 < cache.total <= report.total


@pytest.mark.parametrize("path", SHARED_960H, ids=lambda p: p.stem)
def test_tiny_960h_models_stay_within_budget(path):
    params = pytest.importorskip("espnet_shared_conformer.params")
    config = load(path)
    encoder = config["encoder_conf"]
    assert config["encoder"] == "shared_conformer"
    assert encoder["num_blocks"] >= 16
    assert encoder["output_size"] >= 256

    report = params.ParameterReport.from_config(str(path), vocab_size=256)

    assert report.total <= 5_000_000
    assert report.compression > 5


def test_baseline_is_espnets_conformer():
    config = load(CONF / "tuning" / "train_asr_conformer_960h.yaml")
    assert config["encoder"] == "conformer"
    assert (
        config["encoder_conf"]["num_blocks"],
        config["encoder_conf"]["output_size"],
    ) == (12, 512)


def test_debug_config_trains_one_epoch():
    config = load(CONF / "train_asr_debug.yaml")
    assert config["max_epoch"] == 1
    assert config["encoder"] == "shared_conformer"


def test_960h_decoding_is_joint_ctc_attention():
    config = load(CONF / "decode_asr_960h.yaml")
    assert 0 < config["ctc_weight"] < 1
    assert config["beam_size"] >= 1


def test_mini_decoding_is_ctc_with_the_lm():
    """The mini model has no attention decoder: the default decoding scores
    with CTC and the LM."""
    config = load(CONF / "decode_asr.yaml")
    assert config["ctc_weight"] == 1.0
    assert config["lm_weight"] > 0
    assert config["beam_size"] >= 1


def test_mini_schedule_anneals_and_stays_down_past_its_end():
    """The mini model's rate rises to its peak, decays to the floor at the
    list's last step, and a run longer than the list (more epochs, more data)
    stays at the floor instead of ESPnet's fallback jumping back up."""
    from espnet2.schedulers.piecewise_linear_warmup_lr import (
        PiecewiseLinearWarmupLR,
    )

    config = load(CONF / "train_asr.yaml")
    assert config["scheduler"] == "piecewiselinearwarmuplr"
    steps = config["scheduler_conf"]["warmup_steps_list"]
    rates = config["scheduler_conf"]["warmup_lr_list"]
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], **config["optim_conf"])
    scheduler = PiecewiseLinearWarmupLR(optimizer, **config["scheduler_conf"])
    rate = [None]  # rate[n]: the learning rate of the n-th update
    for _ in range(2 * steps[-1]):
        rate.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert max(rate[1:]) == pytest.approx(max(rates))
    assert rate[steps[1]] == pytest.approx(max(rates))
    assert rate[steps[-1]] == pytest.approx(rates[-1])
    assert max(rate[steps[-1] :]) <= rates[-1] * 1.0001


def test_mini_schedule_ends_at_the_last_step_of_the_last_epoch():
    """The rate reaches its floor exactly when training stops: the epochs have
    a fixed number of steps (speed perturbation triples the data), and the
    schedule's last step is max_epoch of them."""
    config = load(CONF / "train_asr.yaml")
    steps = config["scheduler_conf"]["warmup_steps_list"]
    assert steps[-1] == config["max_epoch"] * config["num_iters_per_epoch"]


def test_mini_model_is_ctc_only_and_decodes_its_loss_average():
    """Without a decoder ESPnet reports no accuracy: the best epochs must be
    chosen by a criterion a CTC-only model has, and asr.sh must decode the
    file that criterion's average is written to."""
    config = load(CONF / "train_asr.yaml")
    assert config["model_conf"]["ctc_weight"] == 1.0
    assert config["decoder"] == "none"
    assert config["best_model_criterion"][0][:2] == ["valid", "loss"]
    assert (
        best_model_name(CONF / "train_asr.yaml").stdout.strip() == "valid.loss.ave.pth"
    )


@pytest.mark.parametrize(
    "criteria, expected",
    [
        (None, "valid.loss.ave.pth"),  # ESPnet's default list: first valid entry
        (
            [["train", "loss", "min"], ["valid", "cer_ctc", "min"]],
            "valid.cer_ctc.ave.pth",
        ),
        ([["valid", "acc", "max"], ["valid", "loss", "min"]], "valid.acc.ave.pth"),
    ],
)
def test_best_model_name_follows_the_first_valid_criterion(
    tmp_path, criteria, expected
):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"best_model_criterion": criteria}))
    out = best_model_name(config)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_best_model_name_refuses_a_config_without_a_valid_criterion(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump({"best_model_criterion": [["train", "loss", "min"]]})
    )
    out = best_model_name(config)
    assert out.returncode != 0
    assert "no 'valid' entry" in out.stderr and str(config) in out.stderr
