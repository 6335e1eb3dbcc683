"""One source for the main job's figures: the recipe's RESULTS.md, written by
stage 13 (make_results.py); the READMEs quote blocks generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import RECIPE_DIR, REPO_DIR, local_module

make_results = local_module("make_results")

QUOTING = (REPO_DIR / "README.md", RECIPE_DIR / "README.md")
REQUOTE = "python egs/TEMPLATE/asr1/pyscripts/utils/make_results.py --quote_into"


@pytest.mark.parametrize(
    "document", QUOTING, ids=lambda p: str(p.relative_to(REPO_DIR))
)
def test_readme_quotes_the_results_file(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    assert "<!-- results: " in text
    assert make_results.requote(text, document.parent) == text, (
        f"{document} quotes other figures than its RESULTS.md; "
        f"run {REQUOTE} {document.relative_to(REPO_DIR)}"
    )


def _results(path: Path, wer: float) -> Path:
    summary = dict(Snt=2, Wrd=10, Corr=80.0, Sub=10.0, Del=5.0, Ins=5.0, Err=wer)
    summary["S.Err"] = 50.0
    tables = {
        "wer": [
            ("decode_a/test_x", summary),
            ("decode_b/test_x", dict(summary, Err=99.0)),
        ],
        "cer": [("decode_a/test_x", dict(summary, Wrd=40, Err=wer / 2))],
    }
    path.write_text(make_results.render(Path("exp/asr_x"), tables))
    return path


def test_a_new_results_file_makes_the_quote_stale_until_requoted(
    tmp_path: Path,
) -> None:
    _results(tmp_path / "RESULTS.md", 20.0)
    doc = tmp_path / "README.md"
    doc.write_text(
        "Intro.\n<!-- results: RESULTS.md decode_a -->\n<!-- end of results -->\nEnd.\n"
    )
    assert make_results.quote_into(doc)
    quoted = doc.read_text()
    assert "| `test_x` | 20.0 | 10.0 | 10 |" in quoted
    assert "99.0" not in quoted  # another decoding of the same set
    assert quoted.startswith("Intro.\n") and quoted.endswith(
        "<!-- end of results -->\nEnd.\n"
    )
    assert make_results.requote(quoted, tmp_path) == quoted

    _results(tmp_path / "RESULTS.md", 18.6)
    assert make_results.requote(quoted, tmp_path) != quoted
    assert make_results.quote_into(doc)
    assert "| `test_x` | 18.6 | 9.3 | 10 |" in doc.read_text()


def test_read_results_reads_what_render_wrote(tmp_path: Path) -> None:
    environment, tables = make_results.read_results(_results(tmp_path / "R.md", 12.4))
    assert set(environment) >= {"date", "python version", "espnet version"}
    assert [d for d, _ in tables["wer"]] == ["decode_a/test_x", "decode_b/test_x"]
    assert tables["cer"][0][1]["Err"] == pytest.approx(6.2)


def test_a_block_without_its_end_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no <!-- end of results -->"):
        make_results.requote("<!-- results: R.md decode_a -->\ntext\n", tmp_path)
