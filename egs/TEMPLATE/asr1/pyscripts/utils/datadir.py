"""The recipes' data-directory library: Kaldi tables and data directories,
their checks, and putting a finished output in place.

A data directory holds ``wav.scp`` (utterance -> audio path or ``command |``)
or ``feats.scp``, ``text`` (utterance -> transcript), ``utt2spk`` and
``spk2utt``; stages add tables such as ``utt2num_samples``. Every problem is
a :class:`DataDirError` whose message starts with the file and the line
(``data/train/text:12: empty transcript for 's1-u3'``), so that a user can
open the file and fix it.

- Tables: :func:`read_table`, :func:`write_table`, :func:`spk2utt_lines`.
- Directories: :func:`read_data_dir` (what a stage reads: the files agree),
  :func:`validate_data_dir` (every problem, with the stricter checks of
  Kaldi's ``validate_data_dir.sh``: sorted, whitespace, speaker prefixes,
  the transcript alphabet, audio files), :func:`write_data_dir`.
- Outputs: :func:`building` builds a directory under ``<dir>.tmp`` and
  moves it in place with :func:`replace_dir`; :func:`atomic_write_text`
  does the same for one file. A stage never leaves a half-written output
  where a later one would read it.
- Reporting: :func:`log` (the line format of the shell scripts' ``log``)
  and :class:`Progress`.

No work happens at import.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

__all__ = [
    "MAX_REPORTED",
    "TRANSCRIPT_ALPHABET",
    "DataDir",
    "DataDirError",
    "Progress",
    "Table",
    "Utterance",
    "atomic_write_text",
    "building",
    "check_audio_file",
    "exit_status",
    "log",
    "read_data_dir",
    "read_table",
    "replace_dir",
    "spk2utt_lines",
    "validate_data_dir",
    "write_data_dir",
    "write_table",
]

#: Problems listed in one message; the rest are counted.
MAX_REPORTED = 50
#: What transcripts may hold: the alphabet ``textnorm.normalize_text`` writes.
TRANSCRIPT_ALPHABET = re.compile(r"[A-Z' ]*")
_ARK_OFFSET = re.compile(r"^(.*\.ark):\d+$")


class DataDirError(Exception):
    """Bad input data, or a data step that failed; the message names the file
    (and the line, as ``path:line: ...``) when there is one."""

    @classmethod
    def listing(cls, header: str, problems: Sequence[str]) -> "DataDirError":
        """One error for several problems: ``header``, then the first
        :data:`MAX_REPORTED` problems one a line, then how many more."""
        shown = list(problems[:MAX_REPORTED])
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more")
        return cls(f"{header}; {len(problems)} problem(s):\n  " + "\n  ".join(shown))


def exit_status(step: Callable[[], object]) -> int:
    """A script's exit status: 0 when ``step()`` returns, 1 when it raises
    :class:`DataDirError` or the package's ``AudioError`` (bad audio is bad
    input too), which is logged as ``ERROR: <message>``."""
    from espnet_shared_conformer.audio_io import AudioError

    try:
        step()
    except (DataDirError, AudioError) as e:
        log(f"ERROR: {e}")
        return 1
    return 0


# ---------------------------------------------------------------- reporting


def log(message: str) -> None:
    """Print ``message`` to stderr with a timestamp and the script's name, as
    the recipe's shell ``log`` does."""
    now = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    print(f"{now} ({script}) {message}", file=sys.stderr, flush=True)


