"""ESPnet's ``espnet2.bin.asr_inference`` with ``encoder: shared_conformer`` known.

Every argument of ESPnet's binary is accepted and, by default, ESPnet's own
``inference`` does the work. One addition: ``--lexicon_file`` (with ESPnet's
``--word_lm_file``, which its own inference leaves unimplemented, as an ARPA
word n-gram) switches to lexicon-constrained CTC beam search
(:mod:`espnet_shared_conformer.lexicon`) over the model's CTC posteriors,
writing the same ``{n}best_recog/{text,token,token_int,score}`` files.

``--streaming true`` (ESPnet's option, which its own inference applies
to its blockwise encoders only) decodes each utterance as a stream instead,
with :class:`espnet_shared_conformer.recognizer.StreamingRecognizer`: the
chunked encoder fed the utterance chunk by chunk (``--chunk_size`` and
``--num_left_chunks``, default: the model's own), the CTC posteriors
searched incrementally (with ``--lexicon_file``, the lexicon search; else
the CTC prefix beam search, ``--beam_size`` wide), no endpointing (one
utterance, one hypothesis), and the same files written. A model that
cannot stream (no ``causal_conv``, no chunk size, ...) is refused with the
reason; :func:`~espnet_shared_conformer.inference.check_streaming_options`
holds the rules for the other options. In the recipe::

    ./run.sh --stage 12 --inference_args "--streaming true --chunk_size 16 \
        --num_left_chunks 4" --inference_tag decode_streaming

Nothing is dropped silently (:mod:`espnet_shared_conformer.inference` holds
the rules):

- with ``--lexicon_file``, ``--quantize_asr_model`` / ``--quantize_modules``
  / ``--quantize_dtype``, ``--dtype`` and ``--nbest`` apply; ESPnet's
  beam-search options (``--beam_size``, ``--ctc_weight``, ``--lm_weight``,
  ...) are an error on the command line and, when the ``--config`` YAML sets
  them for decoding without the lexicon, logged as not applied; options the
  lexicon search has no counterpart for (a neural or token n-gram LM,
  ``--quantize_lm``, ``--streaming``, ``--token_type``, ...) are an error;
- without it, a model without an attention decoder decodes with
  ``ctc_weight`` 1.0 unless ``ctc_weight`` is set, and a set weight below 1.0
  is an error (ESPnet's default 0.5 would decode garbage);
  ``--quantize_lm`` without an LM and ``--word_lm_file`` are errors;
- either way, ``--quantize_asr_model`` / ``--quantize_lm`` with ``--ngpu``
  1 are refused before a model is loaded: torch's dynamic quantization runs
  on the CPU only.

The decoding is recorded in ``<output_dir>/decoding.yaml`` (model files and
the options that were set), from which
:func:`espnet_shared_conformer.inference.load_model` loads an experiment
directory with the decoding it was scored with.
"""

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import yaml

from espnet_shared_conformer._cli import LOG_FORMAT
from espnet_shared_conformer.inference import STREAMING_OPTIONS, register_encoder
from espnet_shared_conformer.lexicon import LexiconDecoderConfig

try:
    register_encoder()
except RuntimeError as _e:
    # Nothing of this binary works without it: say why, not ESPnet's list
    # of the encoders it knows.
    sys.exit(f"asr_inference: error: {_e}")

import espnet2.bin.asr_inference as _espnet  # noqa: E402  (needs the registration above)

__all__ = [
    "get_parser",
    "lexicon_inference",
    "main",
    "streaming_inference",
]


