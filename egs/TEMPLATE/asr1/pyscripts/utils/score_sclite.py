#!/usr/bin/env python3
"""Score hypotheses against references with NIST sclite: stage 13.

    score_sclite.py --ref dump/raw/test/text --hyp exp/.../test/text \\
        --utt2spk dump/raw/test/utt2spk --bpemodel data/.../bpe.model exp/.../test

Writes ``score_wer`` (words), ``score_cer`` (characters, a space is
``<space>``) and, given a sentencepiece model, ``score_ter`` (its pieces)
under the output directory, each with ``ref.trn``, ``hyp.trn`` and sclite's
report ``result.txt`` (``sclite -r ref.trn trn -h hyp.trn trn -i rm -o all
stdout``), as ESPnet lays them out. Utterance ids in the trn files are
``(speaker-utterance)`` so that sclite also reports per speaker.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

from datadir import DataDirError, building, log, read_table

__all__ = ["SCORE_COLUMNS", "find_sclite", "parse_result", "score", "tokenizers"]

#: Columns of sclite's summary line, as ESPnet's RESULTS.md tables name them.
SCORE_COLUMNS = ("Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err")


def find_sclite() -> str:
    """sclite's path: $SCLITE, then PATH, then where Debian's sctk keeps it."""
    for candidate in (
        os.environ.get("SCLITE"),
        shutil.which("sclite"),
        "/usr/lib/sctk/bin/sclite",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("sclite not found: install Debian's sctk or set $SCLITE")


def tokenizers(bpemodel: Optional[str]) -> Dict[str, Callable[[str], List[str]]]:
    """Metric name -> function splitting a transcript into scoring units."""
    result: Dict[str, Callable[[str], List[str]]] = {
        "wer": lambda s: s.split(),
        "cer": lambda s: ["<space>" if c == " " else c for c in " ".join(s.split())],
    }
    if bpemodel and bpemodel != "none":
        import sentencepiece as spm

        model = spm.SentencePieceProcessor(model_file=bpemodel)
        result["ter"] = lambda s: model.encode(" ".join(s.split()), out_type=str)
    return result


def _trn_line(tokens: List[str], utt: str, spk: Optional[str]) -> str:
    label = f"{spk}-{utt}" if spk else utt
    return f"{' '.join(tokens)} ({label})\n"


def score(
    ref_path: Path,
    hyp_path: Path,
    out_dir: Path,
    bpemodel: Optional[str] = None,
    utt2spk_path: Optional[Path] = None,
    sclite: Optional[str] = None,
) -> Dict[str, Dict[str, float]]:
    """Write ``out_dir/score_<metric>/`` for each metric; return their summaries."""
    ref = read_table(ref_path, allow_empty_value=True)
    hyp = read_table(hyp_path, allow_empty_value=True)
    utt2spk = read_table(utt2spk_path) if utt2spk_path else None
    for utt in ref:
        if utt not in hyp:
            raise DataDirError(
                f"{ref.where(utt)}: utterance {utt!r} has no hypothesis in {hyp_path}"
            )
        if utt2spk is not None and utt not in utt2spk:
            raise DataDirError(
                f"{ref.where(utt)}: utterance {utt!r} is not in {utt2spk_path}"
            )
    for utt in hyp:
        if utt not in ref:
            raise DataDirError(
                f"{hyp.where(utt)}: utterance {utt!r} is not in {ref_path}"
            )
    sclite = sclite or find_sclite()
    summaries = {}
    for metric, tokenize in tokenizers(bpemodel).items():
        with building(out_dir / f"score_{metric}") as tmp:
            with (
                (tmp / "ref.trn").open("w", encoding="utf-8") as r,
                (tmp / "hyp.trn").open("w", encoding="utf-8") as h,
            ):
                for utt in sorted(ref):
                    spk = utt2spk[utt] if utt2spk is not None else None
                    r.write(_trn_line(tokenize(ref[utt]), utt, spk))
                    h.write(_trn_line(tokenize(hyp[utt]), utt, spk))
            summaries[metric] = _run_sclite(sclite, tmp)
    return summaries


def _run_sclite(sclite: str, directory: Path) -> Dict[str, float]:
    """sclite on ``directory``'s ref.trn and hyp.trn; its report goes to
    ``result.txt`` there; return the summary."""
    command = [sclite, "-r", "ref.trn", "trn", "-h", "hyp.trn", "trn"]
    proc = subprocess.run(
        [*command, "-i", "rm", "-o", "all", "stdout"],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    (directory / "result.txt").write_bytes(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"sclite failed (exit {proc.returncode}); see {directory / 'result.txt'}"
        )
    return parse_result(directory / "result.txt")


_NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?)"


def parse_result(path: Path) -> Dict[str, float]:
    """Sclite's totals from ``result.txt``: the percentage line (Sum/Avg) under
    the names of :data:`SCORE_COLUMNS`, plus the raw counts (Sum line) as
    ``n_Corr``, ``n_Sub``, ``n_Del``, ``n_Ins``, ``n_Err``, ``n_S.Err``."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    row = (
        r"\|\s*{}\s*\|\s*"
        + _NUMBER
        + r"\s+"
        + _NUMBER
        + r"\s*\|"
        + (r"\s*" + _NUMBER) * 6
        + r"\s*\|"
    )
    percent = re.search(row.format(r"Sum/Avg"), text)
    counts = re.search(row.format(r"Sum"), text)
    if percent is None or counts is None:
        raise ValueError(f"{path}: no sclite summary found")
    result: Dict[str, float] = {}
    for name, value in zip(SCORE_COLUMNS, percent.groups(), strict=True):
        result[name] = float(value)
    for name, value in zip(SCORE_COLUMNS[2:], counts.groups()[2:], strict=True):
        result[f"n_{name}"] = int(float(value))
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", type=Path, required=True, help="reference Kaldi text")
    parser.add_argument("--hyp", type=Path, required=True, help="hypothesis Kaldi text")
    parser.add_argument("--utt2spk", type=Path, help="speaker of each utterance")
    parser.add_argument(
        "--bpemodel", help="sentencepiece model for the token error rate"
    )
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        summaries = score(args.ref, args.hyp, args.out_dir, args.bpemodel, args.utt2spk)
    except (DataDirError, FileNotFoundError, RuntimeError, ValueError) as e:
        log(f"ERROR: {e}")
        return 1
    for metric, s in summaries.items():
        log(
            f"{args.out_dir} {metric.upper()} {s['Err']:.1f} "
            f"(Snt {s['Snt']:.0f}, Wrd {s['Wrd']:.0f}, Sub {s['n_Sub']}, "
            f"Del {s['n_Del']}, Ins {s['n_Ins']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
