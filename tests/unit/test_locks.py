"""The committed lock files agree with setup.py and with the environment.

`make test`, `make demo` and `.ci/run` install exactly what
``.ci/requirements-py3*.txt`` name; setup.py keeps ranges for people who install
the package into their own ESPnet. These tests keep the two from drifting: a
lock compiled from an older setup.py, a locked version outside a declared
range, a torchaudio built for another torch, or a virtual environment that is
not what its lock says all fail here.
"""

import ast
import importlib.metadata
import re
import shlex
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Set

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {
    "py312": ROOT / ".ci" / "requirements-py312.txt",
    "py311": ROOT / ".ci" / "requirements-py311.txt",
}
PEERS_LOCK = ROOT / ".ci" / "requirements-peers.txt"  # `make peers`, no ESPnet
# The name uv writes in "# via" for requirements that come from setup.py.
SETUP_ORIGIN = "espnet-shared-conformer (setup.py)"


@dataclass(frozen=True)
class Lock:
    versions: Dict[str, str]  # canonical name -> pinned version
    hashes: Dict[str, int]  # canonical name -> number of --hash entries
    from_setup: Set[str]  # names uv says it took from setup.py
    extras: List[str]  # --extra flags of the command that wrote the lock
    inputs: List[str]  # the requirement files the command read


def parse_lock(path: Path) -> Lock:
    versions: Dict[str, str] = {}
    hashes: Dict[str, int] = {}
    from_setup: Set[str] = set()
    command: List[str] = []
    current = ""
    for line in path.read_text().splitlines():
        if line.startswith("#    uv pip compile"):
            command = shlex.split(line.lstrip("# "))
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", line)
        if match:
            current = canonicalize_name(match.group(1))
            versions[current] = match.group(2)
            hashes[current] = 0
        elif "--hash=sha256:" in line:
            hashes[current] += 1
        elif SETUP_ORIGIN in line:
            from_setup.add(current)
    assert command, f"{path.name} does not say which command wrote it"
    extras = [command[i + 1] for i, arg in enumerate(command) if arg == "--extra"]
    inputs = [arg for arg in command if arg.endswith((".in", ".py", ".txt"))]
    return Lock(versions, hashes, from_setup, extras, inputs)


def setup_requirements() -> Dict[str, List[str]]:
    """install_requires and extras_require, read from setup.py's source."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"
    ]
    assert len(calls) == 1
    kwargs = {
        kw.arg: ast.literal_eval(kw.value)
        for kw in calls[0].keywords
        if kw.arg in ("install_requires", "extras_require")
    }
    return {"": kwargs["install_requires"], **kwargs["extras_require"]}


def declared(lock: Lock) -> List[Requirement]:
    groups = setup_requirements()
    unknown = [extra for extra in lock.extras if extra not in groups]
    assert not unknown, f"the lock was compiled with extras setup.py lacks: {unknown}"
    return [Requirement(r) for g in ["", *lock.extras] for r in groups[g]]


@pytest.fixture(params=sorted(LOCKS), scope="module")
def lock(request: pytest.FixtureRequest) -> Lock:
    return parse_lock(LOCKS[request.param])


def test_every_declared_requirement_is_locked_inside_its_range(lock: Lock) -> None:
    for req in declared(lock):
        name = canonicalize_name(req.name)
        assert name in lock.versions, f"{req} is declared in setup.py but not locked"
        assert req.specifier.contains(lock.versions[name], prereleases=True), (
            f"setup.py declares {req}, the lock pins {name}=={lock.versions[name]}"
        )


def test_lock_was_compiled_from_todays_setup_py(lock: Lock) -> None:
    # uv marks what it resolved because setup.py asked for it; a requirement
    # added to or dropped from setup.py after `make lock` shows up here.
    assert lock.from_setup == {canonicalize_name(r.name) for r in declared(lock)}


def test_pins_of_the_in_file_are_what_the_lock_holds(lock: Lock) -> None:
    check_in_file_pins(lock)


def check_in_file_pins(lock: Lock) -> None:
    in_files = [ROOT / p for p in lock.inputs if p.endswith(".in")]
    assert len(in_files) == 1, f"one .in file expected among {lock.inputs}"
    for line in in_files[0].read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (pin,) = list(req.specifier)
            assert pin.operator == "==", (
                f"{in_files[0].name}: {line} is not an exact pin"
            )
            assert lock.versions[canonicalize_name(req.name)] == pin.version


def test_the_peers_lock_is_the_peers_extra_reading_audio_as_the_main_lock() -> None:
    """.venv-peers (`make peers`) runs the ablation's peer recognizers apart
    from ESPnet; it reads the audio with the same numpy and soundfile."""
    peers = parse_lock(PEERS_LOCK)
    check_in_file_pins(peers)
    assert not sorted(name for name, n in peers.hashes.items() if n == 0)
    extra = {
        canonicalize_name(Requirement(r).name) for r in setup_requirements()["peers"]
    }
    assert extra <= set(peers.versions), extra - set(peers.versions)
    main = parse_lock(LOCKS["py312"])
    for name in ("numpy", "soundfile"):
        assert peers.versions[name] == main.versions[name], name
    assert not {"torch", "espnet"} & set(peers.versions)


def test_torchaudio_is_built_for_the_locked_torch(lock: Lock) -> None:
    # torchaudio's binary extension links against one torch release; a
    # different patch release fails to load (undefined symbols).
    torch = lock.versions["torch"].split("+")[0]
    torchaudio = lock.versions["torchaudio"].split("+")[0]
    assert torch == torchaudio


def test_every_locked_package_carries_hashes(lock: Lock) -> None:
    unhashed = sorted(name for name, n in lock.hashes.items() if n == 0)
    assert not unhashed


def test_this_environment_is_its_lock() -> None:
    venv = Path(sys.prefix).resolve()
    own = {ROOT / ".venv": "py312", ROOT / ".venv311": "py311"}
    if venv not in own:
        pytest.skip(f"not one of the project's environments: {venv}")
    locked = parse_lock(LOCKS[own[venv]]).versions
    # The environment's own site-packages only: once setuptools is imported
    # (some test imports it), its vendored packages are on sys.path too.
    site = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions(path=sorted(site))
    }
    installed.pop("espnet-shared-conformer")  # editable, from this checkout
    assert installed == locked
