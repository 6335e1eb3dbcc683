"""A tiny CTC-only ASR model that has learned one utterance, for decoding tests.

No attention decoder, character tokens: ESPnet's default ``ctc_weight`` 0.5
misreads it, ``ctc_weight`` 1.0 reads :data:`TEXT`. Trained in a few seconds
with the model's own loss; shared by the tests of the loader and of the
README's examples.
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


def build_tiny_model(root: Path, tokens: List[str]) -> Tuple[Any, Any]:
    """A seeded, untrained shared-conformer CTC model with character
    ``tokens``: writes ``root/train.yaml`` and ``root/tokens.txt`` and returns
    ESPnet's model and parsed training arguments."""
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
        ),
        decoder="none",
        model_conf=dict(ctc_weight=1.0),
        best_model_criterion=[["valid", "loss", "min"]],
    )
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")
    args = ASRTask.get_parser().parse_args(
        ["--config", str(root / "train.yaml"), "--token_list", str(root / "tokens.txt")]
        + ["--token_type", "char"]
    )
    torch.manual_seed(0)
    return ASRTask.build_model(args), args


def train_tiny_ctc_model(root: Path) -> Dict[str, Any]:
    """``root/exp`` with config.yaml + valid.loss.ave.pth of a model that
    learned TEXT, the waveform (``root/utt1.wav``, ``root/wav.scp``), a
    decoding YAML, a lexicon and a word bigram."""
    import soundfile

    from espnet_shared_conformer.lexicon import write_lexicon
    from espnet_shared_conformer.ngram import estimate_kneser_ney

    exp = root / "exp"
    exp.mkdir(parents=True)
    model, args = build_tiny_model(root, TOKENS)
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(FS // 2) * 0.1).astype(np.float32)
    speech = torch.from_numpy(samples)[None]
    target = torch.tensor([[TOKENS.index(c if c != " " else "<space>") for c in TEXT]])
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
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
