"""The encoder inside ESPnet: built by name from YAML, trained, decoded, spawned."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml

from espnet_shared_conformer import ENCODER_NAME, is_registered, register

ENCODER_CONF = dict(
    output_size=32,
    attention_heads=2,
    linear_units=48,
    num_blocks=6,
    cnn_module_kernel=7,
    macaron_style=True,
    rel_pos_type="latest",
)
COMBOS = {
    "plain": {},
    "all-levels": dict(
        num_unique_blocks=2,
        share_across_layers=["conv"],
        tie_macaron_ffn=True,
        tie_attention_projections="qk",
        lowrank_rank=8,
        lowrank_shared_factor="in",
        per_layer_norms=True,
        interctc_layer_idx=[3],
        interctc_use_conditioning=True,
    ),
    "consecutive-out": dict(
        num_unique_blocks=3,
        repeat_schedule="consecutive",
        share_across_layers=["mhsa"],
        lowrank_rank=8,
        lowrank_shared_factor="out",
    ),
}
TOKENS = ["<blank>", "<unk>", "A", "B", "C", "D", "E", "<sos/eos>"]


def write_config(tmp_path, encoder_conf):
    config = dict(
        frontend="default",
        frontend_conf=dict(n_fft=256, win_length=256, hop_length=128, n_mels=20),
        encoder=ENCODER_NAME,
        encoder_conf=dict(ENCODER_CONF, **encoder_conf),
        decoder="transformer",
        decoder_conf=dict(attention_heads=2, linear_units=32, num_blocks=1),
        model_conf=dict(
            ctc_weight=0.5,
            interctc_weight=0.3 if "interctc_layer_idx" in encoder_conf else 0.0,
        ),
    )
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(TOKENS) + "\n")
    return path, tokens


def test_register_is_idempotent():
    from espnet2.tasks.asr import encoder_choices

    from espnet_shared_conformer.encoder import SharedConformerEncoder

    register()
    register()
    assert is_registered()
    assert encoder_choices.classes[ENCODER_NAME] is SharedConformerEncoder
    assert list(encoder_choices.classes).count(ENCODER_NAME) == 1


@pytest.mark.parametrize("encoder_conf", COMBOS.values(), ids=COMBOS.keys())
def test_builds_by_name_trains_and_decodes(tmp_path, encoder_conf):
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.tasks.asr import ASRTask

    register()
    config, tokens = write_config(tmp_path, encoder_conf)
    args = ASRTask.get_parser().parse_args(
        [
            "--config",
            str(config),
            "--token_list",
            str(tokens),
            "--token_type",
            "char",
            "--output_dir",
            str(tmp_path),
        ]
    )
    torch.manual_seed(0)
    model = ASRTask.build_model(args)
    assert type(model.encoder).__name__ == "SharedConformerEncoder"

    # A few optimizer steps on one batch: the loss goes down.
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(2, 8000, generator=g)
    text = torch.tensor([[2, 3, 4, 5], [6, 2, 3, -1]])
    batch = dict(
        speech=speech,
        speech_lengths=torch.tensor([8000, 6000]),
        text=text,
        text_lengths=torch.tensor([4, 3]),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss, _, _ = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]

    # Decode through ESPnet's own inference class, from files as training writes them.
    model_file = tmp_path / "model.pth"
    torch.save(model.state_dict(), model_file)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(vars(args)))
    speech2text = Speech2Text(
        asr_train_config=str(config_file),
        asr_model_file=str(model_file),
        device="cpu",
        beam_size=2,
        ctc_weight=0.5,
        nbest=1,
        maxlenratio=0.2,
    )
    results = speech2text(
        np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    )
    if "interctc_layer_idx" in encoder_conf:  # then ESPnet adds interCTC greedy results
        results, interctc = results
        assert list(interctc) == encoder_conf["interctc_layer_idx"]
    text, tokens_out, token_ids, _ = results[0]
    assert all(t in TOKENS for t in tokens_out)
    assert text == "".join(tokens_out)


def test_dry_run_training_through_the_wrapper(tmp_path):
    config, tokens = write_config(tmp_path, COMBOS["all-levels"])
    out = tmp_path / "exp"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_shared_conformer.bin.asr_train",
            "--dry_run",
            "true",
            "--config",
            str(config),
            "--token_list",
            str(tokens),
            "--output_dir",
            str(out),
            "--ngpu",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SharedConformerEncoder" in result.stderr  # ESPnet's model summary
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["encoder"] == ENCODER_NAME
    assert written["encoder_conf"]["num_unique_blocks"] == 2


def test_decoding_through_the_inference_wrapper(tmp_path):
    """ESPnet's inference binary, arguments and all, through the wrapper."""
    import soundfile
    from espnet2.tasks.asr import ASRTask

    register()
    config, tokens = write_config(tmp_path, COMBOS["consecutive-out"])
    args = ASRTask.get_parser().parse_args(
        ["--config", str(config), "--token_list", str(tokens), "--token_type", "char"]
    )
    torch.manual_seed(0)
    model = ASRTask.build_model(args)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    wav = tmp_path / "a.wav"
    rng = np.random.default_rng(0)
    soundfile.write(wav, rng.standard_normal(8000).astype(np.float32) * 0.1, 16000)
    (tmp_path / "wav.scp").write_text(f"utt1 {wav}\n")
    out = tmp_path / "decode"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_shared_conformer.bin.asr_inference",
            "--asr_train_config",
            str(tmp_path / "config.yaml"),
            "--asr_model_file",
            str(tmp_path / "model.pth"),
            "--data_path_and_name_and_type",
            f"{tmp_path / 'wav.scp'},speech,sound",
            "--output_dir",
            str(out),
            "--ngpu",
            "0",
            "--batch_size",
            "1",
            "--beam_size",
            "2",
            "--maxlenratio",
            "0.2",
            "--quantize_asr_model",
            "true",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    hypothesis = (out / "1best_recog" / "text").read_text()
    assert hypothesis.startswith("utt1")


def test_spawned_workers_are_registered(tmp_path):
    """ESPnet's multi-GPU launcher spawns workers that re-import the main module."""
    script = tmp_path / "launcher.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        import torch.multiprocessing as mp

        # What `python -m espnet_shared_conformer.bin.asr_train` runs as __main__.
        from espnet_shared_conformer.bin import asr_train  # noqa: F401

        def worker(rank, path):
            from espnet2.tasks.asr import encoder_choices
            with open(path, "w") as f:
                f.write(encoder_choices.classes["shared_conformer"].__name__)

        if __name__ == "__main__":
            mp.spawn(worker, args=(sys.argv[1],), nprocs=1, join=True)
    """)
    )
    out = tmp_path / "child.txt"
    subprocess.run(
        [sys.executable, str(script), str(out)], check=True, capture_output=True
    )
    assert out.read_text() == "SharedConformerEncoder"


def test_unregistered_process_does_not_know_the_name(tmp_path):
    config, tokens = write_config(tmp_path, {})
    code = textwrap.dedent(f"""
        import espnet_shared_conformer  # importing registers nothing
        from espnet2.tasks.asr import ASRTask
        args = ASRTask.get_parser().parse_args(
            ["--config", "{config}", "--token_list", "{tokens}"])
        ASRTask.build_model(args)
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "shared_conformer" in result.stderr
