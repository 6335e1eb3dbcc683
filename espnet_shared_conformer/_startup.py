"""The startup hook of :mod:`espnet_shared_conformer.enable`.

The ``.pth`` file that ``enable`` writes into an environment's
site-packages runs :func:`install` when Python starts. It adds one entry to
``sys.meta_path`` that answers no import but one: when ``espnet2.tasks.asr``
has been executed, it calls :func:`~espnet_shared_conformer.register`. A
process that never imports ESPnet's ASR task pays a string comparison per
import; this module imports nothing beyond ``sys`` (not even ``typing``).
"""

import sys

__all__ = ["TARGET", "install", "installed"]

#: The module whose import triggers registration: the one holding
#: ``encoder_choices``, imported by every ESPnet ASR binary and by
#: ``Speech2Text``.
TARGET = "espnet2.tasks.asr"


class _RegisteringLoader:
    """Runs the real loader, then registers the encoder in the new module."""

    def __init__(self, loader: object) -> None:
        self._loader = loader

    def create_module(self, spec: object) -> object:
        return self._loader.create_module(spec)

    def exec_module(self, module: object) -> None:
        self._loader.exec_module(module)
        try:
            from espnet_shared_conformer._registry import register

            register()
        except Exception as e:  # noqa: BLE001  (never break ESPnet's import)
            from espnet_shared_conformer._registry import UNREGISTERED_HINT

            print(
                f"espnet_shared_conformer: the startup hook could not register "
                f"the encoder: {type(e).__name__}: {e}\n{UNREGISTERED_HINT}",
                file=sys.stderr,
            )

    def __getattr__(self, name: str) -> object:
        # get_code, get_source, is_package, ...: the real loader's.
        return getattr(self._loader, name)


class RegisterOnImport:
    """A ``sys.meta_path`` finder that wraps the loader of :data:`TARGET`."""

    def find_spec(self, fullname: str, path: object, target: object = None) -> object:
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def installed() -> bool:
    """Whether this process runs the hook."""
    return any(isinstance(f, RegisterOnImport) for f in sys.meta_path)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once).

    If ESPnet's ASR task is imported already, register now instead.
    """
    if installed():
        return
    if TARGET in sys.modules:
        from espnet_shared_conformer._registry import register

        register()
        return
    sys.meta_path.insert(0, RegisterOnImport())