class Progress:
    """Progress over a known total: a tqdm bar on a terminal; elsewhere a log
    line every ``step_percent`` percent and, with ``every_seconds``, at least
    that often, so that logs stay readable in CI and nohup'd runs and a long
    step still shows that it is alive."""

    def __init__(
        self,
        total: float,
        desc: str,
        unit: str = "it",
        step_percent: int = 10,
        every_seconds: Optional[float] = None,
        enabled: bool = True,
    ) -> None:
        self.total = max(total, 0)
        self.desc = desc
        self.unit = unit
        self.step = step_percent
        self.every_seconds = every_seconds
        self.done = 0.0
        self._next_percent = step_percent
        self._start = self._last = datetime.datetime.now().timestamp()
        self._bar = None
        self._enabled = enabled
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm comes with ESPnet; lines work without it
                tqdm = None
            if tqdm is not None:
                scale = unit == "B"
                self._bar = tqdm(
                    total=self.total,
                    desc=desc,
                    unit=unit,
                    unit_scale=scale,
                    unit_divisor=1024 if scale else 1000,
                    leave=True,
                )

    def update(self, amount: float = 1) -> None:
        self.done += amount
        if self._bar is not None:
            self._bar.update(amount)
            return
        if not self._enabled or self.total <= 0:
            return
        percent = 100.0 * self.done / self.total
        now = datetime.datetime.now().timestamp()
        late = self.every_seconds is not None and now - self._last >= self.every_seconds
        if percent >= self._next_percent or late:
            self._last = now
            done, total = self._fmt(self.done), self._fmt(self.total)
            log(
                f"{self.desc}: {int(percent)}% ({done}/{total} {self.unit}, "
                f"{now - self._start:.0f} s)"
            )
            while self._next_percent <= percent:
                self._next_percent += self.step

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _fmt(self, value: float) -> str:
        if self.unit == "B":
            return f"{value / 2**20:.1f} Mi"
        return str(int(value)) if float(value).is_integer() else f"{value:.1f}"

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- outputs


def replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished directory ``tmp`` to ``final``, replacing an old one.

    The old directory is renamed to ``<final>.old`` first and removed last,
    so ``final`` is never a mixture of old and new files (asr.sh's
    ``replace_dir`` does the same, with the same name).
    """
    tmp, final = Path(tmp), Path(final)
    old = final.with_name(final.name + ".old")
    if old.exists():  # left by a run that was killed in between
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


@contextlib.contextmanager
def building(final: Path) -> Iterator[Path]:
    """Build a directory under ``<final>.tmp`` (emptied first) and move it to
    ``final`` when the block ends; on an error the temporary directory is
    removed and ``final`` is left as it was."""
    final = Path(final)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling and rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- tables


class Table(dict):
    """``key -> value`` in file order, remembering each key's line number;
    ``name`` is how messages show the file."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.lineno: Dict[str, int] = {}

    def where(self, key: str) -> str:
        """``<file>:<line>`` of ``key``."""
        return f"{self.name}:{self.lineno[key]}"


def _parse_table(
    path: Path,
    name: str,
    problems: List[str],
    *,
    allow_empty_value: bool = False,
    strict: bool = False,
) -> Optional[Table]:
    """Read ``key value...`` lines (the value is the rest of the line) into a
    :class:`Table`, appending every problem to ``problems``; None when the
    file cannot be read. ``strict`` adds Kaldi's format rules: keys sorted
    as ``LC_ALL=C sort`` sorts them, no stray whitespace, a final newline."""
    try:
        content = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        problems.append(f"{name}: no such file")
        return None
    except UnicodeDecodeError as e:
        problems.append(f"{name}: not UTF-8 text ({e})")
        return None
    table = Table(name)
    if strict and content and not content.endswith("\n"):
        problems.append(f"{name}: last line has no newline")
    previous: Optional[str] = None
    for number, line in enumerate(content.splitlines(), start=1):
        where = f"{name}:{number}"
        fields = line.split(maxsplit=1)
        if not fields:
            problems.append(f"{where}: empty line")
            continue
        if strict and line != line.strip():
            problems.append(f"{where}: leading or trailing whitespace")
        key = fields[0]
        value = fields[1].strip() if len(fields) > 1 else ""
        if not value and not allow_empty_value:
            problems.append(f"{where}: no value after id {key!r}")
        if key in table:
            problems.append(
                f"{where}: duplicate id {key!r} (first on line {table.lineno[key]})"
            )
            continue
        if strict and previous is not None and key.encode() < previous.encode():
            problems.append(
                f"{where}: not sorted: {key!r} comes after {previous!r} "
                "(use LC_ALL=C sort)"
            )
        previous = key
        table[key] = value
        table.lineno[key] = number
    return table


