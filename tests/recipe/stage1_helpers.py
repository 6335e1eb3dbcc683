"""Helpers for the stage-1 tests: tiny LibriSpeech-layout trees with real
flac audio, and an HTTP server to download them from."""

from __future__ import annotations

import http.server
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile


def write_flac(
    path: Path, seconds: float = 0.2, sample_rate: int = 16000, seed: int = 0
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32)
    soundfile.write(str(path), audio, sample_rate, format="FLAC", subtype="PCM_16")
    return path


def make_chapter(
    subset_dir: Path,
    reader: str,
    chapter: str,
    texts: dict[str, str],
    with_audio: bool = True,
) -> Path:
    """Write one chapter: ``texts`` maps utterance number ("0000") to transcript."""
    chapter_dir = subset_dir / reader / chapter
    chapter_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for number, text in texts.items():
        utt = f"{reader}-{chapter}-{number}"
        lines.append(f"{utt} {text}\n")
        if with_audio:
            write_flac(chapter_dir / f"{utt}.flac", seed=int(number))
    (chapter_dir / f"{reader}-{chapter}.trans.txt").write_text("".join(lines))
    return chapter_dir


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
            self.send_header(
                "Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"
            )
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


class RangeServer(http.server.ThreadingHTTPServer):
    """HTTP server on 127.0.0.1 (a free port) serving `files` by URL path."""

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
