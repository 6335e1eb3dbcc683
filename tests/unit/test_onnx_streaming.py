"""The ONNX chunk step: its stream equals PyTorch's, weights stored once, and
a runtime that loads neither torch nor ESPnet."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from espnet_shared_conformer.onnx_export import main  # noqa: E402
from espnet_shared_conformer.onnx_runtime import (  # noqa: E402
    OnnxStreamingEncoder,
    frontend_path,
    read_frontend,
    sidecar_path,
)
from espnet_shared_conformer.onnx_streaming import (  # noqa: E402
    check_streaming_onnx,
    export_streaming_onnx,
)
from espnet_shared_conformer.params import count_parameters  # noqa: E402
from espnet_shared_conformer.subsampling import time_window  # noqa: E402

from conftest import INPUT_SIZE, batch, build, build_espnet  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VOCAB = 11
# 155 input frames: 38 output frames, a multiple of none of the chunks but 1.
FRAMES = 155
REPEATED_SHARED_FACTOR = dict(
    num_blocks=6,
    num_unique_blocks=2,
    share_across_layers=["conv"],
    tie_macaron_ffn=True,
    lowrank_rank=4,
    lowrank_shared_factor="in",
)


class _Ctc(torch.nn.Module):
    """Stands in for ESPnet's CTC: only its output layer goes into the graph."""

    def __init__(self, d: int, vocab: int) -> None:
        super().__init__()
        self.ctc_lo = torch.nn.Linear(d, vocab)


def _pieces(total: int, seed: int) -> List[int]:
    """Random piece lengths adding up to ``total``, empty and 1-frame ones too."""
    g = torch.Generator().manual_seed(seed)
    pieces = [0, 1]
    while sum(pieces) < total:
        pieces.append(int(torch.randint(0, 24, (1,), generator=g)))
    pieces[-1] -= sum(pieces) - total
    return pieces


@torch.no_grad()
def _torch_stream(
    encoder, ctc, feats: torch.Tensor, pieces: Sequence[int], chunk: int, left: int
) -> List[torch.Tensor]:
    """What each ``forward_chunk`` call returns, through the CTC head."""
    state = encoder.init_streaming_state(feats.size(0), chunk, left)
    outputs, start = [], 0
    for i, length in enumerate(pieces):
        out, state = encoder.forward_chunk(
            feats[:, start : start + length], state, final=i == len(pieces) - 1
        )
        outputs.append(torch.log_softmax(ctc.ctc_lo(out), dim=-1))
        start += length
    return outputs


def _onnx_stream(
    path: str, feats: np.ndarray, pieces: Sequence[int]
) -> List[np.ndarray]:
    """What each ``OnnxStreamingEncoder.forward_chunk`` call returns."""
    runtime = OnnxStreamingEncoder(path)
    state = runtime.init_state(batch=feats.shape[0])
    outputs, start = [], 0
    for i, length in enumerate(pieces):
        out, state = runtime.forward_chunk(
            feats[:, start : start + length], state, final=i == len(pieces) - 1
        )
        outputs.append(out)
        start += length
    return outputs