def read_table(path: Path, *, allow_empty_value: bool = False) -> Table:
    """Read a Kaldi table; raise :class:`DataDirError` for a missing or
    undecodable file, a blank line, a duplicate key or (unless
    ``allow_empty_value``) a key without a value."""
    problems: List[str] = []
    table = _parse_table(
        Path(path), str(path), problems, allow_empty_value=allow_empty_value
    )
    if problems or table is None:
        raise _error(str(path), problems)
    return table


def write_table(path: Path, rows: Iterable[Tuple[str, str]]) -> None:
    """Write ``key value`` lines sorted by key in byte order (as ``LC_ALL=C
    sort``); a key with an empty value is written alone."""
    with Path(path).open("w", encoding="utf-8", newline="\n") as f:
        for key, value in sorted(rows, key=lambda row: row[0].encode()):
            f.write(f"{key} {value}\n" if value else f"{key}\n")


def spk2utt_lines(utt2spk: Mapping[str, str]) -> List[Tuple[str, str]]:
    """``spk2utt`` rows built from ``utt2spk``, utterances in sorted order."""
    speakers: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk, key=str.encode):
        speakers.setdefault(utt2spk[utt], []).append(utt)
    return [(spk, " ".join(speakers[spk])) for spk in sorted(speakers, key=str.encode)]


def _error(header: str, problems: Sequence[str]) -> DataDirError:
    if len(problems) == 1:
        return DataDirError(problems[0])
    return DataDirError.listing(header, problems)


# ---------------------------------------------------------------- directories


@dataclass(frozen=True)
class Utterance:
    """One row of a data directory, as stage 1 writes it."""

    utt_id: str
    speaker: str
    audio: str  # path written to wav.scp
    text: str  # already normalized


@dataclass
class DataDir:
    """A data directory whose files name the same utterances."""

    path: Path
    audio: Table  # wav.scp or feats.scp
    text: Table
    utt2spk: Table
    audio_file: str
    extra: Dict[str, Table]  # the tables of read_data_dir's extra_files

    @property
    def utts(self) -> List[str]:
        """Utterance ids in sorted (C locale) order, as Kaldi keeps them."""
        return sorted(self.audio, key=str.encode)


