"""What the package's commands (``python -m espnet_shared_conformer.X``) share."""

import argparse
import contextlib
import ctypes
import os
import sys
import tempfile
from typing import Iterator, Tuple, Type

__all__ = [
    "LOG_FORMAT",
    "Captured",
    "add_model_arguments",
    "captured_output",
    "command_parser",
]

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


class Captured:
    """What :func:`captured_output` kept from file descriptors 1 and 2."""

    def __init__(self) -> None:
        #: The bytes written, decoded (set when the ``with`` block ends).
        self.text = ""


def _flush_all() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    # C libraries buffer their stdout; what they buffered while captured must
    # not come out later among the command's own output.
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def captured_output(
    enabled: bool = True, expected: Tuple[Type[BaseException], ...] = ()
) -> Iterator[Captured]:
    """Keep what is written to file descriptors 1 and 2 off the terminal.

    Python's ``print`` and logging, and C libraries writing to the
    descriptors themselves (KenLM's progress bar while it reads an ARPA
    file), alike; the text is in the yielded :class:`Captured` afterwards.
    When the block raises an exception that is not one of ``expected`` (the
    errors the caller reports itself), the text is written to stderr before
    the exception goes on: what the libraries said may explain it.
    ``enabled`` False captures nothing (a command's ``--verbose``).
    """
    captured = Captured()
    if not enabled:
        yield captured
        return
    _flush_all()
    saved = (os.dup(1), os.dup(2))
    failed = False
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield captured
        except BaseException as e:
            failed = not isinstance(e, expected)
            raise
        finally:
            _flush_all()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")
            if failed:
                sys.stderr.write(captured.text)
                sys.stderr.flush()
