"""The README's Layout section lists every module of the package."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_layout_lists_every_package_module():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("```")[1]
    listed = set(re.findall(r"^\s+(\S+\.py|bin/)\s", layout, re.MULTILINE))
    listed |= set(re.findall(r"\(\+ (\S+\.py)\)", layout))
    package = ROOT / "espnet_shared_conformer"
    modules = {p.name for p in package.glob("*.py")} | {"bin/"}
    assert listed == modules
