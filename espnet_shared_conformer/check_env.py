"""Check that this environment can build the encoder through ESPnet.

``python -m espnet_shared_conformer.check_env`` imports, in order, what every
ESPnet ASR process imports (torch, torchaudio, ``espnet2.tasks.asr``) and then
registers the encoder. The usual failure is a torchaudio built for another
torch release, which otherwise surfaces minutes later, at the first ESPnet
stage of the recipe, as an undefined symbol in ``libtorchaudio.so``. It exits 1
with the versions involved and the error, in seconds.
"""

import importlib
import importlib.metadata
import sys
from typing import List, Optional

__all__ = ["check", "main"]

#: Distributions whose versions explain an import failure.
_DISTRIBUTIONS = ("torch", "torchaudio", "espnet", "espnet_shared_conformer")


def _installed_versions() -> str:
    parts = [f"python {sys.version.split()[0]}"]
    for name in _DISTRIBUTIONS:
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def check() -> Optional[str]:
    """Return None if the environment works, else a message saying why not."""
    for module in ("torch", "torchaudio", "espnet2.tasks.asr"):
        try:
            importlib.import_module(module)
        except Exception as err:  # any failure to load is the finding
            hint = ""
            if module == "torchaudio" or "libtorchaudio" in str(err):
                hint = (
                    "\ntorchaudio must be built for the exact torch release: "
                    "install both from the lock file (`make test` or `make "
                    "demo` does) or pin them to matching versions."
                )
            return (
                f"cannot import {module}: {type(err).__name__}: {err}\n"
                f"installed: {_installed_versions()}{hint}"
            )
    from espnet_shared_conformer import ENCODER_NAME, is_registered, register

    try:
        register()
    except Exception as err:
        return (
            f"register() failed: {type(err).__name__}: {err}\n"
            f"installed: {_installed_versions()}"
        )
    if not is_registered():
        return f"register() ran but ESPnet does not know {ENCODER_NAME!r}"
    return None


def main(argv: Optional[List[str]] = None) -> int:
    del argv  # no options
    problem = check()
    if problem is not None:
        print(f"check_env: FAILED: {problem}", file=sys.stderr)
        return 1
    print(f"check_env: ok ({_installed_versions()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
