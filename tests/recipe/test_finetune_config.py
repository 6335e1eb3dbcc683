"""pyscripts/utils/finetune_config.py: the fine-tuning config of a compressed model is
one ESPnet's trainer accepts, built from a real experiment dump."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from pipeline_helpers import RECIPE_DIR, UTILS_DIR, local_module

finetune = local_module("finetune_config")
SCRIPT = UTILS_DIR / "finetune_config.py"
DEBUG = RECIPE_DIR / "conf" / "tuning" / "train_asr_shared_conformer_debug.yaml"


def asr_parser():
    from espnet2.tasks.asr import ASRTask

    import espnet_shared_conformer

    espnet_shared_conformer.register()
    return ASRTask.get_parser()


@pytest.fixture
def experiment(tmp_path):
    """A source experiment's config.yaml as ESPnet's trainer dumps it (the
    whole namespace plus the fields the trainer adds), and a compressed one."""
    args = asr_parser().parse_args(
        ["--config", str(DEBUG), "--output_dir", "exp/src", "--token_list", "t.txt"]
    )
    dump = dict(vars(args), required=["output_dir", "token_list"])
    dump.update(distributed=False, version="202611")
    source = tmp_path / "config.yaml"
    source.write_text(yaml.safe_dump(dump))
    compressed = tmp_path / "compressed.yaml"
    encoder_conf = dict(dump["encoder_conf"], lowrank_rank=8)
    compressed.write_text(
        yaml.safe_dump(
            dict(dump, encoder="shared_conformer", encoder_conf=encoder_conf)
        )
    )
    return source, compressed


def test_written_config_is_accepted_by_espnet_and_keeps_the_compression(
    experiment, tmp_path
) -> None:
    source, compressed = experiment
    out = tmp_path / "train.yaml"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(source), str(compressed), str(out)]
        + ["--epochs", "2", "--lr", "0.0003", "--warmup_steps", "50"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "train.yaml.tmp").exists()
    conf = yaml.safe_load(out.read_text())
    assert not {"required", "distributed", "version", "output_dir"} & set(conf)
    args = asr_parser().parse_args(
        ["--config", str(out), "--output_dir", "exp/ft", "--token_list", "t.txt"]
    )
    assert args.encoder == "shared_conformer"
    assert args.encoder_conf["lowrank_rank"] == 8
    assert args.max_epoch == 2 and args.optim_conf["lr"] == 0.0003
    assert args.scheduler_conf == {"warmup_steps": 50}
    assert args.keep_nbest_models <= 2


def test_a_dump_only_field_left_in_is_what_espnet_rejects(experiment, tmp_path) -> None:
    """The reason the dump-only fields are dropped: --config refuses them."""
    source, compressed = experiment
    conf = finetune.finetune_config(
        yaml.safe_load(source.read_text()),
        yaml.safe_load(compressed.read_text()),
        1,
        1e-3,
        0,
    )
    out = tmp_path / "train.yaml"
    out.write_text(yaml.safe_dump(dict(conf, required=["output_dir"])))
    with pytest.raises(SystemExit):
        asr_parser().parse_args(["--config", str(out), "--token_list", "t.txt"])


@pytest.mark.parametrize(
    "epochs, lr, warmup", [(-1, 1e-3, 0), (1, 0.0, 0), (1, 1e-3, -5)]
)
def test_impossible_schedule_is_refused(epochs, lr, warmup) -> None:
    with pytest.raises(ValueError, match="must be"):
        finetune.finetune_config(
            {}, {"encoder": "x", "encoder_conf": {}}, epochs, lr, warmup
        )


def test_missing_source_exits_nonzero_and_writes_nothing(tmp_path) -> None:
    out = tmp_path / "train.yaml"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "nope.yaml"), str(DEBUG), str(out)]
        + ["--epochs", "1", "--lr", "0.001", "--warmup_steps", "0"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "nope.yaml" in proc.stderr
    assert not out.exists()
