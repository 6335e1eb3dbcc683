"""What the package's commands (``python -m espnet_shared_conformer.X``) share."""

import argparse

__all__ = ["LOG_FORMAT", "add_model_arguments", "command_parser"]

#: ESPnet's binaries' log format.
LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def command_parser(command: str, description: str) -> argparse.ArgumentParser:
    """The parser of ``python -m espnet_shared_conformer.<command>``.

    ``--help`` names the command as it is run (not the module's file) and
    shows each option's default.
    """
    return argparse.ArgumentParser(
        prog=f"python -m espnet_shared_conformer.{command}",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--model``: a trained ESPnet ASR model's files."""
    parser.add_argument(
        "--config", required=True, help="the model's config.yaml (ESPnet's dump)"
    )
    parser.add_argument(
        "--model", required=True, help="its weights (e.g. valid.acc.ave.pth)"
    )
