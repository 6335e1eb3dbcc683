#!/usr/bin/env python3
"""Print the averaged model file ESPnet's trainer writes for an ASR config.

ESPnet averages the ``keep_nbest_models`` best epochs of every
``best_model_criterion`` entry into ``<phase>.<criterion>.ave.pth``; asr.sh
decodes the one of the first ``valid`` entry unless ``--inference_asr_model``
names another file. The rule's one home is
``espnet_shared_conformer.inference.best_model_name``, which ``load_model``
applies to an experiment directory.

    python pyscripts/utils/best_model_name.py conf/train_asr_960h.yaml
    # -> valid.acc.ave.pth
"""

import argparse
import sys

import yaml

from espnet_shared_conformer.inference import best_model_name


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
