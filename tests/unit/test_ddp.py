"""Distributed training of the shared encoder through ESPnet's own DDP path.

Two CPU ranks (gloo), one process each, as ESPnet's launcher starts them on a
cluster, train the shared Conformer for a few steps through the recipe's
training entry point; a single process trains on the same batches whole. After
training, both ranks must hold the same weights, and those must be the single
process's weights.

Why the two runs are the same computation:
- ESPnet shards every mini-batch across ranks (``batch[rank::world_size]``,
  ``AbsTask.build_sequence_iter_factory``), so with the same ``--batch_size``
  the ranks' halves together are the single process's batch, in the same
  order (batch order is drawn from ``--seed`` and the epoch on every rank).
- The CTC loss is a mean over the utterances of a batch. Each rank's trainer
  multiplies its loss by its batch size over the summed batch sizes and by the
  world size, and DDP averages the gradients over ranks, so the gradient DDP
  applies is the gradient of the mean over the whole batch: the single
  process's gradient, up to float summation order.
- Every utterance has the same number of samples, so no batch is padded and a
  rank's utterances see exactly what they see in the whole batch.
- Nothing draws random numbers (no dropout, no SpecAugment), and no module
  pools statistics over the batch: the convolution module is off, because its
  BatchNorm normalizes over each rank's own half batch (ESPnet has no
  synchronized BatchNorm option and torch's runs on GPUs only), which would
  make DDP differ from one process by design, not by a fault.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile
import torch
import yaml

# ESPnet's reporter warns at the end of each epoch about a stat that no batch
# reported a finite value for; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:No valid stats found:UserWarning")

DRIVER = Path(__file__).with_name("ddp_train.py")
RATE = 16000
NUM_UTTS = 12  # 3 steps of 4 utterances: 2 per rank
BATCH_SIZE = 4
TEXTS = ["ABC", "CAB", "BAD", "DAB", "ACE", "BED", "CAD", "BEAD"]
TOKENS = ["<blank>", "<unk>", "A", "B", "C", "D", "E", "<sos/eos>"]

# Repeats blocks (4 virtual layers from 2), shares a module (one self-attention
# for all layers) and shares a low-rank factor (the input-side factor of every
# projection position is one parameter for all blocks).
CONFIG = dict(
    frontend="default",
    frontend_conf=dict(n_fft=256, win_length=256, hop_length=128, n_mels=20),
    specaug=None,
    normalize="utterance_mvn",
    encoder="shared_conformer",
    encoder_conf=dict(
        output_size=32,
        attention_heads=2,
        linear_units=48,
        num_blocks=4,
        num_unique_blocks=2,
        share_across_layers=["mhsa"],
        lowrank_rank=8,
        lowrank_shared_factor="in",
        use_cnn_module=False,
        macaron_style=True,
        rel_pos_type="latest",
        dropout_rate=0.0,
        positional_dropout_rate=0.0,
        attention_dropout_rate=0.0,
    ),
    decoder="none",
    model_conf=dict(ctc_weight=1.0),
    optim="sgd",
    optim_conf=dict(lr=0.5),
    batch_type="unsorted",
    batch_size=BATCH_SIZE,
    max_epoch=1,
    num_workers=0,
    num_att_plot=0,
    use_tensorboard=False,
    use_matplotlib=False,
    keep_nbest_models=1,
    seed=0,
)

# Entries the sharing makes single tensors used by several layers.
SHARED_ENTRIES = [
    "encoder.encoders.0.self_attn.linear_q.a.weight",  # shared module ...
    "encoder.encoders.0.self_attn.linear_pos.b.weight",
    "encoder.encoders.0.feed_forward.w_1.a.weight",  # ... and shared factors
    "encoder.encoders.0.feed_forward_macaron.w_2.a.weight",
]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """Tiny data (real wav files, text, shapes), tokens and the config."""
    root = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    wav_lines, text_lines, shape_lines = [], [], []
    t = np.arange(RATE // 2) / RATE  # 0.5 s each: equal lengths, no padding
    for i in range(NUM_UTTS):
        utt = f"utt{i:02d}"
        # A chord that differs per utterance plus noise: distinct features.
        freqs = 200.0 + 150.0 * rng.random(3)
        wave = sum(np.sin(2 * np.pi * f * t) for f in freqs) / 6
        wave = wave + 0.05 * rng.standard_normal(t.size)
        path = root / "wav" / f"{utt}.wav"
        path.parent.mkdir(exist_ok=True)
        soundfile.write(path, wave.astype(np.float32), RATE, subtype="PCM_16")
        wav_lines.append(f"{utt} {path}\n")
        text_lines.append(f"{utt} {TEXTS[i % len(TEXTS)]}\n")
        shape_lines.append(f"{utt} {t.size}\n")
    (root / "wav.scp").write_text("".join(wav_lines))
    (root / "text").write_text("".join(text_lines))
    (root / "speech_shape").write_text("".join(shape_lines))
    (root / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    (root / "train.yaml").write_text(yaml.safe_dump(CONFIG))
    return dict(root=root)


def train_args(root: Path, out: Path) -> List[str]:
    """The entry point's arguments, as the recipe's stage 11 builds them."""
    data = [f"{root / 'wav.scp'},speech,sound", f"{root / 'text'},text,text"]
    args = ["--config", str(root / "train.yaml"), "--output_dir", str(out)]
    args += ["--use_preprocessor", "true", "--token_type", "char"]
    args += ["--token_list", str(root / "tokens.txt"), "--ngpu", "0"]
    for mode in ("train", "valid"):
        for triple in data:
            args += [f"--{mode}_data_path_and_name_and_type", triple]
        args += [f"--{mode}_shape_file", str(root / "speech_shape")]
    return args


def environment() -> Dict[str, str]:
    # One thread per process: the ranks share the machine's cores.
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def run_ranks(
    commands: List[List[str]], logs: List[Path], timeout: float = 300
) -> None:
    """Run one process per rank; when one fails (the others would wait for it
    forever) or time runs out, stop them all. Output goes to ``logs``."""
    processes = []
    for command, log in zip(commands, logs, strict=True):
        with log.open("w") as f:
            processes.append(
                subprocess.Popen(
                    command, env=environment(), stdout=f, stderr=subprocess.STDOUT
                )
            )
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in processes):
            if time.monotonic() > deadline or any(p.poll() for p in processes):
                break
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    codes = [process.returncode for process in processes]
    if any(codes):
        # Show the rank that failed by itself, not one stopped here (-9).
        rank = max(range(len(codes)), key=lambda r: codes[r])
        pytest.fail(
            f"rank {rank} failed (exit codes {codes}):\n"
            + logs[rank].read_text()[-3000:]
        )


@pytest.fixture(scope="module")
def single_process(experiment: Dict[str, Path]) -> Dict[str, torch.Tensor]:
    """Weights after one process trains on the whole batches.

    Runs in this process, through the entry point's ``main``: one interpreter
    start fewer (importing ESPnet's ASR task takes ~10 s of CPU).
    """
    from espnet_shared_conformer.bin.asr_train import main

    out = experiment["root"] / "single"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks run
    try:
        main(cmd=train_args(experiment["root"], out))
    finally:
        torch.set_num_threads(threads)
    return torch.load(out / "1epoch.pth", map_location="cpu")


@pytest.mark.parametrize("unused_parameters", ["true", "false"])
def test_two_gloo_ranks_train_as_one_process(
    experiment: Dict[str, Path],
    single_process: Dict[str, torch.Tensor],
    unused_parameters: str,
) -> None:
    root = experiment["root"]
    out = root / f"ddp_unused_{unused_parameters}"
    dist = ["--multiprocessing_distributed", "false", "--dist_backend", "gloo"]
    dist += ["--dist_world_size", "2", "--dist_init_method", f"file://{out}.init"]
    dist += ["--unused_parameters", unused_parameters]
    run_ranks(
        [
            [sys.executable, str(DRIVER), *train_args(root, out), *dist]
            + ["--dist_rank", str(rank)]
            for rank in (0, 1)
        ],
        [root / f"{out.name}.rank{rank}.log" for rank in (0, 1)],
    )
    rank0 = torch.load(out / "rank0.pth", map_location="cpu")
    rank1 = torch.load(out / "rank1.pth", map_location="cpu")

    # The dump is what training left: rank 0's equals ESPnet's own checkpoint.
    saved = torch.load(out / "1epoch.pth", map_location="cpu")
    assert all(torch.equal(rank0[k], saved[k]) for k in saved)

    assert set(SHARED_ENTRIES) <= set(rank0)
    assert rank0.keys() == rank1.keys() == single_process.keys()
    for key in rank0:
        # DDP keeps replicas equal by applying one averaged gradient everywhere.
        assert torch.equal(rank0[key], rank1[key]), key
        torch.testing.assert_close(
            rank0[key],
            single_process[key],
            rtol=0,
            atol=1e-5,
            msg=lambda m, key=key: f"{key}: {m}",
        )

    # Training moved the weights far beyond the tolerance, so the comparison
    # above could fail: check against the initial weights (same --seed).
    initial = _initial_weights(root)
    moved = max((single_process[k] - initial[k]).abs().max().item() for k in initial)
    assert moved > 1e-2


def _initial_weights(root: Path) -> Dict[str, torch.Tensor]:
    """The model ESPnet builds from the config before the first step."""
    from espnet2.tasks.asr import ASRTask

    from espnet_shared_conformer import register

    register()
    args = ASRTask.get_parser().parse_args(train_args(root, root / "init"))
    torch.manual_seed(args.seed)
    return ASRTask.build_model(args).state_dict()
