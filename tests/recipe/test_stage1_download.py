"""local/download_librispeech.py against an HTTP server on 127.0.0.1 started here."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path
from typing import Iterator, Optional

import pytest

from stage1_helpers import make_chapter

import download_librispeech as dl
from prep_common import StageError


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.files`; honours ``Range: bytes=N-`` unless
    `server.ignore_range`; the first response for a path can be cut after
    `server.cut_first` bytes (a dropped connection)."""

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        header = self.headers.get("Range")
        if header and not srv.ignore_range:
            start = int(header.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_first is not None and self.path not in srv.cut_done:
            srv.cut_done.add(self.path)
            self.wfile.write(body[: srv.cut_first])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, Optional[str]]] = []
        self.ignore_range = False
        self.cut_first: Optional[int] = None
        self.cut_done: set[str] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/ls"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _archive(tmp_path: Path, subset: str = "dev-clean") -> bytes:
    """A LibriSpeech-style tar.gz: LibriSpeech/<subset>/... plus README.TXT."""
    stage = tmp_path / "stage"
    make_chapter(stage / "LibriSpeech" / subset, "84", "121123", {"0000": "GO DO YOU HEAR",
                                                                 "0001": "BUT IN LESS THAN FIVE MINUTES"})
    (stage / "LibriSpeech" / "README.TXT").write_text("test corpus\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(stage / "LibriSpeech", arcname="LibriSpeech")
    return buffer.getvalue()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _fetch(server: _Server, root: Path, data: bytes, subset: str = "dev-clean", **kw) -> Path:
    return dl.fetch_subset(subset, root, server.base_url, {subset: _md5(data)},
                           retry_wait=0, show_progress=False, **kw)


def test_complete_download(server: _Server, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    final = _fetch(server, root, data)
    assert final == root / "LibriSpeech" / "dev-clean"
    assert (final / "84" / "121123" / "84-121123-0001.flac").is_file()
    assert (final / "84" / "121123" / "84-121123.trans.txt").read_text().startswith("84-121123-0000 GO")
    assert (root / "LibriSpeech" / "README.TXT").read_text() == "test corpus\n"
    assert (root / "dev-clean.tar.gz").read_bytes() == data
    assert sorted(p.name for p in root.iterdir()) == ["LibriSpeech", "dev-clean.tar.gz"]
    assert server.requests == [("/ls/dev-clean.tar.gz", None)]


def test_resume_after_truncated_part(server: _Server, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    root.mkdir()
    half = len(data) // 2
    (root / "dev-clean.tar.gz.part").write_bytes(data[:half])
    _fetch(server, root, data)
    assert server.requests == [("/ls/dev-clean.tar.gz", f"bytes={half}-")]
    assert (root / "dev-clean.tar.gz").read_bytes() == data
    assert not (root / "dev-clean.tar.gz.part").exists()
    assert (root / "LibriSpeech" / "dev-clean" / "84").is_dir()


def test_resume_after_dropped_connection(server: _Server, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    server.cut_first = 100
    root = tmp_path / "downloads"
    _fetch(server, root, data)
    assert server.requests == [("/ls/dev-clean.tar.gz", None), ("/ls/dev-clean.tar.gz", "bytes=100-")]
    assert (root / "dev-clean.tar.gz").read_bytes() == data


def test_complete_part_is_not_fetched_again(server: _Server, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "dev-clean.tar.gz.part").write_bytes(data)
    _fetch(server, root, data)
    assert server.requests == [("/ls/dev-clean.tar.gz", f"bytes={len(data)}-")]
    assert (root / "LibriSpeech" / "dev-clean").is_dir()


def test_server_ignoring_range_starts_over(server: _Server, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    server.ignore_range = True
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "dev-clean.tar.gz.part").write_bytes(b"x" * 50)  # would corrupt an append
    _fetch(server, root, data)
    assert (root / "dev-clean.tar.gz").read_bytes() == data


def test_checksum_mismatch_moves_file_aside_and_fails(
    server: _Server, tmp_path: Path, capsys,
) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    wrong = "0" * 32
    md5_file = tmp_path / "md5sum.txt"
    md5_file.write_text(f"{wrong}  dev-clean.tar.gz\n")
    status = dl.main(["--root", str(root), "--subsets", "dev-clean", "--base_url", server.base_url,
                      "--md5", str(md5_file), "--retry_wait", "0"])
    assert status == 1
    err = capsys.readouterr().err
    assert "md5 mismatch for dev-clean.tar.gz" in err
    assert f"expected {wrong}, got {_md5(data)}" in err
    assert str(root / "dev-clean.tar.gz.corrupt") in err
    assert (root / "dev-clean.tar.gz.corrupt").read_bytes() == data
    assert sorted(p.name for p in root.iterdir()) == ["dev-clean.tar.gz.corrupt"]
    assert len(server.requests) == 1  # no silent second download


def test_corrupt_part_is_caught_after_resume(server: _Server, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    root.mkdir()
    half = len(data) // 2
    (root / "dev-clean.tar.gz.part").write_bytes(b"\0" * half)  # right size, wrong bytes
    with pytest.raises(StageError, match=f"expected {_md5(data)}, got "):
        _fetch(server, root, data)
    assert (root / "dev-clean.tar.gz.corrupt").exists()
    assert not (root / "LibriSpeech").exists()
    assert len(server.requests) == 1


def test_skip_when_done(server: _Server, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    _fetch(server, root, data)
    (root / "dev-clean.tar.gz").unlink()  # even without the archive
    _fetch(server, root, data)
    assert len(server.requests) == 1


def test_existing_archive_is_verified_not_downloaded(server: _Server, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "dev-clean.tar.gz").write_bytes(data)
    _fetch(server, root, data, remove_archive=True)
    assert server.requests == []
    assert (root / "LibriSpeech" / "dev-clean" / "84").is_dir()
    assert not (root / "dev-clean.tar.gz").exists()


def test_existing_bad_archive_is_moved_aside(server: _Server, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "dev-clean.tar.gz").write_bytes(data[:-10])
    with pytest.raises(StageError, match=r"md5 mismatch for .*dev-clean\.tar\.gz: expected"):
        _fetch(server, root, data)
    assert (root / "dev-clean.tar.gz.corrupt").exists()
    assert not (root / "dev-clean.tar.gz").exists()


def test_http_error_is_reported(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"cannot download .*/ls/dev-clean\.tar\.gz: HTTP 404"):
        _fetch(server, tmp_path / "downloads", b"anything")


def test_archive_with_member_outside_librispeech_is_refused(server: _Server, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("elsewhere/evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    data = buffer.getvalue()
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    with pytest.raises(StageError, match="unexpected member 'elsewhere/evil.txt'"):
        _fetch(server, root, data)
    assert sorted(p.name for p in root.iterdir()) == ["dev-clean.tar.gz"]


def test_archive_without_the_subset_is_refused(server: _Server, tmp_path: Path) -> None:
    data = _archive(tmp_path, subset="dev-other")
    server.files["/ls/dev-clean.tar.gz"] = data
    with pytest.raises(StageError, match=r"has no LibriSpeech/dev-clean/ directory"):
        _fetch(server, tmp_path / "downloads", data)
    assert not (tmp_path / "downloads" / "LibriSpeech" / "dev-clean").exists()


def test_unknown_subset_needs_md5(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(StageError, match="no md5 known for 'train-clean-5'"):
        dl.fetch_subset("train-clean-5", tmp_path, server.base_url, dict(dl.KNOWN_MD5))


def test_md5_file_parsing(tmp_path: Path) -> None:
    good = tmp_path / "md5sum.txt"
    good.write_text("# comment\n42E2234BA48799C1F50F24A7926300A1  dev-clean.tar.gz\n"
                    "c8d0bcc9cca99d4f8b62fcc847357931 *dev-other.tar.gz\n\n")
    assert dl.read_md5_file(good) == {"dev-clean": "42e2234ba48799c1f50f24a7926300a1",
                                      "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931"}
    bad = tmp_path / "bad.txt"
    bad.write_text("42e2234ba48799c1f50f24a7926300a1  dev-clean.tar.gz\nnot a sum line\n")
    with pytest.raises(StageError, match=r"bad\.txt:2: expected '<md5>  <name>\.tar\.gz'"):
        dl.read_md5_file(bad)


def test_known_md5_cover_the_full_corpus() -> None:
    assert sorted(dl.KNOWN_MD5) == sorted([
        "dev-clean", "dev-other", "test-clean", "test-other",
        "train-clean-100", "train-clean-360", "train-other-500"])
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in dl.KNOWN_MD5.values())
