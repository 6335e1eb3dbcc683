"""ESPnet's ``espnet2.bin.asr_train`` with ``encoder: shared_conformer`` known.

Takes every argument of ESPnet's binary (collect-stats, training, multi-GPU
and multi-node). Registration happens at import, not under ``__main__``: the
workers ESPnet spawns for multi-GPU training re-import this module as their
main module and so register too.
"""

from espnet_shared_conformer._registry import register

register()

from espnet2.bin.asr_train import main  # noqa: E402  (needs the registration above)

if __name__ == "__main__":
    main()
