#!/usr/bin/env python3
"""Download and unpack LibriSpeech: ROOT/<subset>.tar.gz -> ROOT/LibriSpeech/<subset>.

For each subset:

1. skipped entirely when ``ROOT/LibriSpeech/<subset>`` exists (it only ever
   appears complete: extraction happens under a temporary name, then a rename);
2. otherwise ``<base_url>/<subset>.tar.gz`` is fetched into
   ``ROOT/<subset>.tar.gz.part``; an existing ``.part`` is resumed with an HTTP
   Range request (a server that ignores Range restarts it from zero); network
   errors are retried, each retry resuming;
3. the md5 of the whole archive is checked against the published sum; on a
   mismatch the file is moved aside to ``ROOT/<subset>.tar.gz.corrupt``, the
   error names both sums, and the script exits non-zero (it never loops
   re-downloading); a good archive is renamed to ``ROOT/<subset>.tar.gz``;
4. the archive is unpacked (members must lie under ``LibriSpeech/``) and
   moved into place; ``--remove_archive`` then deletes it.

    python local/download_librispeech.py --root downloads \\
        --subsets dev-clean test-clean [--base_url URL] [--md5 md5sum.txt]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Optional

from datadir import DataDirError, Progress, exit_status, log

__all__ = [
    "KNOWN_MD5",
    "DEFAULT_BASE_URL",
    "download",
    "extract",
    "fetch_subset",
    "main",
]

DEFAULT_BASE_URL = "https://www.openslr.org/resources/12"

# md5 of each archive, as published in md5sum.txt next to the archives of
# OpenSLR resource 12 (LibriSpeech ASR corpus).  Data, not code: --md5 FILE
# (same "<md5>  <name>.tar.gz" format) overrides or extends it.
KNOWN_MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}

CHUNK = 1 << 20
_MD5_LINE = re.compile(r"^([0-9a-fA-F]{32})\s+\*?(\S+?)(?:\.tar\.gz)?$")


def read_md5_file(path: Path) -> dict[str, str]:
    """Parse md5sum output lines ``<md5>  <subset>.tar.gz`` into {subset: md5}."""
    sums: dict[str, str] = {}
    for number, line in enumerate(
        Path(path).read_text(encoding="utf-8").splitlines(), start=1
    ):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _MD5_LINE.match(line.strip())
        if not match:
            raise DataDirError(
                f"{path}:{number}: expected '<md5>  <name>.tar.gz', got {line!r}"
            )
        sums[os.path.basename(match.group(2))] = match.group(1).lower()
    return sums


def _md5_of_file(path: Path, digest: "hashlib._Hash") -> None:
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _content_range_start(value: Optional[str]) -> Optional[int]:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value or "")
    return int(match.group(1)) if match else None


def download(
    url: str,
    dest: Path,
    expected_md5: str,
    retries: int = 3,
    retry_wait: float = 5.0,
    timeout: float = 60.0,
    show_progress: bool = True,
) -> None:
    """Fetch `url` into `dest`, resuming ``dest.part``, and check its md5.

    Raises DataDirError after `retries` failed attempts or on an md5 mismatch
    (the bad file is then moved to ``dest.corrupt``).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        attempt += 1
        try:
            digest = _fetch_into(url, part, timeout, show_progress)
            break
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
            OSError,
        ) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code not in (
                408,
                429,
                500,
                502,
                503,
                504,
            ):
                raise DataDirError(
                    f"cannot download {url}: HTTP {e.code} {e.reason}"
                ) from e
            if attempt > retries:
                raise DataDirError(
                    f"cannot download {url} after {attempt} attempts: {e}; "
                    f"re-run to resume from {part} ({_size(part)} bytes)"
                ) from e
            log(
                f"download of {url} interrupted ({e}); resuming in {retry_wait:g}s "
                f"(attempt {attempt + 1} of {retries + 1})"
            )
            time.sleep(retry_wait)
    got = digest.hexdigest()
    if got != expected_md5.lower():
        bad = dest.with_name(dest.name + ".corrupt")
        os.replace(part, bad)
        raise DataDirError(
            f"md5 mismatch for {dest.name} from {url}: "
            f"expected {expected_md5.lower()}, got {got}; "
            f"the file was moved to {bad} (delete it and re-run to download again)"
        )
    os.replace(part, dest)


def _fetch_into(
    url: str, part: Path, timeout: float, show_progress: bool
) -> "hashlib._Hash":
    """One attempt: append the rest of `url` to `part`; return the md5 of all of it."""
    offset = part.stat().st_size if part.exists() else 0
    digest = hashlib.md5()  # the publisher's checksum is md5: not used for security
    request = urllib.request.Request(url)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to fetch: .part is already whole
            log(f"{part} is already complete ({offset} bytes)")
            _md5_of_file(part, digest)
            return digest
        raise
    with response:
        if response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if not offset or start != offset:
                part.unlink(missing_ok=True)  # cannot tell where these bytes belong
                raise ConnectionError(
                    f"asked for bytes from {offset}, server sent a range from {start}"
                )
            log(f"resuming {url} at byte {offset}")
            _md5_of_file(part, digest)
            mode = "ab"
        else:
            if offset:
                status = response.status
                log(f"server did not resume {url} (HTTP {status}); starting over")
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        total = offset + remaining if remaining is not None else 0
        received = 0
        with (
            open(part, mode) as out,
            Progress(
                total, f"downloading {part.name[:-5]}", unit="B", enabled=show_progress
            ) as bar,
        ):
            bar.update(offset)
            while block := response.read(CHUNK):
                out.write(block)
                digest.update(block)
                received += len(block)
                bar.update(len(block))
        if remaining is not None and received < remaining:
            raise ConnectionError(
                f"connection closed after {received} of {remaining} bytes"
            )
    return digest


