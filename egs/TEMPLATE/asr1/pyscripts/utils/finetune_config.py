#!/usr/bin/env python3
"""Write the training config that fine-tunes a compressed model.

    python pyscripts/utils/finetune_config.py SRC_CONFIG COMPRESSED_CONFIG OUT \\
        --epochs 3 --lr 0.0005 --warmup_steps 100

SRC_CONFIG is the source experiment's ``config.yaml`` (ESPnet's dump of the
whole training namespace), COMPRESSED_CONFIG the one ``python -m
espnet_shared_conformer.compress`` wrote. OUT keeps the source's training
options with the compressed encoder and a short warm-up schedule, minus what
asr.sh passes itself and what only the dump holds (the package's
``training_options``), so that ``asr_train --config OUT`` accepts it.
"""

import argparse
import os
import sys

import yaml

from espnet_shared_conformer.config_dump import training_options

# Set by asr.sh on the command line (data, tokens, output, distributed
# launch, run mode) or by the trainer itself; what only the dump holds,
# which --config rejects, the package drops (training_options).
DROPPED = (
    "output_dir",
    "train_data_path_and_name_and_type",
    "valid_data_path_and_name_and_type",
    "train_shape_file",
    "valid_shape_file",
    "token_list",
    "bpemodel",
    "normalize_conf",
    "fold_length",
    "init_param",
    "resume",
    "ngpu",
    "dist_world_size",
    "dist_rank",
    "local_rank",
    "dist_master_addr",
    "dist_master_port",
    "dist_launcher",
    "multiprocessing_distributed",
    "dist_init_method",
    "print_config",
    "collect_stats",
    "write_collected_feats",
)


def finetune_config(
    source: dict, compressed: dict, epochs: int, lr: float, warmup_steps: int
) -> dict:
    if epochs < 0 or lr <= 0 or warmup_steps < 0:
        raise ValueError(
            f"epochs ({epochs}) and warmup_steps ({warmup_steps}) must be >= 0 "
            f"and lr ({lr}) > 0"
        )
    conf = {k: v for k, v in training_options(source).items() if k not in DROPPED}
    conf["encoder"] = compressed["encoder"]
    conf["encoder_conf"] = compressed["encoder_conf"]
    conf["max_epoch"] = max(epochs, 1)
    conf["optim_conf"] = dict(conf.get("optim_conf") or {}, lr=lr)
    conf["scheduler"] = "warmuplr"
    conf["scheduler_conf"] = {"warmup_steps": warmup_steps}
    conf["keep_nbest_models"] = min(
        int(conf.get("keep_nbest_models", 1)), conf["max_epoch"]
    )
    # asr.sh passes the sample rate itself.
    frontend_conf = conf.get("frontend_conf") or {}
    conf["frontend_conf"] = {k: v for k, v in frontend_conf.items() if k != "fs"}
    return conf


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="the source experiment's config.yaml")
    parser.add_argument("compressed", help="config.yaml written by compress")
    parser.add_argument("out", help="fine-tuning config to write")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--warmup_steps", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        with open(args.source, encoding="utf-8") as f:
            source = yaml.safe_load(f)
        with open(args.compressed, encoding="utf-8") as f:
            compressed = yaml.safe_load(f)
        conf = finetune_config(
            source, compressed, args.epochs, args.lr, args.warmup_steps
        )
    except (OSError, ValueError, KeyError, yaml.YAMLError) as e:
        print(f"finetune_config: {e}", file=sys.stderr)
        return 1
    with open(args.out + ".tmp", "w", encoding="utf-8") as f:
        yaml.safe_dump(conf, f, sort_keys=False)
    os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
