#!/usr/bin/env python3
"""Format a data directory's audio for training: stage 3 of the recipe.

    dump_audio.py [options] data/train dump/raw/org/train

Reads every ``wav.scp`` entry (a file of any sample rate and format that
libsndfile reads, or a ``command |``), resamples it to ``--fs`` and writes
either audio files (``--feats_type raw``: ``wav.scp`` pointing at flac/wav
files) or Kaldi fbank features (``--feats_type fbank``: ``feats.scp`` +
``feats_shape``, written with kaldiio). Both write ``utt2num_samples`` (at
``--fs``), ``text``, ``utt2spk``, ``spk2utt`` and the marker files
``feats_type`` and ``audio_format``.

Bad audio is judged by ``espnet_shared_conformer.audio_io``, the loader data
preparation and ``espnet_shared_conformer.bin.transcribe`` use too. Every
audio file is decoded and checked before anything is written; all the bad ones
are reported (``wav.scp`` line, path and reason: "empty file", "NaN/inf
samples ...") and nothing is written. Commands (``... |``, e.g. speed
perturbation) run once, while writing: the output is built under ``OUT.tmp``
and renamed to ``OUT`` only when every utterance succeeded, so an error there
too leaves any previous ``OUT`` untouched and no partial one. Exit status 1
for bad input.
"""

import argparse
import contextlib
import multiprocessing
import multiprocessing.pool
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import soundfile
from datadir import (
    DataDirError,
    Progress,
    building,
    exit_status,
    read_data_dir,
    spk2utt_lines,
    write_table,
)

from espnet_shared_conformer.audio_io import (
    MIN_INPUT_RATE,
    AudioError,
    check_audio,
    is_command,
    kaldi_fbank,
    load_audio,
)

#: Output files are spread over sub-directories of this many utterances each.
UTTS_PER_PART = 10000
_FORMATS = {"flac": "FLAC", "wav": "WAV"}


def _bad_audio(in_dir: Path, problems: List[str]) -> DataDirError:
    """The error for utterances with bad audio: each one's line and reason."""
    return DataDirError.listing(f"{in_dir}: bad audio, nothing written", problems)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("in_dir", type=Path, help="input Kaldi data directory")
    parser.add_argument("out_dir", type=Path, help="output dump directory")
    parser.add_argument("--fs", type=int, default=16000, help="output sample rate (Hz)")
    parser.add_argument("--feats_type", choices=["raw", "fbank"], default="raw")
    parser.add_argument(
        "--audio_format",
        choices=sorted(_FORMATS),
        default="flac",
        help="file format of dumped audio (raw feats)",
    )
    parser.add_argument(
        "--n_mels", type=int, default=80, help="fbank bins (fbank feats)"
    )
    parser.add_argument("--nj", type=int, default=1, help="parallel worker processes")
    parser.add_argument(
        "--min_input_fs",
        type=int,
        default=MIN_INPUT_RATE,
        help="reject input audio whose sample rate is lower than this (Hz)",
    )
    return parser


class _Job:
    """What a worker needs to turn one utterance into output (picklable)."""

    def __init__(self, args: argparse.Namespace, tmp_dir: Path) -> None:
        self.fs = args.fs
        self.feats_type = args.feats_type
        self.audio_format = args.audio_format
        self.n_mels = args.n_mels
        self.min_input_fs = args.min_input_fs
        self.tmp_dir = tmp_dir

    def __call__(self, item: Tuple[int, str, str]):
        index, utt, entry = item
        try:
            samples = load_audio(entry, self.fs, self.min_input_fs)
        except AudioError as e:
            return index, utt, None, e.reason
        if self.feats_type == "fbank":
            return index, utt, len(samples), kaldi_fbank(samples, self.fs, self.n_mels)
        path = self.tmp_dir / _relative_audio_path(index, utt, self.audio_format)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Quantize ourselves: libsndfile wraps around instead of clipping.
        pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
        soundfile.write(
            str(path),
            pcm,
            self.fs,
            format=_FORMATS[self.audio_format],
            subtype="PCM_16",
        )
        return index, utt, len(samples), None


class _Check:
    """Decode one file entry and return its problem, or None (picklable)."""

    def __init__(self, min_input_fs: int) -> None:
        self.min_input_fs = min_input_fs

    def __call__(self, entry: str) -> Optional[str]:
        return check_audio(entry, self.min_input_fs)


def _init_worker() -> None:
    # One thread per worker: the parallelism is across utterances.
    os.environ["OMP_NUM_THREADS"] = "1"


def _relative_audio_path(index: int, utt: str, audio_format: str) -> str:
    return f"data/part{index // UTTS_PER_PART + 1}/{utt}.{audio_format}"


def dump(args: argparse.Namespace) -> None:
    data = read_data_dir(args.in_dir)
    utts = data.utts
    _check_files(args, data, utts)
    with building(args.out_dir) as tmp_dir:
        _dump_into(args, data, utts, args.out_dir, tmp_dir)


