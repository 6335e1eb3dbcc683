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


def test_options_table_lists_every_option_of_both_groups_in_order():
    from espnet_shared_conformer.plan import SharingOptions
    from espnet_shared_conformer.streaming import StreamingOptions

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Options", 1)[1].split("\n\n| option |", 1)[1]
    table = table.split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)
    names = list(SharingOptions.names()) + list(StreamingOptions.names())
    assert [row for row in rows if row in names] == names