class _CountingReader:
    """File wrapper that reports bytes read, for extraction progress."""

    def __init__(self, raw: BinaryIO, bar: Progress) -> None:
        self._raw, self._bar = raw, bar

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._bar.update(len(data))
        return data


def _member_filter(member: tarfile.TarInfo, path: str) -> Optional[tarfile.TarInfo]:
    name = member.name[2:] if member.name.startswith("./") else member.name
    if name != "LibriSpeech" and not name.startswith("LibriSpeech/"):
        raise DataDirError(
            f"unexpected member {member.name!r} outside LibriSpeech/ in archive"
        )
    return tarfile.data_filter(
        member, path
    )  # refuses links out, absolute paths, devices


def extract(archive: Path, root: Path, subset: str, show_progress: bool = True) -> Path:
    """Unpack `archive`; move its ``LibriSpeech/<subset>`` to ``root/LibriSpeech/``."""
    root = Path(root)
    final = root / "LibriSpeech" / subset
    tmp = root / f".{subset}.extract.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        with (
            open(archive, "rb") as raw,
            Progress(
                archive.stat().st_size,
                f"unpacking {archive.name}",
                unit="B",
                enabled=show_progress,
            ) as bar,
        ):
            try:
                with tarfile.open(
                    fileobj=_CountingReader(raw, bar), mode="r|gz"
                ) as tar:
                    tar.extractall(tmp, filter=_member_filter)
            except (tarfile.TarError, EOFError, OSError) as e:
                raise DataDirError(f"cannot unpack {archive}: {e}") from e
        unpacked = tmp / "LibriSpeech" / subset
        if not unpacked.is_dir():
            raise DataDirError(f"{archive} has no LibriSpeech/{subset}/ directory")
        final.parent.mkdir(parents=True, exist_ok=True)
        for extra in sorted(
            (tmp / "LibriSpeech").iterdir()
        ):  # README.TXT, SPEAKERS.TXT, ...
            if extra.is_file() and not (final.parent / extra.name).exists():
                os.replace(extra, final.parent / extra.name)
        os.replace(unpacked, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def fetch_subset(
    subset: str,
    root: Path,
    base_url: str,
    md5: dict[str, str],
    remove_archive: bool = False,
    retries: int = 3,
    retry_wait: float = 5.0,
    show_progress: bool = True,
) -> Path:
    """Make ``root/LibriSpeech/<subset>`` exist, downloading it if needed."""
    root = Path(root)
    final = root / "LibriSpeech" / subset
    if final.is_dir():
        log(f"{final} exists, skipping download")
        return final
    if subset not in md5:
        raise DataDirError(
            f"no md5 known for {subset!r}; "
            f"pass --md5 FILE with a line for {subset}.tar.gz"
        )
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{subset}.tar.gz"
    url = f"{base_url.rstrip('/')}/{subset}.tar.gz"
    if archive.is_file():
        digest = hashlib.md5()
        _md5_of_file(archive, digest)
        if digest.hexdigest() != md5[subset]:
            bad = archive.with_name(archive.name + ".corrupt")
            os.replace(archive, bad)
            raise DataDirError(
                f"md5 mismatch for {archive}: expected {md5[subset]}, "
                f"got {digest.hexdigest()}; the file was moved to {bad}"
            )
        log(f"{archive} already downloaded, md5 ok")
    else:
        log(f"downloading {url} -> {archive}")
        download(
            url,
            archive,
            md5[subset],
            retries=retries,
            retry_wait=retry_wait,
            show_progress=show_progress,
        )
    extract(archive, root, subset, show_progress=show_progress)
    if remove_archive:
        archive.unlink()
    log(f"{subset} ready in {final}")
    return final


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        required=True,
        help="download directory; subsets end up in ROOT/LibriSpeech/<subset>",
    )
    parser.add_argument(
        "--subsets", nargs="+", required=True, help="e.g. train-clean-100 dev-clean"
    )
    parser.add_argument(
        "--base_url", default=DEFAULT_BASE_URL, help="where <subset>.tar.gz lives"
    )
    parser.add_argument(
        "--md5",
        type=Path,
        default=None,
        help="md5sum-format file overriding the built-in checksums",
    )
    parser.add_argument(
        "--remove_archive",
        action="store_true",
        help="delete each archive once unpacked",
    )
    parser.add_argument(
        "--retries", type=int, default=3, help="resumed retries after a network error"
    )
    parser.add_argument(
        "--retry_wait", type=float, default=5.0, help="seconds between retries"
    )
    args = parser.parse_args(argv)
    return exit_status(lambda: fetch_subsets(args))


def fetch_subsets(args: argparse.Namespace) -> None:
    """``main``'s work: every subset of ``--subsets``."""
    md5 = dict(KNOWN_MD5)
    if args.md5 is not None:
        md5.update(read_md5_file(args.md5))
    for subset in args.subsets:
        fetch_subset(
            subset,
            args.root,
            args.base_url,
            md5,
            remove_archive=args.remove_archive,
            retries=args.retries,
            retry_wait=args.retry_wait,
        )


if __name__ == "__main__":
    sys.exit(main())
