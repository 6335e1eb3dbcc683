"""ESPnet's ``espnet2.bin.asr_inference`` with ``encoder: shared_conformer`` known."""

from espnet_shared_conformer._registry import register

register()

from espnet2.bin.asr_inference import main  # noqa: E402  (needs the registration above)

if __name__ == "__main__":
    main()