def get_parser() -> argparse.ArgumentParser:
    """ESPnet's parser plus the lexicon-decoding group."""
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
    for option in fields(LexiconDecoderConfig):
        if option.metadata:
            group.add_argument(
                f"--{option.metadata['option']}",
                type=option.type,
                default=option.default,
                help=option.metadata["help"],
            )
    streaming = parser.add_argument_group(
        "Streaming decoding (espnet_shared_conformer; --streaming true, a model "
        "trained with causal_conv and chunks)"
    )
    streaming.add_argument(
        "--chunk_size",
        type=int,
        default=None,
        help="output frames per chunk (default: the model's chunk_size)",
    )
    streaming.add_argument(
        "--num_left_chunks",
        type=int,
        default=None,
        help="chunks each chunk attends to on its left, -1: all (default: the "
        "model's num_left_chunks)",
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
    search: LexiconDecoderConfig,
    quantize_asr_model: bool = False,
    quantize_modules: Sequence[str] = ("Linear",),
    quantize_dtype: str = "qint8",
    **espnet_options: Any,
) -> None:
    """Decode each utterance with :class:`CTCLexiconDecoder`; write ESPnet's files.

    ``search`` holds the search options (``--lexicon_beam_size``, ...,
    ``--nbest``); ``espnet_options`` are ESPnet's other options, which the caller has
    checked with :func:`~espnet_shared_conformer.inference.check_lexicon_options`:
    none of them applies here. An utterance too short for the encoder's
    subsampling gets ESPnet's placeholder hypothesis and a warning naming
    it, and decoding goes on, as in ESPnet's own inference.
    """
    import torch
    from espnet2.fileio.datadir_writer import DatadirWriter

    from espnet_shared_conformer._compat import TooShortUttError
    from espnet_shared_conformer.lexicon import SEPARATOR

    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    model, _, decoder, loader, device = _set_up(
        "--lexicon_file", **_setup_arguments(locals())
    )
    if getattr(model, "ctc", None) is None:
        raise ValueError(f"{asr_model_file}: the model has no CTC head to decode")
    logging.info(
        f"lexicon decoding: {decoder.num_words} words from {lexicon_file}, "
        f"word LM {word_lm_file}, {search}"
    )
    # What ESPnet's inference writes for an utterance too short for the
    # encoder's subsampling, for each of the n best: text " ", the one token
    # <space>, score 0.0 (ESPnet's own writes token id 2, <space>'s place in
    # its character token lists; this is <space>'s id in the model's).
    too_short = [(" ", [SEPARATOR], [model.token_list.index(SEPARATOR)], 0.0)]
    with DatadirWriter(output_dir) as writer, torch.inference_mode():
        for keys, batch in loader:
            speech = batch["speech"].to(device)
            lengths = batch["speech_lengths"].to(device)
            try:
                encoded, encoded_lengths = model.encode(speech, lengths)
            except TooShortUttError as e:
                # As ESPnet's inference: a placeholder, and the job goes on.
                logging.warning(f"Utterance {keys} {e}")
                _write_hypotheses(writer, keys[0], too_short * nbest)
                continue
            if isinstance(encoded, tuple):  # intermediate CTC outputs ride along
                encoded = encoded[0]
            log_probs = model.ctc.log_softmax(encoded)[0, : int(encoded_lengths[0])]
            hyps = decoder(log_probs)
            # ESPnet's own line, which asr.sh counts to show progress.
            logging.info(f"best hypo: {' '.join(hyps[0][0])}")
            _write_hypotheses(
                writer,
                keys[0],
                [
                    (" ".join(words), [model.token_list[i] for i in ids], ids, score)
                    for words, ids, score in hyps
                ],
            )