def _pool(nj: int) -> multiprocessing.pool.Pool:
    """``nj`` worker processes, one thread each."""
    # Forking is fast, but forking a process in which torch already runs
    # threads (a caller imported it) can deadlock; then start the workers
    # from a clean server process instead.
    method = "forkserver" if "torch" in sys.modules else "fork"
    return multiprocessing.get_context(method).Pool(nj, initializer=_init_worker)


def _map(args: argparse.Namespace, function, items: list):
    """``function`` over ``items``, in ``--nj`` worker processes when > 1."""
    nj = max(1, min(args.nj, len(items)))
    if nj == 1:
        return list(map(function, items))
    with _pool(nj) as pool:
        return pool.map(function, items, chunksize=8)


def _check_files(args: argparse.Namespace, data, utts: List[str]) -> None:
    """Decode every file entry (not commands: they run once, while writing)
    and raise an error naming each bad one, before anything is written."""
    files = [utt for utt in utts if not is_command(data.audio[utt])]
    problems = _map(args, _Check(args.min_input_fs), [data.audio[u] for u in files])
    bad = [
        f"{data.audio.where(utt)}: {data.audio[utt]}: {problem}"
        for utt, problem in zip(files, problems, strict=True)
        if problem is not None
    ]
    if bad:
        raise _bad_audio(args.in_dir, bad)


def _dump_into(args, data, utts: List[str], out_dir: Path, tmp_dir: Path) -> None:
    job = _Job(args, tmp_dir)
    if args.feats_type == "fbank":
        (tmp_dir / "data").mkdir()
    items = [(i, utt, data.audio[utt]) for i, utt in enumerate(utts)]
    progress = Progress(
        len(items), f"{args.in_dir} -> {out_dir}", unit="utts", every_seconds=10
    )
    num_samples = {}
    scp_rows = []
    shape_rows = []
    ark: Optional[object] = None
    ark_part = 0
    nj = max(1, min(args.nj, len(items)))
    with contextlib.ExitStack() as stack:
        if nj > 1:
            pool = stack.enter_context(_pool(nj))
            results = pool.imap(job, items, chunksize=8)
        else:
            results = map(job, items)
        bad = []
        try:
            for index, utt, length, payload in results:
                progress.update()
                if length is None:
                    where = data.audio.where(utt)
                    bad.append(f"{where}: {data.audio[utt]}: {payload}")
                    continue
                if bad:  # failing anyway: only look for more bad entries
                    continue
                num_samples[utt] = str(length)
                if args.feats_type == "fbank":
                    part = index // UTTS_PER_PART + 1
                    if part != ark_part:
                        if ark is not None:
                            ark.close()
                        ark_part = part
                        ark = (tmp_dir / "data" / f"feats.part{part}.ark").open("wb")
                    scp_rows.append((utt, _write_ark(ark, utt, payload, out_dir, part)))
                    shape_rows.append((utt, f"{payload.shape[0]},{payload.shape[1]}"))
                else:
                    scp_rows.append(
                        (
                            utt,
                            str(
                                out_dir
                                / _relative_audio_path(index, utt, args.audio_format)
                            ),
                        )
                    )
        finally:
            if ark is not None:
                ark.close()
    if bad:
        raise _bad_audio(args.in_dir, bad)

    if args.feats_type == "fbank":
        write_table(tmp_dir / "feats.scp", scp_rows)
        write_table(tmp_dir / "feats_shape", shape_rows)
    else:
        write_table(tmp_dir / "wav.scp", scp_rows)
    write_table(tmp_dir / "utt2num_samples", num_samples.items())
    write_table(tmp_dir / "text", data.text.items())
    write_table(tmp_dir / "utt2spk", data.utt2spk.items())
    write_table(tmp_dir / "spk2utt", spk2utt_lines(data.utt2spk))
    (tmp_dir / "feats_type").write_text(args.feats_type + "\n")
    (tmp_dir / "audio_format").write_text(
        (args.audio_format if args.feats_type == "raw" else "kaldi_ark") + "\n"
    )
    (tmp_dir / "fs").write_text(f"{args.fs}\n")


def _write_ark(ark, utt: str, feats: np.ndarray, out_dir: Path, part: int) -> str:
    """Append one matrix to an open ark; return its ``feats.scp`` value."""
    import kaldiio

    start = ark.tell()
    kaldiio.save_ark(ark, {utt: feats})
    # An scp offset points just past "<utt> " to the binary matrix header.
    offset = start + len(utt.encode("utf-8")) + 1
    return f"{out_dir}/data/feats.part{part}.ark:{offset}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.nj < 1:
        parser.error(f"--nj ({args.nj}) must be at least 1")
    return exit_status(lambda: dump(args))


if __name__ == "__main__":
    sys.exit(main())
