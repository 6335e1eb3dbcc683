"""local/download_librispeech.py against an HTTP server on 127.0.0.1 started here."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import download_librispeech as dl
import pytest
from datadir import DataDirError
from stage1_helpers import RangeServer, make_chapter


def _archive(tmp_path: Path, subset: str = "dev-clean") -> bytes:
    """A LibriSpeech-style tar.gz: LibriSpeech/<subset>/... plus README.TXT."""
    stage = tmp_path / "stage"
    make_chapter(
        stage / "LibriSpeech" / subset,
        "84",
        "121123",
        {"0000": "GO DO YOU HEAR", "0001": "BUT IN LESS THAN FIVE MINUTES"},
    )
    (stage / "LibriSpeech" / "README.TXT").write_text("test corpus\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(stage / "LibriSpeech", arcname="LibriSpeech")
    return buffer.getvalue()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _fetch(
    server: RangeServer, root: Path, data: bytes, subset: str = "dev-clean", **kw
) -> Path:
    return dl.fetch_subset(
        subset,
        root,
        server.base_url,
        {subset: _md5(data)},
        retry_wait=0,
        show_progress=False,
        **kw,
    )


def test_complete_download(server: RangeServer, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    final = _fetch(server, root, data)
    assert final == root / "LibriSpeech" / "dev-clean"
    assert (final / "84" / "121123" / "84-121123-0001.flac").is_file()
    assert (
        (final / "84" / "121123" / "84-121123.trans.txt")
        .read_text()
        .startswith("84-121123-0000 GO")
    )
    assert (root / "LibriSpeech" / "README.TXT").read_text() == "test corpus\n"
    assert (root / "dev-clean.tar.gz").read_bytes() == data
    assert sorted(p.name for p in root.iterdir()) == ["LibriSpeech", "dev-clean.tar.gz"]
    assert server.requests == [("/ls/dev-clean.tar.gz", None)]


def test_resume_after_truncated_part(server: RangeServer, tmp_path: Path) -> None:
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


def test_resume_after_dropped_connection(server: RangeServer, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    server.cut_first = 100
    root = tmp_path / "downloads"
    _fetch(server, root, data)
    assert server.requests == [
        ("/ls/dev-clean.tar.gz", None),
        ("/ls/dev-clean.tar.gz", "bytes=100-"),
    ]
    assert (root / "dev-clean.tar.gz").read_bytes() == data


def test_complete_part_is_not_fetched_again(
    server: RangeServer, tmp_path: Path
) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "dev-clean.tar.gz.part").write_bytes(data)
    _fetch(server, root, data)
    assert server.requests == [("/ls/dev-clean.tar.gz", f"bytes={len(data)}-")]
    assert (root / "LibriSpeech" / "dev-clean").is_dir()


def test_server_ignoring_range_starts_over(server: RangeServer, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    server.ignore_range = True
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "dev-clean.tar.gz.part").write_bytes(b"x" * 50)  # would corrupt an append
    _fetch(server, root, data)
    assert (root / "dev-clean.tar.gz").read_bytes() == data


def test_checksum_mismatch_moves_file_aside_and_fails(
    server: RangeServer,
    tmp_path: Path,
    capsys,
) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    wrong = "0" * 32
    md5_file = tmp_path / "md5sum.txt"
    md5_file.write_text(f"{wrong}  dev-clean.tar.gz\n")
    status = dl.main(
        [
            "--root",
            str(root),
            "--subsets",
            "dev-clean",
            "--base_url",
            server.base_url,
            "--md5",
            str(md5_file),
            "--retry_wait",
            "0",
        ]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert "md5 mismatch for dev-clean.tar.gz" in err
    assert f"expected {wrong}, got {_md5(data)}" in err
    assert str(root / "dev-clean.tar.gz.corrupt") in err
    assert (root / "dev-clean.tar.gz.corrupt").read_bytes() == data
    assert sorted(p.name for p in root.iterdir()) == ["dev-clean.tar.gz.corrupt"]
    assert len(server.requests) == 1  # no silent second download


def test_corrupt_part_is_caught_after_resume(
    server: RangeServer, tmp_path: Path
) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    root.mkdir()
    half = len(data) // 2
    (root / "dev-clean.tar.gz.part").write_bytes(
        b"\0" * half
    )  # right size, wrong bytes
    with pytest.raises(DataDirError, match=f"expected {_md5(data)}, got "):
        _fetch(server, root, data)
    assert (root / "dev-clean.tar.gz.corrupt").exists()
    assert not (root / "LibriSpeech").exists()
    assert len(server.requests) == 1


def test_skip_when_done(server: RangeServer, tmp_path: Path) -> None:
    data = _archive(tmp_path)
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    _fetch(server, root, data)
    (root / "dev-clean.tar.gz").unlink()  # even without the archive
    _fetch(server, root, data)
    assert len(server.requests) == 1


def test_existing_archive_is_verified_not_downloaded(
    server: RangeServer, tmp_path: Path
) -> None:
    data = _archive(tmp_path)
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "dev-clean.tar.gz").write_bytes(data)
    _fetch(server, root, data, remove_archive=True)
    assert server.requests == []
    assert (root / "LibriSpeech" / "dev-clean" / "84").is_dir()
    assert not (root / "dev-clean.tar.gz").exists()


def test_existing_bad_archive_is_moved_aside(
    server: RangeServer, tmp_path: Path
) -> None:
    data = _archive(tmp_path)
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "dev-clean.tar.gz").write_bytes(data[:-10])
    with pytest.raises(
        DataDirError, match=r"md5 mismatch for .*dev-clean\.tar\.gz: expected"
    ):
        _fetch(server, root, data)
    assert (root / "dev-clean.tar.gz.corrupt").exists()
    assert not (root / "dev-clean.tar.gz").exists()


def test_http_error_is_reported(server: RangeServer, tmp_path: Path) -> None:
    with pytest.raises(
        DataDirError, match=r"cannot download .*/ls/dev-clean\.tar\.gz: HTTP 404"
    ):
        _fetch(server, tmp_path / "downloads", b"anything")


def test_archive_with_member_outside_librispeech_is_refused(
    server: RangeServer, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("elsewhere/evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    data = buffer.getvalue()
    server.files["/ls/dev-clean.tar.gz"] = data
    root = tmp_path / "downloads"
    with pytest.raises(DataDirError, match="unexpected member 'elsewhere/evil.txt'"):
        _fetch(server, root, data)
    assert sorted(p.name for p in root.iterdir()) == ["dev-clean.tar.gz"]


def test_archive_without_the_subset_is_refused(
    server: RangeServer, tmp_path: Path
) -> None:
    data = _archive(tmp_path, subset="dev-other")
    server.files["/ls/dev-clean.tar.gz"] = data
    with pytest.raises(DataDirError, match=r"has no LibriSpeech/dev-clean/ directory"):
        _fetch(server, tmp_path / "downloads", data)
    assert not (tmp_path / "downloads" / "LibriSpeech" / "dev-clean").exists()


def test_unknown_subset_needs_md5(server: RangeServer, tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="no md5 known for 'train-clean-5'"):
        dl.fetch_subset("train-clean-5", tmp_path, server.base_url, dict(dl.KNOWN_MD5))


def test_md5_file_parsing(tmp_path: Path) -> None:
    good = tmp_path / "md5sum.txt"
    good.write_text(
        "# comment\n42E2234BA48799C1F50F24A7926300A1  dev-clean.tar.gz\n"
        "c8d0bcc9cca99d4f8b62fcc847357931 *dev-other.tar.gz\n\n"
    )
    assert dl.read_md5_file(good) == {
        "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
        "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    }
    bad = tmp_path / "bad.txt"
    bad.write_text(
        "42e2234ba48799c1f50f24a7926300a1  dev-clean.tar.gz\nnot a sum line\n"
    )
    with pytest.raises(
        DataDirError, match=r"bad\.txt:2: expected '<md5>  <name>\.tar\.gz'"
    ):
        dl.read_md5_file(bad)


def test_known_md5_cover_the_full_corpus() -> None:
    assert sorted(dl.KNOWN_MD5) == sorted(
        [
            "dev-clean",
            "dev-other",
            "test-clean",
            "test-other",
            "train-clean-100",
            "train-clean-360",
            "train-other-500",
        ]
    )
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in dl.KNOWN_MD5.values())
