"""ESPnet's ``espnet2.bin.asr_inference`` with ``encoder: shared_conformer`` known.

Every argument of ESPnet's binary is accepted and, by default, ESPnet's own
``inference`` does the work. One addition: ``--lexicon_file`` (with ESPnet's
``--word_lm_file``, which its own inference leaves unimplemented, as an ARPA
word n-gram) switches to lexicon-
constrained CTC beam search (:mod:`espnet_shared_conformer.lexicon`) over the
model's CTC posteriors, writing the same ``{n}best_recog/{text,token,
token_int,score}`` files. ESPnet's beam-search options (``--beam_size``,
``--lm_weight``, ...) then do not apply; the ``--lexicon_*``/``--word_*``
options do, and may sit in the same ``--config`` YAML.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from espnet_shared_conformer._registry import register

register()

import espnet2.bin.asr_inference as _espnet  # noqa: E402  (needs the registration above)

__all__ = ["get_parser", "lexicon_inference", "main"]

# Our options: popped before the rest go to ESPnet's ``inference``.
_LEXICON_OPTIONS = (
    "lexicon_file",
    "lexicon_beam_size",
    "lexicon_beam_threshold",
    "word_lm_weight",
    "word_score",
    "sil_score",
)


def get_parser() -> argparse.ArgumentParser:
    """ESPnet's parser plus the lexicon-decoding group."""
    from espnet_shared_conformer.lexicon import LexiconDecoderConfig

    defaults = LexiconDecoderConfig()
    parser = _espnet.get_parser()
    group = parser.add_argument_group(
        "Lexicon decoding (espnet_shared_conformer; needs character tokens)"
    )
    group.add_argument(
        "--lexicon_file",
        type=str,
        default=None,
        help="lexicon (WORD c h a r s <space>): decode the CTC posteriors "
        "constrained to its words, scored by --word_lm_file (an ARPA or KenLM "
        "binary word n-gram) if given",
    )
    group.add_argument(
        "--lexicon_beam_size",
        type=int,
        default=defaults.beam_size,
        help="hypotheses kept",
    )
    group.add_argument(
        "--lexicon_beam_threshold",
        type=float,
        default=defaults.beam_threshold,
        help="prune hypotheses this far (log) below the best",
    )
    group.add_argument(
        "--word_lm_weight",
        type=float,
        default=defaults.lm_weight,
        help="weight of the word LM",
    )
    group.add_argument(
        "--word_score",
        type=float,
        default=defaults.word_score,
        help="score added per word",
    )
    group.add_argument(
        "--sil_score",
        type=float,
        default=defaults.sil_score,
        help="score added per word separator (<space>) frame",
    )
    return parser


