"""ONNX export: dynamic axes, agreement with PyTorch, shared weights stored once."""

import os

import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from espnet_shared_conformer.onnx_export import (  # noqa: E402
    EncoderCTC,
    check_onnx,
    deduplicate_initializers,
    export_onnx,
    main,
)
from espnet_shared_conformer.params import count_parameters  # noqa: E402

from conftest import build  # noqa: E402

SHARED_LOWRANK = dict(
    num_blocks=6,
    num_unique_blocks=2,
    share_across_layers=["conv"],
    tie_macaron_ffn=True,
    tie_attention_projections="qk",
    lowrank_rank=8,
    lowrank_shared_factor="in",
)
CASES = {
    "plain": {},
    "shared-lowrank": SHARED_LOWRANK,
    "out-factor-abs-pos": dict(
        num_unique_blocks=2,
        lowrank_rank=6,
        lowrank_shared_factor="out",
        pos_enc_layer_type="abs_pos",
        selfattention_layer_type="selfattn",
    ),
    "legacy-rel-pos": dict(rel_pos_type="legacy", num_unique_blocks=2),
    "narrow-subsampling": dict(num_unique_blocks=2, subsampling_channels=6),
    # The chunk mask follows the exported graph's dynamic time axis.
    "chunked-causal": dict(
        num_unique_blocks=2, causal_conv=True, chunk_size=4, num_left_chunks=1
    ),
}


class _Ctc(torch.nn.Module):
    """Stands in for ESPnet's CTC: only its output layer goes into the graph."""

    def __init__(self, d: int, vocab: int) -> None:
        super().__init__()
        self.ctc_lo = torch.nn.Linear(d, vocab)


def _initializer_bytes(path):
    from onnx import numpy_helper

    model = onnx.load(path)
    return sum(numpy_helper.to_array(i).nbytes for i in model.graph.initializer)


@pytest.mark.parametrize("options", CASES.values(), ids=CASES.keys())
def test_onnx_agrees_with_pytorch_at_two_lengths(tmp_path, options):
    encoder = build(seed=0, **options).eval()
    ctc = _Ctc(16, 11)
    path = str(tmp_path / "model.onnx")
    export_onnx(encoder, path, ctc=ctc)
    wrapper = EncoderCTC(encoder, ctc)
    # The wrapper (positions computed in the graph) is the encoder itself.
    x = torch.randn(2, 45, 20)
    lengths = torch.tensor([45, 30])
    with torch.no_grad():
        reference = torch.log_softmax(ctc.ctc_lo(encoder(x, lengths)[0]), -1)
        torch.testing.assert_close(wrapper(x, lengths)[0], reference)
    # Two batches, both unlike the 64 frames the graph was traced on.
    diff = check_onnx(path, wrapper, lengths=((50, 37), (131, 90, 20)))
    assert diff < 1e-4


def test_shared_weights_are_stored_once(tmp_path):
    encoder = build(seed=0, **SHARED_LOWRANK).eval()
    path = str(tmp_path / "model.onnx")
    export_onnx(encoder, path)
    # Every stored tensor is a parameter (or a small buffer) of the encoder:
    # six virtual layers over two blocks must not store anything three times.
    assert _initializer_bytes(path) <= 1.1 * 4 * count_parameters(encoder)


def test_file_is_no_larger_than_its_unique_parameters(tmp_path):
    """A model where weights, not graph structure, dominate the file."""
    encoder = build(
        seed=0,
        output_size=96,
        linear_units=384,
        num_blocks=6,
        num_unique_blocks=2,
        lowrank_rank=16,
        lowrank_modules=["mhsa"],
        lowrank_shared_factor="in",
    ).eval()
    ctc = _Ctc(96, 50)
    path = str(tmp_path / "model.onnx")
    export_onnx(encoder, path, ctc=ctc)
    unique = 4 * count_parameters(encoder, ctc)
    assert os.path.getsize(path) <= 1.1 * unique
    # Six virtual layers of block 0's size would take about 3x the file.
    block = sum(p.numel() for p in encoder.encoders[0].parameters())
    assert os.path.getsize(path) < 0.5 * 4 * 6 * block


def test_deduplicate_initializers_merges_equal_tensors():
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(torch.arange(6.0).reshape(2, 3).numpy(), "w1")
    w2 = numpy_helper.from_array(torch.arange(6.0).reshape(2, 3).numpy(), "w2")
    other = numpy_helper.from_array(torch.ones(2, 3).numpy(), "w3")
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "w1"], ["a"]),
            helper.make_node("Add", ["a", "w2"], ["b"]),
            helper.make_node("Add", ["b", "w3"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[w, w2, other],
    )
    model = helper.make_model(graph)
    assert deduplicate_initializers(model) == 1
    assert [i.name for i in model.graph.initializer] == ["w1", "w3"]
    assert [list(n.input) for n in model.graph.node] == [
        ["x", "w1"],
        ["a", "w1"],
        ["b", "w3"],
    ]
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString())
    x = torch.zeros(2, 3).numpy()
    (y,) = session.run(None, {"x": x})
    assert (y == 2 * torch.arange(6.0).reshape(2, 3).numpy() + 1).all()


def test_command_exports_an_espnet_model(tmp_path, capsys):
    import yaml
    from espnet2.tasks.asr import ASRTask

    from espnet_shared_conformer import register

    register()
    config = dict(
        frontend="default",
        frontend_conf=dict(n_fft=256, win_length=256, hop_length=128, n_mels=20),
        normalize="global_mvn",
        encoder="shared_conformer",
        encoder_conf=dict(
            output_size=16,
            attention_heads=2,
            linear_units=24,
            num_blocks=4,
            num_unique_blocks=2,
            cnn_module_kernel=5,
            rel_pos_type="latest",
            lowrank_rank=4,
            lowrank_shared_factor="in",
        ),
        decoder="transformer",
        decoder_conf=dict(attention_heads=2, linear_units=16, num_blocks=1),
    )
    import numpy as np

    stats = tmp_path / "feats_stats.npz"
    np.savez(
        stats, count=np.array(10), sum=np.full(20, 3.0), sum_square=np.full(20, 20.0)
    )
    config["normalize_conf"] = dict(stats_file=str(stats))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\nA\nB\n<sos/eos>\n")
    args = ASRTask.get_parser().parse_args(
        [
            "--config",
            str(tmp_path / "train.yaml"),
            "--token_list",
            str(tmp_path / "tokens.txt"),
            "--output_dir",
            str(tmp_path),
        ]
    )
    model = ASRTask.build_model(args).eval()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    out = tmp_path / "model.onnx"
    argv = ["--config", str(tmp_path / "config.yaml"), "--model"]
    assert main(argv + [str(tmp_path / "model.pth"), "--out", str(out)]) == 0
    assert "largest difference to PyTorch" in capsys.readouterr().out

    # The graph's log-posteriors are the model's own CTC log-posteriors.
    session = ort.InferenceSession(str(out))
    feats = torch.randn(1, 70, 20)
    lengths = torch.tensor([70])
    (log_probs, out_lengths) = session.run(
        None, {"feats": feats.numpy(), "feats_lengths": lengths.numpy()}
    )
    with torch.no_grad():
        normalized, _ = model.normalize(feats.clone(), lengths)
        encoded, encoded_lengths, _ = model.encoder(normalized, lengths)
        expected = model.ctc.log_softmax(encoded)
    assert out_lengths.tolist() == encoded_lengths.tolist()
    torch.testing.assert_close(torch.from_numpy(log_probs), expected, atol=1e-4, rtol=0)
