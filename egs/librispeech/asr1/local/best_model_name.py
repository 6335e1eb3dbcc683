#!/usr/bin/env python3
"""Print the averaged model file ESPnet's trainer writes for an ASR config.

ESPnet averages the ``keep_nbest_models`` best epochs of every
``best_model_criterion`` entry into ``<phase>.<criterion>.ave.pth``; asr.sh
decodes the one of the first ``valid`` entry unless ``--inference_asr_model``
names another file.

    python local/best_model_name.py conf/train_asr_960h.yaml   # valid.acc.ave.pth
"""

import argparse
import sys

import yaml

# ESPnet's default when a config names no best_model_criterion.
ESPNET_DEFAULT = [
    ["train", "loss", "min"],
    ["valid", "loss", "min"],
    ["train", "acc", "max"],
    ["valid", "acc", "max"],
]


def best_model_name(config: dict) -> str:
    criteria = config.get("best_model_criterion") or ESPNET_DEFAULT
    for entry in criteria:
        if len(entry) != 3:
            raise ValueError(
                f"best_model_criterion entry {entry!r}: "
                "expected [phase, criterion, min|max]"
            )
        phase, criterion, _ = entry
        if phase == "valid":
            return f"valid.{criterion}.ave.pth"
    raise ValueError(f"best_model_criterion {criteria!r} has no 'valid' entry")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="ASR training config (YAML)")
    args = parser.parse_args()
    try:
        with open(args.config, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
        print(best_model_name(config))
    except (OSError, yaml.YAMLError, ValueError) as e:
        sys.exit(f"{args.config}: {e}")


if __name__ == "__main__":
    main()