def lexicon_inference(
    output_dir: str,
    batch_size: int,
    dtype: str,
    ngpu: int,
    seed: int,
    nbest: int,
    num_workers: int,
    log_level: Any,
    data_path_and_name_and_type: List,
    key_file: Optional[str],
    asr_train_config: Optional[str],
    asr_model_file: Optional[str],
    allow_variable_data_keys: bool,
    lexicon_file: str,
    word_lm_file: Optional[str],
    lexicon_beam_size: int,
    lexicon_beam_threshold: float,
    word_lm_weight: float,
    word_score: float,
    sil_score: float,
    **espnet_options: Any,
) -> None:
    """Decode each utterance with :class:`CTCLexiconDecoder`; write ESPnet's files."""
    import torch
    from espnet2.fileio.datadir_writer import DatadirWriter
    from espnet2.tasks.asr import ASRTask
    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

    from espnet_shared_conformer.lexicon import CTCLexiconDecoder, LexiconDecoderConfig

    logging.basicConfig(
        level=log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    conflicting = [
        name
        for name in (
            "lm_train_config",
            "lm_file",
            "ngram_file",
            "word_lm_train_config",
            "model_tag",
        )
        if espnet_options.get(name) is not None
    ]
    if conflicting:
        raise ValueError(
            f"--lexicon_file decodes with its word LM only; drop --{conflicting[0]}"
        )
    if batch_size != 1:
        raise ValueError(
            "--lexicon_file decodes one utterance at a time: "
            f"--batch_size must be 1, not {batch_size}"
        )
    if ngpu > 1:
        raise ValueError(f"--ngpu {ngpu}: decoding uses at most one GPU")
    if asr_train_config is None or asr_model_file is None:
        raise ValueError("--lexicon_file needs --asr_train_config and --asr_model_file")
    device = "cuda" if ngpu >= 1 else "cpu"
    set_all_random_seed(seed)

    config = LexiconDecoderConfig(
        beam_size=lexicon_beam_size,
        beam_threshold=lexicon_beam_threshold,
        lm_weight=word_lm_weight,
        word_score=word_score,
        sil_score=sil_score,
        nbest=nbest,
    )
    model, train_args = ASRTask.build_model_from_file(
        asr_train_config, asr_model_file, device
    )
    model.to(dtype=getattr(torch, dtype)).eval()
    if getattr(model, "ctc", None) is None:
        raise ValueError(f"{asr_model_file}: the model has no CTC head to decode")
    decoder = CTCLexiconDecoder(
        model.token_list,
        Path(lexicon_file),
        word_lm_file and Path(word_lm_file),
        config,
    )
    logging.info(
        f"lexicon decoding: {decoder.num_words} words from {lexicon_file}, "
        f"word LM {word_lm_file}, {config} (ESPnet's beam-search options do not apply)"
    )

    loader = ASRTask.build_streaming_iterator(
        data_path_and_name_and_type,
        dtype=dtype,
        batch_size=1,
        key_file=key_file,
        num_workers=num_workers,
        preprocess_fn=ASRTask.build_preprocess_fn(train_args, False),
        collate_fn=ASRTask.build_collate_fn(train_args, False),
        allow_variable_data_keys=allow_variable_data_keys,
        inference=True,
    )
    with DatadirWriter(output_dir) as writer, torch.inference_mode():
        for keys, batch in loader:
            speech = batch["speech"].to(device)
            lengths = batch["speech_lengths"].to(device)
            encoded, encoded_lengths = model.encode(speech, lengths)
            if isinstance(encoded, tuple):  # intermediate CTC outputs ride along
                encoded = encoded[0]
            log_probs = model.ctc.log_softmax(encoded)[0, : int(encoded_lengths[0])]
            hyps = decoder(log_probs)
            # ESPnet's own line, which asr.sh counts to show progress.
            logging.info(f"best hypo: {' '.join(hyps[0][0])}")
            for n, (words, token_int, score) in enumerate(hyps, 1):
                best = writer[f"{n}best_recog"]
                best["token"][keys[0]] = " ".join(
                    model.token_list[i] for i in token_int
                )
                best["token_int"][keys[0]] = " ".join(map(str, token_int))
                best["score"][keys[0]] = str(score)
                best["text"][keys[0]] = " ".join(words)


def main(cmd: Optional[List[str]] = None) -> None:
    print(_espnet.get_commandline_args(), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    kwargs: Dict[str, Any] = vars(args)
    kwargs.pop("config", None)
    lexicon_kwargs = {name: kwargs.pop(name) for name in _LEXICON_OPTIONS}
    if lexicon_kwargs["lexicon_file"] is None:
        if kwargs["word_lm_file"] is not None:
            # ESPnet's own inference would ignore it silently.
            raise SystemExit(
                "asr_inference: error: --word_lm_file needs --lexicon_file"
            )
        _espnet.inference(**kwargs)
    else:
        try:
            lexicon_inference(**kwargs, **lexicon_kwargs)
        except (ValueError, FileNotFoundError) as e:
            raise SystemExit(f"asr_inference: error: {e}") from e


if __name__ == "__main__":
    main()