def streaming_inference(
    output_dir: str,
    batch_size: int,
    dtype: str,
    ngpu: int,
    seed: int,
    num_workers: int,
    log_level: Any,
    data_path_and_name_and_type: List,
    key_file: Optional[str],
    asr_train_config: Optional[str],
    asr_model_file: Optional[str],
    allow_variable_data_keys: bool,
    chunk_size: Optional[int],
    num_left_chunks: Optional[int],
    beam_size: int,
    lexicon_file: Optional[str],
    word_lm_file: Optional[str],
    search: LexiconDecoderConfig,
    quantize_asr_model: bool = False,
    quantize_modules: Sequence[str] = ("Linear",),
    quantize_dtype: str = "qint8",
    **espnet_options: Any,
) -> None:
    """Decode each utterance as a stream; write ESPnet's files (1-best).

    The utterance goes to a :class:`StreamingRecognizer` (endpointing off)
    whole: its transcript does not depend on how audio is cut into blocks.
    ``search`` holds the lexicon search's options (with ``lexicon_file``);
    ``espnet_options`` are ESPnet's other options, checked by the caller with
    :func:`~espnet_shared_conformer.inference.check_streaming_options`. An
    utterance too short for one output frame gets an empty hypothesis.
    """
    import torch
    from espnet2.fileio.datadir_writer import DatadirWriter

    from espnet_shared_conformer.inference import Transcriber
    from espnet_shared_conformer.recognizer import Endpointing, StreamingRecognizer

    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    if word_lm_file is not None and lexicon_file is None:
        raise ValueError("--word_lm_file needs --lexicon_file")
    model, train_args, decoder, loader, _ = _set_up(
        "--streaming", **_setup_arguments(locals())
    )
    frames_in = getattr(model, "frontend", None) is None
    recognizer = StreamingRecognizer.from_model(
        Transcriber(model, train_args, {}, lexicon_decoder=decoder),
        chunk_size=chunk_size,
        num_left_chunks=num_left_chunks,
        endpointing=Endpointing.off(),
        beam_size=beam_size,
        frames_in=frames_in,
    )
    logging.info(
        f"streaming: chunks of {recognizer.encoder.chunk_size} frames, "
        f"{recognizer.encoder.num_left_chunks} left chunks, "
        f"{type(recognizer.search).__name__}"
    )
    with DatadirWriter(output_dir) as writer, torch.inference_mode():
        for keys, batch in loader:
            speech = batch["speech"][0, : int(batch["speech_lengths"][0])]
            recognizer.feed(speech.numpy())
            best = recognizer.finish()
            # ESPnet's own line, which asr.sh counts to show progress.
            logging.info(f"best hypo: {best.text}")
            tokens = [model.token_list[i] for i in best.token_ids]
            _write_hypotheses(
                writer,
                keys[0],
                [(best.text, tokens, list(best.token_ids), best.score)],
            )


#: What :func:`_set_up` takes of a decoding function's arguments.
_SETUP_ARGUMENTS = (
    "batch_size", "dtype", "ngpu", "seed", "num_workers",
    "data_path_and_name_and_type", "key_file", "asr_train_config",
    "asr_model_file", "allow_variable_data_keys", "lexicon_file", "word_lm_file",
    "search", "quantize_asr_model", "quantize_modules", "quantize_dtype",
)  # fmt: skip


def _setup_arguments(arguments: Mapping[str, Any]) -> Dict[str, Any]:
    """What :func:`_set_up` takes of a decoding function's ``locals()``."""
    return {name: arguments[name] for name in _SETUP_ARGUMENTS}