def _check_data_dir(
    path: Path,
    name: str,
    problems: List[str],
    *,
    audio_file: str = "wav.scp",
    extra_files: Iterable[str] = (),
    allow_empty_text: bool = False,
    strict: bool = False,
    check_charset: bool = False,
    check_audio: bool = False,
    nj: int = 1,
) -> Optional[DataDir]:
    """The one set of checks behind :func:`read_data_dir` (the files agree)
    and :func:`validate_data_dir` (``strict``: Kaldi's format rules too)."""
    if not path.is_dir():
        problems.append(f"{name}: no such data directory")
        return None
    extra_files = tuple(extra_files)
    files = [audio_file, "text", "utt2spk", *extra_files]
    if strict or (path / "spk2utt").exists():
        files.append("spk2utt")
    tables: Dict[str, Optional[Table]] = {}
    for file in files:
        tables[file] = _parse_table(
            path / file,
            f"{name}/{file}",
            problems,
            allow_empty_value=file == "text",
            strict=strict,
        )
    if any(table is None for table in tables.values()):
        return None
    audio, text, utt2spk = tables[audio_file], tables["text"], tables["utt2spk"]
    assert audio is not None and text is not None and utt2spk is not None

    if not audio:
        problems.append(f"{audio.name}: no utterances")
    for utt in audio:
        if "/" in utt:
            problems.append(f"{audio.where(utt)}: utterance id {utt!r} has a '/'")
    # Every table names the utterances of the audio table, no more, no fewer.
    for file in files:
        other = tables[file]
        if file in (audio_file, "spk2utt") or other is None:
            continue
        for utt in audio:
            if utt not in other:
                problems.append(
                    f"{audio.where(utt)}: utterance {utt!r} is not in {file}"
                )
        for utt in other:
            if utt not in audio:
                problems.append(
                    f"{other.where(utt)}: utterance {utt!r} is not in {audio_file}"
                )

    for utt, words in text.items():
        if not words:
            if not allow_empty_text:
                problems.append(f"{text.where(utt)}: empty transcript for {utt!r}")
        elif check_charset and not TRANSCRIPT_ALPHABET.fullmatch(words):
            bad = "".join(sorted(set(TRANSCRIPT_ALPHABET.sub("", words))))
            problems.append(
                f"{text.where(utt)}: characters outside A-Z, apostrophe and "
                f"space: {bad!r}"
            )
        elif strict and "  " in words:
            problems.append(f"{text.where(utt)}: repeated spaces in transcript")

    if strict:
        for utt, spk in utt2spk.items():
            if " " in spk:
                problems.append(
                    f"{utt2spk.where(utt)}: more than one speaker for {utt!r}"
                )
            elif not (utt == spk or utt.startswith((spk + "-", spk + "_"))):
                problems.append(
                    f"{utt2spk.where(utt)}: utterance id {utt!r} does not start "
                    f"with its speaker id {spk!r}"
                )
    spk2utt = tables.get("spk2utt")
    if spk2utt is not None:
        _check_spk2utt(spk2utt, utt2spk, problems, strict)
    if strict:
        _check_audio_files(audio, check_audio, nj, problems)
    extra = {file: tables[file] for file in extra_files}
    return DataDir(path, audio, text, utt2spk, audio_file, extra)


def _check_spk2utt(
    spk2utt: Table, utt2spk: Table, problems: List[str], strict: bool
) -> None:
    """spk2utt must be utt2spk inverted (in sorted order, when ``strict``)."""
    expected: Dict[str, List[str]] = {}
    for utt, spk in utt2spk.items():
        expected.setdefault(spk, []).append(utt)
    for spk, listed in spk2utt.items():
        where = spk2utt.where(spk)
        utts = listed.split()
        if spk not in expected:
            problems.append(f"{where}: speaker {spk!r} has no utterance in utt2spk")
            continue
        if strict and sorted(utts, key=str.encode) != utts:
            problems.append(f"{where}: utterances of speaker {spk!r} are not sorted")
        for utt in sorted(set(utts) - set(expected[spk])):
            said = (
                f"utt2spk:{utt2spk.lineno[utt]} gives speaker {utt2spk[utt]!r}"
                if utt in utt2spk
                else "it is not in utt2spk"
            )
            problems.append(f"{where}: speaker {spk!r} lists {utt!r}, but {said}")
        for utt in sorted(set(expected[spk]) - set(utts)):
            problems.append(
                f"{where}: speaker {spk!r} does not list {utt!r} "
                f"(utt2spk:{utt2spk.lineno[utt]})"
            )
        if len(set(utts)) != len(utts):
            problems.append(f"{where}: speaker {spk!r} lists an utterance twice")
    for spk in sorted(set(expected) - set(spk2utt)):
        line = utt2spk.lineno[expected[spk][0]]
        problems.append(f"{spk2utt.name}: speaker {spk!r} is missing (utt2spk:{line})")


def _audio_path(value: str) -> Optional[str]:
    """The file a wav.scp value reads, or None for a pipe command."""
    if value.endswith("|"):
        return None
    match = _ARK_OFFSET.match(value)
    return match.group(1) if match else value