def _assert_streams_agree(
    encoder, path: str, ctc, chunk: int, left: int, frames: int = FRAMES
) -> None:
    """Two different streams of ``frames`` input frames, in random pieces
    (empty and 1-frame ones too), the last with final=True."""
    feats, _ = batch((frames, frames), seed=chunk)
    feats[1] = batch((frames,), seed=chunk + 1)[0][0]
    pieces = _pieces(frames, seed=chunk + left)
    expected = _torch_stream(encoder, ctc, feats, pieces, chunk, left)
    got = _onnx_stream(path, feats.numpy(), pieces)
    # Call by call the same frames: whole chunks, then the flushed rest.
    assert [g.shape for g in got] == [tuple(e.shape) for e in expected]
    window, stride = time_window(encoder.build_options["input_layer"])
    assert sum(g.shape[1] for g in got) == (frames - window) // stride + 1
    streamed = torch.from_numpy(np.concatenate(got, axis=1))
    torch.testing.assert_close(streamed, torch.cat(expected, 1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("chunk, left", [(1, 3), (4, 0), (4, 2), (5, 1)])
def test_onnx_stream_equals_pytorch_stream(tmp_path, chunk, left):
    """Repeated blocks, a shared conv module and a shared low-rank factor,
    relative positions (rel_pos_type latest); 38 output frames, a multiple of
    no chunk here but 1."""
    encoder = build(
        seed=3, causal_conv=True, chunk_size=chunk, num_left_chunks=left,
        **REPEATED_SHARED_FACTOR,
    ).eval()  # fmt: skip
    ctc = _Ctc(16, VOCAB)
    path = str(tmp_path / "step.onnx")
    spec = export_streaming_onnx(encoder, path, ctc=ctc)
    assert spec["chunk_size"] == chunk and spec["left_frames"] == chunk * left
    _assert_streams_agree(encoder, path, ctc, chunk, left)


ARCHITECTURES = {
    "abs-pos-qk-norm": dict(
        pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn", qk_norm=True
    ),
    "scaled-abs-pos": dict(
        pos_enc_layer_type="scaled_abs_pos", selfattention_layer_type="selfattn"
    ),
    "post-norm-per-layer-norms": dict(
        normalize_before=False, num_blocks=6, num_unique_blocks=2, per_layer_norms=True
    ),
    "no-macaron-no-conv": dict(macaron_style=False, use_cnn_module=False),
    "conv2d6-narrow-out-factor": dict(
        input_layer="conv2d6",
        subsampling_channels=8,
        lowrank_rank=4,
        lowrank_shared_factor="out",
        num_unique_blocks=2,
    ),
}


@pytest.mark.parametrize("options", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_onnx_stream_equals_pytorch_stream_for_other_architectures(tmp_path, options):
    causal = options.get("use_cnn_module", True)
    encoder = build(
        seed=4, chunk_size=3, num_left_chunks=2, causal_conv=causal, **options
    ).eval()
    ctc = _Ctc(16, VOCAB)
    path = str(tmp_path / "step.onnx")
    spec = export_streaming_onnx(encoder, path, ctc=ctc)
    names = [cache["input"] for cache in spec["caches"]]
    assert names == ["key_cache", "value_cache", "conv_cache"][: 3 if causal else 2]
    # Some 200 output frames: absolute positions follow the stream's offset.
    _assert_streams_agree(encoder, path, ctc, 3, 2, frames=4 * FRAMES + 200)


def _initializer_bytes(path: str) -> int:
    from onnx import numpy_helper

    model = onnx.load(path)
    return sum(numpy_helper.to_array(i).nbytes for i in model.graph.initializer)


# Weights, not graph structure, dominate the file.
WIDE = dict(
    output_size=96, linear_units=384, lowrank_rank=16, lowrank_modules=["mhsa"],
    lowrank_shared_factor="in", causal_conv=True, chunk_size=4, num_left_chunks=2,
)  # fmt: skip


def test_file_follows_unique_not_virtual_parameters(tmp_path):
    sizes, stored = {}, {}
    for virtual, unique in ((6, 2), (12, 2), (6, 3)):
        encoder = build(
            seed=0, num_blocks=virtual, num_unique_blocks=unique, **WIDE
        ).eval()
        path = str(tmp_path / f"{virtual}-{unique}.onnx")
        spec = export_streaming_onnx(encoder, path, ctc=_Ctc(96, 50))
        # Caches are inputs, per virtual layer; weights are not.
        assert [c["shape"][0] for c in spec["caches"]] == [virtual] * 3
        unique_bytes = 4 * count_parameters(encoder) + 4 * (96 * 50 + 50)
        # Beyond the parameters: the relative positions' (L + 2C - 1, d) rows.
        positions = 4 * (8 + 2 * 4 - 1) * 96
        stored[virtual, unique] = _initializer_bytes(path)
        assert stored[virtual, unique] <= unique_bytes + positions
        sizes[virtual, unique] = os.path.getsize(path)
        assert sizes[virtual, unique] <= 1.1 * unique_bytes
    # Twice the virtual depth on the same blocks stores the same weights
    # (the unrolled graph's structure grows, by a few percent).
    assert stored[12, 2] == stored[6, 2]
    assert sizes[12, 2] < 1.1 * sizes[6, 2]
    # One more unique block stores about a block more.
    block = sum(p.numel() for p in build(**WIDE).encoders[0].parameters())
    assert stored[6, 3] - stored[6, 2] > 0.8 * 4 * block


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Tuple[str, torch.nn.Module, torch.nn.Module]:
    """A chunk step (chunk 4, 2 left chunks) of the repeated, shared-factor
    encoder with a CTC head; its path, encoder and CTC head."""
    encoder = build(
        seed=3, causal_conv=True, chunk_size=4, num_left_chunks=2,
        **REPEATED_SHARED_FACTOR,
    ).eval()  # fmt: skip
    ctc = _Ctc(16, VOCAB)
    path = str(tmp_path_factory.mktemp("step") / "step.onnx")
    export_streaming_onnx(encoder, path, ctc=ctc)
    return path, encoder, ctc


def test_sidecar_describes_the_graph(exported):
    path, encoder, _ = exported
    runtime = OnnxStreamingEncoder(path)
    spec = runtime.spec
    assert spec["input_frames"] == 4 * (4 - 1) + 7
    assert spec["subsampling"] == dict(input_layer="conv2d", window=7, stride=4)
    assert (spec["output"], spec["output_size"]) == ("log_probs", VOCAB)
    inputs = {i.name: i.shape for i in runtime.session.get_inputs()}
    assert inputs.pop("feats")[1:] == [spec["input_frames"], INPUT_SIZE]
    assert set(inputs) == {"offset", "valid", "key_cache", "value_cache", "conv_cache"}
    for cache in spec["caches"]:
        # Fixed shapes but the batch axis, one entry per virtual layer.
        graph_shape = inputs[cache["input"]]
        assert isinstance(graph_shape[1], str)
        assert graph_shape[:1] + graph_shape[2:] == [
            n for n in cache["shape"] if n is not None
        ]
    assert spec["caches"][0]["shape"] == [6, None, 2, 8, 8]
    assert spec["caches"][2]["shape"] == [6, None, 5 - 1, 16]
    outputs = [o.name for o in runtime.session.get_outputs()]
    assert outputs == ["log_probs"] + [c["output"] for c in spec["caches"]]


def test_runtime_takes_one_stream_without_a_batch_axis(exported):
    path, encoder, ctc = exported
    runtime = OnnxStreamingEncoder(path)
    feats = batch((FRAMES,), seed=9)[0].numpy()
    state, outputs = runtime.init_state(), []
    for piece in np.array_split(feats[0], [10, 50, 51, 120]):
        out, state = runtime.forward_chunk(piece, state)
        assert out.ndim == 2 and out.shape[0] % 4 == 0
        outputs.append(out)
    out, state = runtime.forward_chunk(feats[0, :0], state, final=True)
    assert out.shape == (38 % 4, VOCAB) and state.finished
    streamed = np.concatenate(outputs + [out])
    expected = _torch_stream(encoder, ctc, torch.from_numpy(feats), [FRAMES], 4, 2)
    np.testing.assert_allclose(streamed, expected[0][0].numpy(), atol=1e-4, rtol=0)


def test_a_stream_too_short_for_one_frame_flushes_to_nothing(exported):
    runtime = OnnxStreamingEncoder(exported[0])
    out, state = runtime.forward_chunk(np.zeros((6, INPUT_SIZE)), runtime.init_state())
    assert out.shape == (0, VOCAB)
    out, state = runtime.forward_chunk(np.zeros((0, INPUT_SIZE)), state, final=True)
    assert out.shape == (0, VOCAB) and state.finished


def test_check_streaming_onnx_measures_the_difference(exported):
    path, encoder, ctc = exported
    assert check_streaming_onnx(path, encoder, ctc) < 1e-4
    # Against other weights the same graph is far off.
    other = build(
        seed=5, causal_conv=True, chunk_size=4, num_left_chunks=2,
        **REPEATED_SHARED_FACTOR,
    ).eval()  # fmt: skip
    assert check_streaming_onnx(path, other, ctc) > 1e-2


def test_the_runtime_imports_neither_torch_nor_espnet(exported):
    """What an always-on device runs: the runtime module, a graph, a chunk."""
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from espnet_shared_conformer.onnx_runtime import OnnxStreamingEncoder

        encoder = OnnxStreamingEncoder({exported[0]!r})
        feats = np.random.default_rng(0).standard_normal((40, {INPUT_SIZE}))
        out, state = encoder.forward_chunk(feats, encoder.init_state())
        heavy = ("torch", "torchaudio", "espnet", "espnet2", "typeguard")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        print(json.dumps(dict(shape=out.shape, loaded=loaded)))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    # 40 input frames: 9 output frames ready, 8 of them whole chunks.
    assert report == dict(shape=[8, VOCAB], loaded=[])


# -- errors --------------------------------------------------------------------


def test_an_unlimited_left_context_is_refused(tmp_path):
    encoder = build(causal_conv=True, chunk_size=4).eval()
    path = str(tmp_path / "step.onnx")
    with pytest.raises(ValueError, match=r"num_left_chunks \(-1\) must be at least 0"):
        export_streaming_onnx(encoder, path)
    assert not os.path.exists(path)
    # An override bounds it.
    assert export_streaming_onnx(encoder, path, num_left_chunks=1)["left_frames"] == 4


@pytest.mark.parametrize(
    "encoder, options, message",
    [
        (lambda: build(), {}, r"chunk_size \(0\) must be at least 1"),
        (lambda: build(), dict(chunk_size=4), r"chunk_size \(4\) needs causal_conv"),
        (
            lambda: build(causal_conv=True, chunk_size=4, num_left_chunks=1),
            dict(num_left_chunks=-2),
            r"num_left_chunks \(-2\)",
        ),
        (
            lambda: build_espnet(),
            dict(chunk_size=4),
            r"encoder \(ConformerEncoder\) does not stream",
        ),
    ],
)
def test_an_encoder_that_cannot_stream_is_refused(tmp_path, encoder, options, message):
    with pytest.raises(ValueError, match=message):
        export_streaming_onnx(encoder().eval(), str(tmp_path / "step.onnx"), **options)


def test_runtime_refuses_misuse(exported, tmp_path):
    runtime = OnnxStreamingEncoder(exported[0])
    state = runtime.init_state(batch=2)
    with pytest.raises(ValueError, match=r"feats \(1, 9, 20\) must be \(batch 2"):
        runtime.forward_chunk(np.zeros((1, 9, INPUT_SIZE)), state)
    with pytest.raises(ValueError, match=r"feats \(9, 7\) must be \(frames, 20\) or"):
        runtime.forward_chunk(np.zeros((9, 7)), runtime.init_state())
    _, flushed = runtime.forward_chunk(np.zeros((2, 9, INPUT_SIZE)), state, True)
    with pytest.raises(ValueError, match="flushed"):
        runtime.forward_chunk(np.zeros((2, 9, INPUT_SIZE)), flushed)
    with pytest.raises(ValueError, match=r"batch \(0\) must be at least 1"):
        runtime.init_state(batch=0)
    with pytest.raises(ValueError, match=r"threads \(0\) must be at least 1"):
        OnnxStreamingEncoder(exported[0], threads=0)
    # A sidecar of another kind or version is not read.
    copy = tmp_path / "step.onnx"
    copy.write_bytes(Path(exported[0]).read_bytes())
    spec = json.loads(Path(sidecar_path(exported[0])).read_text())
    for key, value, message in (
        ("version", 2, r"version \(2\) is not 1"),
        ("format", "x", r"format \('x'\) is not"),
    ):
        Path(sidecar_path(str(copy))).write_text(json.dumps({**spec, key: value}))
        with pytest.raises(ValueError, match=message):
            OnnxStreamingEncoder(str(copy))


def test_a_graph_without_frontend_data_is_refused_by_name(exported, tmp_path):
    """Exported before the frontend's data were written, without a frontend,
    or with its arrays gone: ValueError naming the file and the fix."""
    graph = tmp_path / "old.onnx"
    graph.write_bytes(Path(exported[0]).read_bytes())
    spec = json.loads(Path(sidecar_path(exported[0])).read_text())
    sidecar = Path(sidecar_path(str(graph)))
    assert spec["frontend"] is None  # an encoder alone: no frontend
    sidecar.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"old.json: frontend null: the graph's model"):
        read_frontend(str(graph))
    old = {k: v for k, v in spec.items() if k != "frontend"}
    sidecar.write_text(json.dumps(old))
    OnnxStreamingEncoder(str(graph))  # the encoder still reads it
    with pytest.raises(
        ValueError, match=r"old.json: no frontend data .* export it again with"
    ):
        read_frontend(str(graph))
    frontend = dict(kind="default", fs=16000, n_fft=256, win_length=256)
    frontend.update(hop_length=128, center=True, n_mels=20, arrays="old.frontend.npz")
    sidecar.write_text(json.dumps({**spec, "frontend": frontend}))
    with pytest.raises(ValueError, match=r"old.frontend.npz: cannot read the front"):
        read_frontend(str(graph))
    np.savez(tmp_path / "old.frontend.npz", window=np.ones(256), mel=np.ones((129, 7)))
    with pytest.raises(ValueError, match=r"mel matrix \(129, 7\): n_mels is 20"):
        read_frontend(str(graph))
    sidecar.write_text(json.dumps({**spec, "frontend": {**frontend, "n_mels": 7}}))
    with pytest.raises(ValueError, match=r"7 mel bins are not the graph's input_size"):
        read_frontend(str(graph))
    sidecar.write_text(
        json.dumps({**spec, "frontend": frontend, "normalize_outside": "UtteranceMVN"})
    )
    with pytest.raises(ValueError, match=r"normalize_outside \(UtteranceMVN\)"):
        read_frontend(str(graph))


# -- the command -----------------------------------------------------------------


def _espnet_model(root: Path) -> Tuple[torch.nn.Module, List[str]]:
    """A streaming ESPnet ASR model with global_mvn, as the recipe writes it:
    ``root/config.yaml`` and ``root/model.pth``; the model and the command's
    --config / --model arguments."""
    import yaml
    from espnet2.tasks.asr import ASRTask

    from espnet_shared_conformer import register

    register()
    stats = root / "feats_stats.npz"
    np.savez(
        stats, count=np.array(10), sum=np.full(20, 3.0), sum_square=np.full(20, 20.0)
    )
    config = dict(
        frontend="default",
        frontend_conf=dict(n_fft=256, win_length=256, hop_length=128, n_mels=20),
        normalize="global_mvn",
        normalize_conf=dict(stats_file=str(stats)),
        encoder="shared_conformer",
        encoder_conf=dict(
            output_size=16, attention_heads=2, linear_units=24, num_blocks=4,
            num_unique_blocks=2, cnn_module_kernel=5, rel_pos_type="latest",
            lowrank_rank=4, lowrank_shared_factor="in", causal_conv=True,
            chunk_size=4, num_left_chunks=1,
        ),
        decoder="none",
        model_conf=dict(ctc_weight=1.0),
    )  # fmt: skip
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    (root / "tokens.txt").write_text("<blank>\n<unk>\nA\nB\n<sos/eos>\n")
    args = ASRTask.get_parser().parse_args(
        ["--config", str(root / "train.yaml"), "--token_list", str(root / "tokens.txt")]
        + ["--output_dir", str(root)]
    )
    torch.manual_seed(0)
    model = ASRTask.build_model(args).eval()
    (root / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), root / "model.pth")
    return model, ["--config", str(root / "config.yaml")] + [
        "--model",
        str(root / "model.pth"),
    ]


def test_command_exports_a_streaming_espnet_model(tmp_path, capsys):
    model, argv = _espnet_model(tmp_path)
    out = str(tmp_path / "step.onnx")
    overrides = ["--chunk_size", "3", "--num_left_chunks", "2"]
    assert main(argv + ["--out", out, "--streaming", *overrides]) == 0
    printed = capsys.readouterr().out
    assert "chunk step: 3 frames, 2 left chunks" in printed
    assert "largest difference to PyTorch" in printed
    runtime = OnnxStreamingEncoder(out)
    spec = runtime.spec
    assert (spec["chunk_size"], spec["num_left_chunks"]) == (3, 2)
    assert spec["normalize"] == "global_mvn"
    assert spec["frame_shift"] == 128 / 16000
    assert runtime.token_list == ["<blank>", "<unk>", "A", "B", "<sos/eos>"]
    # The frontend as numbers: the sidecar's scalars, the arrays beside it.
    assert spec["frontend"] == dict(
        kind="default", fs=16000, n_fft=256, win_length=256, hop_length=128,
        window="hann", center=True, normalized=False, n_mels=20, log_base=None,
        floor=1e-10, arrays="step.frontend.npz",
    )  # fmt: skip
    assert spec["normalize_outside"] is None
    assert frontend_path(out) == str(tmp_path / "step.frontend.npz")
    with np.load(frontend_path(out)) as arrays:
        np.testing.assert_array_equal(arrays["mel"], model.frontend.logmel.melmat)
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, 3000).astype(np.float32)
    with torch.no_grad():
        speech = torch.from_numpy(samples)[None]
        offline = model.frontend(speech, torch.tensor([3000]))[0][0].numpy()
    padded = np.pad(samples, 128, mode="reflect")
    np.testing.assert_allclose(
        read_frontend(out).frames(padded), offline, atol=1e-4, rtol=0
    )
    # The graph normalizes: raw features in, the model's own CTC
    # log-posteriors out, as its forward_chunk computes them.
    feats = torch.randn(1, 90, 20) * 3 + 1
    log_probs, state = runtime.forward_chunk(feats[0].numpy(), runtime.init_state())
    with torch.no_grad():
        normalized, _ = model.normalize(feats.clone(), torch.tensor([90]))
        state = model.encoder.init_streaming_state(1, 3, 2)
        encoded, _ = model.encoder.forward_chunk(normalized, state)
        expected = model.ctc.log_softmax(encoded)[0]
    assert log_probs.shape == (21, 5) == tuple(expected.shape)
    np.testing.assert_allclose(log_probs, expected.numpy(), atol=1e-4, rtol=0)