def _set_up(
    mode: str,
    batch_size: int,
    dtype: str,
    ngpu: int,
    seed: int,
    num_workers: int,
    data_path_and_name_and_type: List,
    key_file: Optional[str],
    asr_train_config: Optional[str],
    asr_model_file: Optional[str],
    allow_variable_data_keys: bool,
    lexicon_file: Optional[str],
    word_lm_file: Optional[str],
    search: LexiconDecoderConfig,
    quantize_asr_model: bool,
    quantize_modules: Sequence[str],
    quantize_dtype: str,
) -> Tuple[Any, Any, Any, Any, str]:
    """What both of this command's own decodings (``mode``: the option that
    chose it) start with: the checks of one utterance at a time on at most
    one device, the seed, the model and its training arguments, the lexicon
    decoder when there is a lexicon, and ESPnet's data loader, one utterance
    per batch. Returns (model, train_args, decoder, loader, device)."""
    from espnet2.tasks.asr import ASRTask
    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

    from espnet_shared_conformer.inference import load_asr_model
    from espnet_shared_conformer.lexicon import CTCLexiconDecoder

    if batch_size != 1:
        raise ValueError(
            f"{mode} decodes one utterance at a time: "
            f"--batch_size must be 1, not {batch_size}"
        )
    if ngpu > 1:
        raise ValueError(f"--ngpu {ngpu}: decoding uses at most one GPU")
    if asr_train_config is None or asr_model_file is None:
        raise ValueError(f"{mode} needs --asr_train_config and --asr_model_file")
    device = "cuda" if ngpu >= 1 else "cpu"
    set_all_random_seed(seed)
    model, train_args = load_asr_model(
        asr_train_config,
        asr_model_file,
        device,
        dtype,
        quantize_asr_model,
        quantize_modules,
        quantize_dtype,
    )
    decoder = None
    if lexicon_file is not None:
        decoder = CTCLexiconDecoder(
            model.token_list,
            Path(lexicon_file),
            word_lm_file and Path(word_lm_file),
            search,
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
    return model, train_args, decoder, loader, device


def _write_hypotheses(
    writer: Any, key: str, hyps: Sequence[Tuple[str, List[str], List[int], float]]
) -> None:
    """ESPnet's ``{n}best_recog/{text,token,token_int,score}`` lines of one
    utterance; ``hyps``: (text, tokens, token ids, score), best first."""
    for n, (text, tokens, token_int, score) in enumerate(hyps, 1):
        best = writer[f"{n}best_recog"]
        best["token"][key] = " ".join(tokens)
        best["token_int"][key] = " ".join(map(str, token_int))
        best["score"][key] = str(score)
        best["text"][key] = text


def _given_on_command_line(cmd: Optional[List[str]]) -> Set[str]:
    """The options ``cmd`` sets itself, as opposed to the ``--config`` YAML."""
    argv = list(sys.argv[1:] if cmd is None else cmd)
    stripped: List[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--config":
            skip = True
        elif not arg.startswith("--config="):
            stripped.append(arg)
    parser = get_parser()
    # With every default None, what is not None was given. (SUPPRESS would be
    # exact, but argparse's append actions cannot start from it.)
    names = {a.dest for a in parser._actions if a.dest not in ("help", "config")}
    parser.set_defaults(**{name: None for name in names})
    return {k for k, v in vars(parser.parse_args(stripped)).items() if v is not None}


def _set_in_config(path: Optional[str]) -> Set[str]:
    """The options the ``--config`` YAML sets (ESPnet's parser has read it)."""
    if path is None:
        return set()
    with open(path, encoding="utf-8") as f:
        return set(yaml.safe_load(f) or {})


def _check_device_options(kwargs: Dict[str, Any]) -> None:
    """Refuse, before a model is loaded, what cannot run on the chosen device."""
    if kwargs["ngpu"] >= 1:
        for name in ("quantize_asr_model", "quantize_lm"):
            if kwargs[name]:
                raise ValueError(
                    f"--{name} true with --ngpu {kwargs['ngpu']}: torch's dynamic "
                    "quantization runs on the CPU only (its int8 kernels have no "
                    "CUDA version); decode with --ngpu 0, or without quantization"
                )


def _check_espnet_options(
    kwargs: Dict[str, Any], set_names: Set[str]
) -> Dict[str, Any]:
    """What ESPnet's own inference would drop or get wrong, refused or fitted."""
    from espnet_shared_conformer.inference import builds_decoder, check_decoder_options

    if kwargs["word_lm_file"] is not None:
        # ESPnet's own inference would ignore it silently.
        raise ValueError("--word_lm_file needs --lexicon_file")
    if kwargs["quantize_lm"] and kwargs["lm_train_config"] is None:
        raise ValueError("--quantize_lm true: there is no LM (--lm_train_config)")
    if kwargs["asr_train_config"] is None:  # --model_tag: ESPnet finds the files
        return kwargs
    with open(kwargs["asr_train_config"], encoding="utf-8") as f:
        train_config = yaml.safe_load(f) or {}
    return check_decoder_options(builds_decoder(train_config), kwargs, set_names)


def _streaming(
    kwargs: Dict[str, Any],
    lexicon_kwargs: Dict[str, Any],
    streaming_kwargs: Dict[str, Any],
    explicit: Set[str],
    set_names: Set[str],
    defaults: Dict[str, Any],
) -> None:
    """``--streaming true``: the options checked, :func:`streaming_inference`."""
    from espnet_shared_conformer.inference import check_streaming_options

    lexicon = lexicon_kwargs["lexicon_file"] is not None
    unused = check_streaming_options(kwargs, explicit, set_names, defaults, lexicon)
    if unused:
        logging.info(
            f"streaming: {', '.join(unused)} from the --config YAML do not apply "
            "(they tune ESPnet's beam search)"
        )
    search = LexiconDecoderConfig.from_options(lexicon_kwargs, 1)
    options = {k: v for k, v in kwargs.items() if k != "nbest"}
    streaming_inference(
        **options,
        **streaming_kwargs,
        lexicon_file=lexicon_kwargs["lexicon_file"],
        search=search,
    )


def main(cmd: Optional[List[str]] = None) -> None:
    from espnet_shared_conformer.inference import (
        check_lexicon_options,
        write_decoding_record,
    )

    print(_espnet.get_commandline_args(), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format=LOG_FORMAT,
    )
    fresh = get_parser()  # parse_args set the --config YAML's values as defaults
    defaults = {name: fresh.get_default(name) for name in vars(args)}
    explicit = _given_on_command_line(cmd)
    set_names = explicit | _set_in_config(args.config)
    kwargs: Dict[str, Any] = dict(vars(args))
    kwargs.pop("config", None)
    # Ours, popped before the rest go to ESPnet's inference.
    lexicon_names = ("lexicon_file", *LexiconDecoderConfig.option_fields())
    lexicon_kwargs = {name: kwargs.pop(name) for name in lexicon_names}
    streaming_kwargs = {name: kwargs.pop(name) for name in STREAMING_OPTIONS}
    try:
        _check_device_options(kwargs)
        given = [n for n, v in streaming_kwargs.items() if v is not None]
        if given and not kwargs["streaming"]:
            raise ValueError(f"--{given[0]} needs --streaming true")
        if kwargs["streaming"]:
            _streaming(
                kwargs, lexicon_kwargs, streaming_kwargs, explicit, set_names, defaults
            )
        elif lexicon_kwargs["lexicon_file"] is None:
            kwargs = _check_espnet_options(kwargs, set_names)
            _espnet.inference(**kwargs)
        else:
            unused = check_lexicon_options(kwargs, explicit, defaults)
            if unused:
                logging.info(
                    f"lexicon decoding: {', '.join(unused)} from {args.config} do "
                    "not apply (they tune ESPnet's beam search, without --lexicon_file)"
                )
            search = LexiconDecoderConfig.from_options(lexicon_kwargs, kwargs["nbest"])
            lexicon_inference(
                **kwargs, lexicon_file=lexicon_kwargs["lexicon_file"], search=search
            )
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"asr_inference: error: {e}") from e
    # Written after a complete decoding only: how these results were made.
    options = {**kwargs, **lexicon_kwargs, **streaming_kwargs}
    recorded = set_names | {"asr_train_config", "asr_model_file"}
    recorded |= {name for name, v in options.items() if v != defaults.get(name)}
    write_decoding_record(
        args.output_dir, {name: options[name] for name in recorded if name in options}
    )


if __name__ == "__main__":
    main()