def _check_audio_files(
    audio: Table, decode: bool, nj: int, problems: List[str]
) -> None:
    """Every audio file exists; with ``decode``, each is good audio."""
    to_open: List[Tuple[str, str]] = []
    for utt, value in audio.items():
        path = _audio_path(value)
        if path is None:
            continue
        if not Path(path).is_file():
            problems.append(f"{audio.where(utt)}: audio file does not exist: {path}")
        elif decode and path == value:
            to_open.append((audio.where(utt), path))
    if to_open:
        with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
            found = pool.map(check_audio_file, [p for _, p in to_open])
            for (where, _), problem in zip(to_open, found, strict=True):
                if problem:
                    problems.append(f"{where}: {problem}")


def check_audio_file(path: str) -> Optional[str]:
    """``None`` when ``path`` is good audio, else ``"cannot read audio <path>:
    <reason>"``, the reason from ``espnet_shared_conformer.audio_io`` (the whole file is
    decoded)."""
    from espnet_shared_conformer.audio_io import check_audio

    problem = check_audio(path, allow_command=False)
    return None if problem is None else f"cannot read audio {path}: {problem}"


def read_data_dir(
    path: Path,
    *,
    audio_file: str = "wav.scp",
    extra_files: Iterable[str] = (),
    allow_empty_text: bool = False,
) -> DataDir:
    """Read a data directory whose files agree, for a stage to use.

    ``audio_file`` is ``wav.scp`` or ``feats.scp``; ``extra_files`` (say
    ``utt2num_samples``) must name the same utterances too; ``spk2utt`` is
    checked when present. Raises :class:`DataDirError` naming every problem.
    """
    path = Path(path)
    problems: List[str] = []
    data = _check_data_dir(
        path,
        str(path),
        problems,
        audio_file=audio_file,
        extra_files=extra_files,
        allow_empty_text=allow_empty_text,
    )
    if problems or data is None:
        raise _error(f"{path}: not a usable data directory", problems)
    return data


def validate_data_dir(
    data_dir: Path,
    check_audio: bool = False,
    check_charset: bool = True,
    nj: int = 1,
    display_name: Optional[str] = None,
) -> List[str]:
    """Every problem of the data directory ``data_dir`` (empty when clean).

    Beyond :func:`read_data_dir`: the four files are there, in Kaldi's
    format (sorted, no stray whitespace); each utterance id starts with its
    speaker id; transcripts are non-empty and (``check_charset``) in
    :data:`TRANSCRIPT_ALPHABET`; every audio file exists and, with
    ``check_audio``, is good audio (decoded in ``nj`` threads).
    ``display_name`` replaces the directory in messages (a directory checked
    under a temporary name before it is moved in place).
    """
    data_dir = Path(data_dir)
    problems: List[str] = []
    _check_data_dir(
        data_dir,
        display_name if display_name is not None else str(data_dir),
        problems,
        strict=True,
        check_charset=check_charset,
        check_audio=check_audio,
        nj=nj,
    )
    return problems


def write_data_dir(
    dst: Path, utterances: Sequence[Utterance], marker: Optional[str] = None
) -> None:
    """Write wav.scp, text, utt2spk and spk2utt of ``utterances`` to ``dst``.

    The directory is built under ``<dst>.tmp``, checked with
    :func:`validate_data_dir`, and only then moved in place; ``marker`` (if
    given) is written last as ``dst/.done``. On any error ``dst`` is left as
    it was.
    """
    dst = Path(dst)
    with building(dst) as tmp:
        write_table(tmp / "wav.scp", [(u.utt_id, u.audio) for u in utterances])
        write_table(tmp / "text", [(u.utt_id, u.text) for u in utterances])
        utt2spk = {u.utt_id: u.speaker for u in utterances}
        write_table(tmp / "utt2spk", utt2spk.items())
        write_table(tmp / "spk2utt", spk2utt_lines(utt2spk))
        problems = validate_data_dir(tmp, display_name=str(dst))
        if problems:
            raise DataDirError.listing(f"refusing to write {dst}", problems)
        if marker is not None:
            (tmp / ".done").write_text(marker, encoding="utf-8")