def test_command_refuses_what_cannot_stream(tmp_path, capsys):
    model, argv = _espnet_model(tmp_path)
    out = ["--out", str(tmp_path / "step.onnx")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv + out + ["--chunk_size", "3"])
    assert exit_info.value.code == 2
    assert "--chunk_size (3) needs --streaming" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(argv + out + ["--streaming", "--num_left_chunks", "-1"])
    assert exit_info.value.code == 2
    assert "num_left_chunks (-1) must be at least 0" in capsys.readouterr().err


# -- the start-up benchmark -----------------------------------------------------


def test_startup_benchmark_reports_its_figures(tmp_path):
    """The script runs (figures not checked: the machine is shared)."""
    import yaml

    config = tmp_path / "train.yaml"
    encoder_conf = dict(
        output_size=16, attention_heads=2, linear_units=24, num_blocks=4,
        num_unique_blocks=2, cnn_module_kernel=5, rel_pos_type="latest",
    )  # fmt: skip
    config.write_text(yaml.safe_dump(dict(encoder_conf=encoder_conf)))
    figures = tmp_path / "startup.json"
    script = ROOT / "benchmarks" / "bench_onnx_startup.py"
    options = ["--config", str(config), "--repeats", "2", "--chunk_size", "4"]
    options += ["--num_left_chunks", "1", "--vocab_size", "11", "--input_size", "20"]
    run = subprocess.run(
        [sys.executable, str(script), *options, "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (
        "process start to first chunk recognized (4 frames), 2 runs: median"
        in run.stdout
    )
    assert "torch or ESPnet loaded: no" in run.stdout
    report = json.loads(figures.read_text())
    assert len(report["seconds"]) == 2 and min(report["seconds"]) > 0
    assert report["heavy_modules_loaded"] == []
    refused = subprocess.run(
        [sys.executable, str(script), "--repeats", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "--repeats (0) must be >= 1" in refused.stderr
