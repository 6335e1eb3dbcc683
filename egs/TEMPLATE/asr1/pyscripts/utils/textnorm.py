"""The recipes' one text normalizer: transcripts in LibriSpeech's form.

:func:`normalize_text` turns written English into upper-case words of A-Z
and in-word apostrophes, one space apart; it is idempotent, so LibriSpeech's
own transcripts pass through unchanged. Written forms that are said
otherwise (``Mr.`` -> ``Mister``, ``&`` -> ``and``) are a corpus's data, not
code: a spellings file (:func:`read_spellings`) lists them, and
:func:`spell_out` or ``normalize_text(text, spellings)`` replaces them::

    # written  said
    Mr.        Mister
    &          and

No work happens at import.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Dict, Mapping, Optional

from datadir import DataDirError

__all__ = ["fold_accents", "normalize_text", "read_spellings", "spell_out"]

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u02bc": "'"})
_NOT_LETTER_OR_APOSTROPHE = re.compile(r"[^A-Z']+")
_LOOSE_APOSTROPHE = re.compile(r"(?<![A-Z])'|'(?![A-Z])")


def read_spellings(path: Path) -> Dict[str, str]:
    """A spellings file: ``written said...`` per line (the written form has no
    space; what follows it is how it is said), ``#`` comments and blank
    lines ignored. Raises :class:`DataDirError` naming the file and line."""
    spellings: Dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataDirError(
            f"{path}: cannot read spellings ({e.strerror or e})"
        ) from None
    for number, line in enumerate(lines, start=1):
        fields = line.split("#", 1)[0].split(maxsplit=1)
        if not fields:
            continue
        if len(fields) < 2:
            raise DataDirError(f"{path}:{number}: {fields[0]!r} has no spoken form")
        if fields[0] in spellings:
            raise DataDirError(f"{path}:{number}: {fields[0]!r} is given twice")
        spellings[fields[0]] = " ".join(fields[1].split())
    return spellings


def spell_out(text: str, spellings: Mapping[str, str]) -> str:
    """``text`` with each written form of ``spellings`` that stands as a word
    of its own (no letter or digit touching it; any case) replaced by how it
    is said; the rest of ``text`` is kept as it is."""
    if not spellings:
        return text
    by_lower = {written.lower(): said for written, said in spellings.items()}
    # Longest first, so that no form is cut short by a shorter one.
    forms = sorted(spellings, key=len, reverse=True)
    pattern = re.compile(
        r"(?<!\w)(" + "|".join(map(re.escape, forms)) + r")(?!\w)", re.IGNORECASE
    )
    return pattern.sub(lambda m: by_lower[m.group(1).lower()], text)


def fold_accents(text: str) -> str:
    """``é`` -> ``e``: drop combining marks after NFKD (ASCII passes through)."""
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c))


def normalize_text(text: str, spellings: Optional[Mapping[str, str]] = None) -> str:
    """LibriSpeech's text form: upper case A-Z, apostrophes inside words,
    single spaces. ``spellings`` are spelled out first; accents are folded
    (``é`` -> ``E``); hyphens and all other punctuation become word breaks;
    apostrophes that are quote marks (not between two letters) are dropped.
    """
    text = text.translate(_APOSTROPHES)
    if spellings:
        text = spell_out(text, spellings)
    text = fold_accents(text).upper()
    text = _NOT_LETTER_OR_APOSTROPHE.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())
