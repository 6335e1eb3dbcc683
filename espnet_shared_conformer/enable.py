"""Register the encoder in every process of an environment, ESPnet's own included.

    python -m espnet_shared_conformer.enable     # this environment
    python -m espnet_shared_conformer.disable    # undo

writes (removes) ``espnet_shared_conformer_enable.pth`` in the active
environment's site-packages. Python runs its line at startup: it puts a
finder on ``sys.meta_path`` (:mod:`espnet_shared_conformer._startup`) that
registers ``encoder: shared_conformer`` when ``espnet2.tasks.asr`` is first
imported. ESPnet's own binaries (``python -m espnet2.bin.asr_train``), an
ESPnet checkout's ``egs2/*/asr1/asr.sh`` and ``espnet_model_zoo`` then work
unchanged, and a process that never imports ESPnet's ASR task loads neither
torch nor ESPnet because of it. If the package is uninstalled while the
file remains, the line does nothing.

``--site-dir DIR`` writes elsewhere (a directory Python treats as a site
directory: site-packages, the user site, or one given to
``site.addsitedir``), e.g. for a test or a read-only environment.
"""

import argparse
import os
import site
import sys
import sysconfig
from pathlib import Path
from typing import List, Optional

__all__ = ["PTH_NAME", "default_site_dir", "disable", "enable", "main"]

#: The file written into site-packages.
PTH_NAME = "espnet_shared_conformer_enable.pth"

# One line that Python's site module executes (it starts with "import").
# An uninstalled package makes it a no-op instead of an error at every start.
_PTH_TEXT = (
    "# Written by `python -m espnet_shared_conformer.enable`; "
    "remove with `python -m espnet_shared_conformer.disable`.\n"
    'import sys; exec("try:\\n from espnet_shared_conformer._startup import install'
    '\\nexcept ImportError:\\n pass\\nelse:\\n install()")\n'
)


def default_site_dir() -> Path:
    """The running environment's site-packages (a venv's own when in one)."""
    return Path(sysconfig.get_paths()["purelib"])


def enable(site_dir: Optional[Path] = None) -> Path:
    """Write the startup hook into ``site_dir``; return the file written.

    Written to a temporary name and renamed. ``OSError`` if the directory
    is missing or not writable.
    """
    site_dir = Path(site_dir) if site_dir is not None else default_site_dir()
    if not site_dir.is_dir():
        raise FileNotFoundError(f"no such site directory: {site_dir}")
    path = site_dir / PTH_NAME
    tmp = site_dir / (PTH_NAME + ".tmp")
    tmp.write_text(_PTH_TEXT, encoding="utf-8")
    os.replace(tmp, path)
    return path


def disable(site_dir: Optional[Path] = None) -> Optional[Path]:
    """Remove the startup hook from ``site_dir``; the file removed, or None."""
    site_dir = Path(site_dir) if site_dir is not None else default_site_dir()
    path = site_dir / PTH_NAME
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return path


def _is_site_dir(directory: Path) -> bool:
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()]
    return any(Path(d).resolve() == directory.resolve() for d in dirs)


def main(argv: Optional[List[str]] = None, undo: bool = False) -> int:
    action = "disable" if undo else "enable"
    parser = argparse.ArgumentParser(
        prog=f"python -m espnet_shared_conformer.{action}",
        description=(
            "Remove the startup hook that registers encoder: shared_conformer."
            if undo
            else "Register encoder: shared_conformer in every Python process of "
            "this environment that imports ESPnet's ASR task."
        ),
    )
    parser.add_argument(
        "--site-dir",
        type=Path,
        default=None,
        help=f"site directory to {action} in (default: {default_site_dir()})",
    )
    args = parser.parse_args(argv)
    site_dir = args.site_dir if args.site_dir is not None else default_site_dir()
    try:
        path = disable(site_dir) if undo else enable(site_dir)
    except OSError as e:
        print(
            f"{action}: error: {e}; choose a writable site directory with "
            "--site-dir, or run from the environment's own Python (a venv)",
            file=sys.stderr,
        )
        return 1
    if undo:
        print(f"removed {path}" if path else f"not enabled: no {site_dir / PTH_NAME}")
        return 0
    print(
        f"wrote {path}: Python processes of this environment register "
        "encoder: shared_conformer when they import espnet2.tasks.asr; undo "
        "with python -m espnet_shared_conformer.disable"
    )
    if not _is_site_dir(site_dir):
        print(
            f"note: {site_dir} is not a site directory of {sys.executable}: the "
            "hook runs only where it is one (site.addsitedir)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
