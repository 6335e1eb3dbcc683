"""A tiny CTC-only ASR model that has learned one utterance, for decoding tests.

No attention decoder, character tokens: ESPnet's default ``ctc_weight`` 0.5
misreads it, ``ctc_weight`` 1.0 reads :data:`TEXT`. Trained in a few seconds
with the model's own loss; shared by the tests of the loader and of the
README's examples. Its streaming variant (``streaming=True``) is causal,
chunked and globally normalized, and hears TEXT said in tones wherever in a
stream it comes, for the tests of streaming recognition.
"""

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
import yaml

# Characters, more of them than 1.5x ESPnet's default beam (20): its beam
# search prunes to that many tokens first, by the scores of "full" scorers,
# which for a CTC-only model at ctc_weight 0.5 say nothing (the recipe's
# character list is over 30 as well).
TOKENS = ["<blank>", "<unk>", "<space>", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ'0123456789"]
TOKENS.append("<sos/eos>")
TEXT = "CAT TACO"
FS = 16000
#: Samples per chunk of the streaming model: 128-sample hops, subsampled 4
#: times, chunks of 4 frames (0.128 s).
CHUNK_SAMPLES = 128 * 4 * 4
#: The streaming model's utterance lasts this many chunks (2.048 s): silence
#: for STREAMING_LEAD of them (more than the encoder's left context, so that
#: what comes before is as if the stream had been silent), TEXT in tones
#: (0.8 s), silence. Repeated, it is a stream of utterances between pauses.
STREAMING_CHUNKS = 16
STREAMING_LEAD = 4
#: Encoder options of the streaming variant: a causal model trained with the
#: chunk mask it streams with (the offline forward applies it too).
STREAMING_CONF = dict(causal_conv=True, chunk_size=4, num_left_chunks=2)


def tones(text: str) -> np.ndarray:
    """``text`` in a made-up language a causal model learns in seconds: each
    letter a 0.1 s tone of its own pitch (300 Hz for A, 250 Hz higher for
    each next letter), each space 0.1 s of silence."""
    t = np.arange(int(0.1 * FS)) / FS
    pieces = [
        np.zeros_like(t)
        if c == " "
        else 0.1 * np.sin(2 * np.pi * (300 + 250 * (ord(c) - ord("A"))) * t)
        for c in text
    ]
    return np.concatenate(pieces).astype(np.float32)


def streaming_utterance() -> np.ndarray:
    """What the streaming model learns: :data:`STREAMING_CHUNKS` chunks, TEXT
    in :func:`tones` after :data:`STREAMING_LEAD` chunks of silence, silence
    to the end."""
    spoken = tones(TEXT)
    lead = STREAMING_LEAD * CHUNK_SAMPLES
    samples = np.zeros(STREAMING_CHUNKS * CHUNK_SAMPLES, dtype=np.float32)
    samples[lead : lead + len(spoken)] = spoken
    return samples


def _write_stats(root: Path, config: Dict[str, Any]) -> Path:
    """``root/feats_stats.npz``: the statistics of the log-mel features of
    :func:`streaming_utterance`, as ESPnet's stage 10 collects them."""
    from espnet2.asr.frontend.default import DefaultFrontend

    frontend = DefaultFrontend(**config["frontend_conf"])
    samples = torch.from_numpy(streaming_utterance())[None]
    with torch.no_grad():
        feats = frontend(samples, torch.tensor([samples.size(1)]))[0][0].double()
    path = root / "feats_stats.npz"
    np.savez(
        path,
        count=len(feats),
        sum=feats.sum(0).numpy(),
        sum_square=(feats**2).sum(0).numpy(),
    )
    return path


def build_tiny_model(
    root: Path, tokens: List[str], streaming: bool = False
) -> Tuple[Any, Any]:
    """A seeded, untrained shared-conformer CTC model with character
    ``tokens``: writes ``root/train.yaml`` and ``root/tokens.txt`` and returns
    ESPnet's model and parsed training arguments. ``streaming``: with
    :data:`STREAMING_CONF`."""
    from espnet2.tasks.asr import ASRTask

    from espnet_shared_conformer import register

    register()
    config = dict(
        frontend="default",
        frontend_conf=dict(n_fft=256, win_length=256, hop_length=128, n_mels=20),
        encoder="shared_conformer",
        encoder_conf=dict(
            output_size=32,
            attention_heads=2,
            linear_units=48,
            num_blocks=4,
            num_unique_blocks=2,
            cnn_module_kernel=7,
            rel_pos_type="latest",
            dropout_rate=0.0,
            positional_dropout_rate=0.0,
            attention_dropout_rate=0.0,
            **(STREAMING_CONF if streaming else {}),
        ),
        decoder="none",
        model_conf=dict(ctc_weight=1.0),
        best_model_criterion=[["valid", "loss", "min"]],
    )
    if streaming:
        # ESPnet's default utterance_mvn needs the whole utterance first;
        # global statistics (of the one utterance) stream.
        config["normalize"] = "global_mvn"
        config["normalize_conf"] = dict(stats_file=str(_write_stats(root, config)))
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")
    args = ASRTask.get_parser().parse_args(
        ["--config", str(root / "train.yaml"), "--token_list", str(root / "tokens.txt")]
        + ["--token_type", "char"]
    )
    torch.manual_seed(0)
    return ASRTask.build_model(args), args


def train_tiny_ctc_model(root: Path, streaming: bool = False) -> Dict[str, Any]:
    """``root/exp`` with config.yaml + valid.loss.ave.pth of a model that
    learned TEXT, the waveform (``root/utt1.wav``, ``root/wav.scp``), a
    decoding YAML, a lexicon and a word bigram.

    ``streaming``: the model streams (:data:`STREAMING_CONF`) and learns
    :func:`streaming_utterance`: tones between silences, so that it hears
    silence as blank (which endpointing needs) and TEXT wherever it is said.
    """
    import soundfile

    from espnet_shared_conformer.lexicon import write_lexicon
    from espnet_shared_conformer.ngram import estimate_kneser_ney

    exp = root / "exp"
    exp.mkdir(parents=True)
    model, args = build_tiny_model(root, TOKENS, streaming)
    if streaming:
        samples = streaming_utterance()
    else:
        rng = np.random.default_rng(0)
        samples = (rng.standard_normal(FS // 2) * 0.1).astype(np.float32)
    speech = torch.from_numpy(samples)[None]
    target = torch.tensor([[TOKENS.index(c if c != " " else "<space>") for c in TEXT]])
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    if streaming:
        # BatchNorm's statistics over the utterance would show each frame
        # its future: fixed ones make training see what a stream sees.
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.eval()
    for _ in range(400):
        loss = model(speech, torch.tensor([speech.size(1)]), target, torch.tensor([8]))[
            0
        ]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.1:
            break
    assert loss.item() < 0.1, f"the tiny model did not learn {TEXT!r}: loss {loss}"
    torch.save(model.state_dict(), exp / "valid.loss.ave.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump(vars(args)))

    wav = root / "utt1.wav"
    soundfile.write(wav, samples, FS)
    (root / "wav.scp").write_text(f"utt1 {wav}\n")
    # Like the recipe's decode_asr.yaml: options of both searches, no
    # ctc_weight (the model's lack of a decoder must set it).
    decode = root / "decode.yaml"
    decode.write_text("beam_size: 4\nlexicon_beam_size: 50\nword_score: 1.0\n")
    write_lexicon(["CAT", "TACO", "COT", "CA"], TOKENS, root / "lexicon.txt")
    lm = estimate_kneser_ney([["CAT", "TACO"], ["COT", "CAT"]], 2)
    lm.write_arpa(root / "word_lm.arpa")
    return dict(
        root=root,
        exp=exp,
        samples=samples,
        wav_scp=root / "wav.scp",
        decode=decode,
        lexicon=root / "lexicon.txt",
        word_lm=root / "word_lm.arpa",
    )
