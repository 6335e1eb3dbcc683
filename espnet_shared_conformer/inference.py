"""Load a trained model with its own decoding configuration and transcribe.

A model is more than ``config.yaml`` + ``*.pth``: it was scored with a
decoding configuration (the recipe's ``conf/decode_asr.yaml``) and, with
``--use_word_lm true``, a lexicon and a word n-gram LM. ESPnet's
``Speech2Text(asr_train_config=..., asr_model_file=...)`` knows none of it,
and its defaults do not fit every model: its ``ctc_weight`` of 0.5 gives half
the score to an attention decoder that a CTC-only model does not have, and the
output is garbage. :func:`load_model` applies what the model was evaluated
with::

    from espnet_shared_conformer.inference import load_model

    transcribe = load_model("exp/asr_train_asr_raw_en_char_sp/packed.zip")
    text = transcribe(samples)  # mono float32 samples (T,) at transcribe.fs

``source`` is a zip packed by the recipe's stage 14 or an experiment
directory (``exp/asr_*``) decoded by its stage 12. Decoding options that
cannot work with the model raise ``ValueError`` (a decoder weight without a
decoder, an ESPnet beam-search option given to the lexicon search, ...)
instead of being dropped.

The same rules serve ``python -m espnet_shared_conformer.bin.asr_inference``,
which also writes the record (:data:`RECORD_NAME`) that lets an experiment
directory be loaded. Input too short for the encoder raises ESPnet's
``TooShortUttError``, importable from here.
"""

import hashlib
import inspect
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np
import yaml

__all__ = [
    "ESPNET_BEST_MODEL_CRITERION",
    "LEXICON_OPTIONS",
    "RECORD_NAME",
    "STREAMING_OPTIONS",
    "ModelFiles",
    "Transcriber",
    "best_model_name",
    "builds_decoder",
    "check_decoder_options",
    "check_lexicon_options",
    "check_streaming_options",
    "count_quantized",
    "load_asr_model",
    "load_model",
    "quantize_model",
    "register_encoder",
    "resolve_model",
    "write_decoding_record",
]

logger = logging.getLogger(__name__)

#: The decoding record ``bin.asr_inference`` writes into its ``--output_dir``:
#: the model files and every decoding option that was set, with absolute
#: paths. An experiment directory is loaded from it.
RECORD_NAME = "decoding.yaml"

#: Options of streaming decoding (``bin.asr_inference``'s additions, with
#: ESPnet's ``--streaming true``).
STREAMING_OPTIONS = ("chunk_size", "num_left_chunks")

#: Options of the lexicon + word-LM search (``bin.asr_inference``'s additions).
LEXICON_OPTIONS = (
    "lexicon_file",
    "word_lm_file",
    "lexicon_beam_size",
    "lexicon_beam_threshold",
    "word_lm_weight",
    "word_score",
    "sil_score",
)
# ESPnet's options the lexicon path applies (bin.asr_inference's
# lexicon_inference and load_model alike).
_APPLIED_WITH_LEXICON = (
    "asr_train_config",
    "asr_model_file",
    "word_lm_file",
    "dtype",
    "nbest",
    "quantize_asr_model",
    "quantize_modules",
    "quantize_dtype",
)
# Tuning of ESPnet's beam search. The lexicon search has its own options; a
# decoding YAML shared by both searches (the recipe's decode_asr.yaml) may
# hold these, but given explicitly with the lexicon they are a mistake.
_SEARCH_OPTIONS = (
    "beam_size",
    "ctc_weight",
    "ctc_window_margin",
    "lm_weight",
    "ngram_weight",
    "penalty",
    "maxlenratio",
    "minlenratio",
    "normalize_length",
    "threshold_probability",
    "max_seq_len",
    "max_mask_parallel",
)
# What ESPnet decodes with and the lexicon search has no counterpart for:
# refused with the lexicon whenever not at ESPnet's default.
_NOT_WITH_LEXICON = (
    "lm_train_config",
    "lm_file",
    "ngram_file",
    "ngram_scorer",
    "word_lm_train_config",
    "model_tag",
    "quantize_lm",
    "token_type",
    "bpemodel",
    "transducer_conf",
    "streaming",
    "enh_s2t_task",
    "multi_asr",
    "hugging_face_decoder",
    "hugging_face_decoder_conf",
    "time_sync",
    "partial_ar",
    "lid_prompt",
    "lang_prompt_token",
    "nlp_prompt_token",
    "prompt_token_file",
)
# Language models of ESPnet's search (model_tag: a model zoo download).
_OTHER_LMS = (
    "lm_train_config",
    "lm_file",
    "ngram_file",
    "word_lm_train_config",
    "model_tag",
)
# Options that need an attention decoder (besides ctc_weight < 1).
_DECODER_ONLY = ("partial_ar", "hugging_face_decoder")
# Per-run options of ESPnet's inference binary: where the data and output
# are, on which device. A decoding YAML may carry them; a loaded model takes
# ``device`` instead and is given its input by the caller.
_PER_RUN = (
    "config",
    "output_dir",
    "data_path_and_name_and_type",
    "key_file",
    "allow_variable_data_keys",
    "ngpu",
    "seed",
    "num_workers",
    "log_level",
    "batch_size",
)
# Module kinds torch's dynamic quantization can replace.
_QUANTIZABLE = ("Linear", "LSTM", "GRU", "LSTMCell", "RNNCell", "GRUCell")
_QUANTIZE_DTYPES = ("qint8", "float16")


def __getattr__(name: str) -> Any:
    # ESPnet's exception for input too short to subsample: loading ESPnet
    # only when asked for keeps importing this module cheap.
    if name == "TooShortUttError":
        from espnet_shared_conformer._compat import TooShortUttError

        return TooShortUttError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------- checks


def check_lexicon_options(
    options: Mapping[str, Any],
    explicit: Set[str],
    defaults: Mapping[str, Any],
) -> List[str]:
    """Refuse what the lexicon search cannot apply; name what it leaves unused.

    ``options`` holds the ESPnet decoding options in effect, ``explicit`` the
    names the user set for this run (command line, keyword arguments), as
    opposed to a decoding YAML; ``defaults`` ESPnet's defaults. Raises
    ``ValueError`` for an explicit beam-search option, or for any option it
    does not apply (:data:`_NOT_WITH_LEXICON`, and any that a newer ESPnet
    adds) away from its default. Returns the beam-search
    options a YAML set, which the lexicon search does not use (the caller
    logs them: they serve decoding without the lexicon).
    """
    handled = (*_APPLIED_WITH_LEXICON, *_SEARCH_OPTIONS, *_PER_RUN, *LEXICON_OPTIONS)
    # Everything else, _NOT_WITH_LEXICON and any option a newer ESPnet adds.
    for name in options:
        if name not in handled and options[name] != defaults.get(name):
            if name in _OTHER_LMS:
                raise ValueError(
                    f"--lexicon_file decodes with its word LM only; drop --{name}"
                )
            raise ValueError(
                f"{name}={options[name]!r}: the lexicon search (lexicon_file) "
                f"cannot apply it; drop it, or decode without the lexicon"
            )
    given = [name for name in _SEARCH_OPTIONS if name in explicit]
    if given:
        raise ValueError(
            f"{given[0]}={options.get(given[0])!r} tunes ESPnet's beam search, which "
            "the lexicon search (lexicon_file) does not run; its options are "
            "lexicon_beam_size, lexicon_beam_threshold, word_lm_weight, "
            "word_score, sil_score"
        )
    return [
        name
        for name in _SEARCH_OPTIONS
        if name in options and options[name] != defaults.get(name)
    ]


def check_streaming_options(
    options: Mapping[str, Any],
    explicit: Set[str],
    set_names: Set[str],
    defaults: Mapping[str, Any],
    lexicon: bool,
) -> List[str]:
    """Refuse what streaming decoding cannot apply; name what it leaves unused.

    Streaming (``--streaming true``) searches the CTC posteriors of the
    chunked encoder with :mod:`~espnet_shared_conformer.recognizer`: with
    ``lexicon``, the lexicon search (its own options); else the CTC prefix
    beam search, whose width is ``beam_size``, with ``ctc_weight`` 1.0 (the
    CTC head alone; an attention decoder rescores whole utterances, which a
    stream does not wait for). ``options``, ``explicit`` and ``defaults`` are
    as for :func:`check_lexicon_options`; ``set_names`` are the names set on
    the command line or in the decoding YAML. Raises ``ValueError`` for a
    beam-search option given explicitly, ``ctc_weight`` set below 1.0,
    ``nbest`` above 1, and any other option away from its default that the
    streaming search does not apply (an LM, ``token_type``, ...). Returns the
    beam-search options the YAML set, which the caller logs as not applied.
    """
    applied = {*_APPLIED_WITH_LEXICON, *_PER_RUN, *LEXICON_OPTIONS, "streaming"}
    applied |= set(STREAMING_OPTIONS)
    if not lexicon:
        applied |= {"beam_size", "ctc_weight"}
    tuning = [name for name in _SEARCH_OPTIONS if name not in applied]
    for name in options:
        if name in applied or name in tuning or options[name] == defaults.get(name):
            continue
        if name in _OTHER_LMS:
            raise ValueError(
                f"--streaming decodes without a neural or token LM; drop --{name}"
            )
        raise ValueError(
            f"{name}={options[name]!r}: streaming decoding cannot apply it; drop "
            "it, or decode without --streaming"
        )
    search = (
        "the lexicon search (lexicon_beam_size, ..., sil_score)"
        if lexicon
        else "the CTC prefix beam search (beam_size)"
    )
    given = [name for name in tuning if name in explicit]
    if given:
        raise ValueError(
            f"{given[0]}={options.get(given[0])!r} tunes ESPnet's beam search, "
            f"which --streaming does not run; it runs {search}"
        )
    if int(options.get("nbest", 1)) != 1:
        raise ValueError(f"nbest={options['nbest']}: --streaming gives the 1-best only")
    weight = float(options.get("ctc_weight", 1.0))
    if not lexicon and "ctc_weight" in set_names and weight != 1.0:
        raise ValueError(
            f"ctc_weight={weight}: --streaming searches the CTC posteriors alone "
            "(no attention decoder); use ctc_weight 1.0"
        )
    return [
        name
        for name in tuning
        if name in options and options[name] != defaults.get(name)
    ]


def check_decoder_options(
    has_decoder: bool, options: Mapping[str, Any], set_names: Set[str]
) -> Dict[str, Any]:
    """The ESPnet options with ``ctc_weight`` fitted to a model without a decoder.

    ESPnet's default ``ctc_weight`` 0.5 gives the other half of every score
    to the attention decoder; a model without one (``decoder: none``) then
    decodes garbage. Unset (not in ``set_names``), ``ctc_weight`` becomes 1.0
    for such a model; set below 1.0, or with an option that needs a decoder,
    it raises ``ValueError``.
    """
    options = dict(options)
    if has_decoder:
        return options
    if "ctc_weight" in set_names:
        weight = float(options["ctc_weight"])
        if weight != 1.0:
            raise ValueError(
                f"ctc_weight={weight} gives the attention decoder a weight of "
                f"{1.0 - weight:g}, but the model has no decoder (decoder: none): "
                "use ctc_weight 1.0"
            )
    else:
        logger.info("the model has no attention decoder: ctc_weight 1.0")
    options["ctc_weight"] = 1.0
    for name in _DECODER_ONLY:
        if options.get(name):
            raise ValueError(
                f"{name}={options[name]!r} needs an attention decoder, "
                "and the model has none (decoder: none)"
            )
    return options


def builds_decoder(train_config: Mapping[str, Any]) -> bool:
    """Whether a training config builds an attention (or transducer) decoder."""
    decoder = train_config.get("decoder")
    return decoder is not None and str(decoder).lower() not in ("none", "null", "nil")


# ---------------------------------------------------------------- the model


def register_encoder() -> None:
    """:func:`~espnet_shared_conformer.register`, a failure explained.

    Without the registration ESPnet cannot build the model, and its own
    error would list the encoders it knows and say nothing of why this one
    is missing. Raises ``RuntimeError`` naming the cause (the encoder's
    module failing to import, the name taken by another class, ...) and
    the ways to register it (``UNREGISTERED_HINT``).
    """
    from espnet_shared_conformer._registry import UNREGISTERED_HINT, register

    try:
        register()
    except Exception as e:
        raise RuntimeError(
            f"could not register the encoder: {type(e).__name__}: {e}\n"
            f"{UNREGISTERED_HINT}"
        ) from e


def quantize_model(model: Any, modules: Sequence[str], dtype: str) -> Any:
    """Dynamic quantization of ``modules`` (``torch.nn`` class names), as ESPnet's
    ``--quantize_asr_model`` does; ``ValueError`` for names it cannot quantize.

    Returns the quantized model (its layers replaced; shared modules stay
    shared, since an ``Alias`` looks its owner up at each call).
    """
    import torch

    unknown = [m for m in modules if m not in _QUANTIZABLE]
    if unknown or not modules:
        raise ValueError(
            f"quantize_modules={list(modules)!r}: dynamic quantization takes "
            f"a non-empty list of {', '.join(_QUANTIZABLE)}"
        )
    if dtype not in _QUANTIZE_DTYPES:
        raise ValueError(
            f"quantize_dtype={dtype!r} must be one of {', '.join(_QUANTIZE_DTYPES)}"
        )
    spec = {getattr(torch.nn, m) for m in modules}
    return torch.ao.quantization.quantize_dynamic(
        model, qconfig_spec=spec, dtype=getattr(torch, dtype)
    )


def count_quantized(model: Any) -> int:
    """Dynamically quantized modules in ``model``."""
    import torch.ao.nn.quantized.dynamic as qdynamic

    kinds = tuple(getattr(qdynamic, m) for m in _QUANTIZABLE if hasattr(qdynamic, m))
    return sum(isinstance(m, kinds) for m in model.modules())


def load_asr_model(
    asr_train_config: Union[str, Path],
    asr_model_file: Union[str, Path],
    device: str = "cpu",
    dtype: str = "float32",
    quantize_asr_model: bool = False,
    quantize_modules: Sequence[str] = ("Linear",),
    quantize_dtype: str = "qint8",
) -> Tuple[Any, Any]:
    """Build an ESPnet ASR model for decoding: ``(model, train_args)``.

    The recipe's models are built without importing ESPnet's ASR task
    (:mod:`espnet_shared_conformer._asr_model`: seconds less to start);
    others by ``ASRTask.build_model_from_file``, with the encoder registered
    first. With ``quantize_asr_model`` the model's ``quantize_modules`` are
    dynamically quantized to ``quantize_dtype`` (CPU only: PyTorch's dynamic
    int8 kernels have no CUDA version).
    """
    import torch

    from espnet_shared_conformer._asr_model import build_from_files

    if quantize_asr_model and device != "cpu":
        raise ValueError(
            f"quantize_asr_model: dynamic quantization runs on the CPU, not {device}"
        )
    built = build_from_files(asr_train_config, asr_model_file, device)
    if built is None:
        from espnet2.tasks.asr import ASRTask

        register_encoder()
        built = ASRTask.build_model_from_file(
            str(asr_train_config), str(asr_model_file), device
        )
    model, train_args = built
    model.to(dtype=getattr(torch, dtype)).eval()
    if quantize_asr_model:
        model = quantize_model(model, quantize_modules, quantize_dtype)
        logger.info(
            f"dynamic {quantize_dtype}: {count_quantized(model)} "
            f"{'/'.join(quantize_modules)} layers quantized"
        )
    return model, train_args


# ---------------------------------------------------------------- model files


@dataclass(frozen=True)
class ModelFiles:
    """What a model consists of: its files and its decoding options."""

    asr_train_config: Path
    asr_model_file: Path
    #: Decoding options (ESPnet's and the lexicon search's, lexicon_file and
    #: word_lm_file included) as the model's decoding YAML or record set them.
    decoding: Dict[str, Any] = field(default_factory=dict)
    #: Where the decoding options came from (a file), or None.
    decoding_source: Optional[Path] = None


def _read_yaml(path: Path) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of options, not {type(data)}")
    return data


def _default_unpack_dir(zip_path: Path) -> Path:
    """A per-user cache directory for this zip (its path, size and time)."""
    zip_path = zip_path.resolve()
    stat = zip_path.stat()
    key = hashlib.sha1(
        f"{zip_path}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "espnet_shared_conformer" / "unpacked" / key[:16]


def _one(names: List[str], what: str, where: Path) -> Optional[str]:
    if len(names) > 1:
        raise ValueError(f"{where} holds {len(names)} {what}: {', '.join(names)}")
    return names[0] if names else None


def _member_name(path: str) -> str:
    """How an archive names a packed path: normalized, without a leading '/'.

    ``pack`` stores paths relative to its working directory, or absolute ones
    for files outside it; zip and tar drop the leading '/' of the latter.
    """
    return os.path.normpath(path).lstrip("/")


@dataclass(frozen=True)
class _Archive:
    """What an archive of ``espnet2.bin.pack`` holds, read from the archive itself."""

    #: Its ``meta.yaml``: ``files`` and ``yaml_files`` (key -> packed path).
    meta: Dict[str, Any]
    #: Member names of its regular files, meta.yaml included.
    members: Tuple[str, ...]
    #: Name of its meta.yaml member.
    meta_name: str
    #: A digest of every member's name, size and checksum (tar: time).
    identity: str

    def packed(self) -> Dict[str, str]:
        """Key (``asr_train_config``, ``asr_model_file``, ...) -> member name."""
        names = set(self.members)
        packed = {}
        for key, path in {**self.meta["yaml_files"], **self.meta["files"]}.items():
            name = _member_name(str(path))
            if name not in names:
                raise ValueError(f"meta.yaml names {key}: {path}, which is not packed")
            packed[key] = name
        return packed

    def options(self) -> List[str]:
        """Members packed besides meta.yaml and the model's files (``--option``)."""
        model = {self.meta_name, *self.packed().values()}
        return [name for name in self.members if name not in model]


def _scan_archive(path: Path) -> Tuple[List[str], str, Optional[str], Any]:
    """``path``'s regular files, a digest of their names, sizes and checksums
    (tar: times), its meta.yaml member (None if none) and that file's content."""
    import zipfile

    from espnet2.main_funcs.pack_funcs import Archiver

    members: List[str] = []
    digest = hashlib.sha1()
    meta_name: Optional[str] = None
    meta: Any = None
    with Archiver(path) as archive:
        for info in archive:
            name = archive.get_name_from_info(info)
            if isinstance(info, zipfile.ZipInfo):
                if info.is_dir():
                    continue
                digest.update(f"{name}\0{info.file_size}\0{info.CRC}\n".encode())
            else:
                if not info.isfile():
                    continue
                digest.update(f"{name}\0{info.size}\0{info.mtime}\n".encode())
            members.append(name)
            # ESPnet's unpack takes the first member so named.
            if meta_name is None and Path(name).name == "meta.yaml":
                meta_name = name
                meta = yaml.safe_load(archive.extractfile(info))
    return members, digest.hexdigest(), meta_name, meta


def _read_archive(path: Path) -> _Archive:
    """The member list and meta.yaml of an archive of ``espnet2.bin.pack``.

    ``ValueError`` for a file that is no such archive.
    """
    import tarfile
    import zipfile

    try:
        members, identity, meta_name, meta = _scan_archive(path)
    except (zipfile.BadZipFile, tarfile.TarError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: not a readable model archive: {e}") from e
    if meta_name is None:
        raise ValueError(f"{path}: no meta.yaml (not packed by espnet2.bin.pack)")
    if not (
        isinstance(meta, dict)
        and isinstance(meta.get("files"), dict)
        and isinstance(meta.get("yaml_files"), dict)
    ):
        raise ValueError(f"{path}: its {meta_name} has no 'files' and 'yaml_files'")
    return _Archive(meta, tuple(members), meta_name, identity)


#: Written into an unpack directory once an archive is completely unpacked
#: there: the archive's identity (:attr:`_Archive.identity`).
_UNPACKED_STAMP = ".unpacked"


def _unpack(path: Path, archive: _Archive, unpack_dir: Path) -> None:
    """Unpack ``archive`` into ``unpack_dir`` unless it is there already.

    ESPnet's own cache (``unpack(use_cache=True)``) looks for the files one
    level above the unpack directory: next to a recipe's ``exp/`` it returns
    the recipe's files. The stamp written last says which archive was
    unpacked completely; an exclusive lock on the directory makes parallel
    loads of one model unpack it once, and none read a file another is
    writing.
    """
    import fcntl

    from espnet2.main_funcs.pack_funcs import unpack

    unpack_dir.mkdir(parents=True, exist_ok=True)
    stamp = unpack_dir / _UNPACKED_STAMP
    fd = os.open(unpack_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if (
            stamp.is_file()
            and stamp.read_text(encoding="utf-8") == archive.identity
            and all((unpack_dir / name).is_file() for name in archive.members)
        ):
            return
        # An unpacking cut short leaves no stamp.
        stamp.unlink(missing_ok=True)
        unpack(path, unpack_dir, use_cache=False)
        tmp = stamp.with_name(stamp.name + ".tmp")
        tmp.write_text(archive.identity, encoding="utf-8")
        os.replace(tmp, stamp)
    finally:
        os.close(fd)  # releases the lock


def _from_zip(
    zip_path: Path, unpack_dir: Optional[Path], decoding: Optional[Path]
) -> ModelFiles:
    archive = _read_archive(zip_path)
    packed = archive.packed()
    if "asr_train_config" not in packed or "asr_model_file" not in packed:
        raise ValueError(f"{zip_path}: not an ASR model packed by espnet2.bin.pack asr")
    # Absolute: ESPnet writes the unpacked paths into the unpacked config,
    # which a later load from another working directory reuses.
    unpack_dir = (
        Path(unpack_dir).absolute() if unpack_dir else _default_unpack_dir(zip_path)
    )
    _unpack(zip_path, archive, unpack_dir)
    # Found among the archive's own members, never by globbing the unpack
    # directory: it may hold other files (another model's, a recipe's).
    options = archive.options()
    if decoding is None:
        # Stage 14 packs the decoding YAML stage 12 used as an --option.
        name = _one(
            [n for n in options if Path(n).suffix in (".yaml", ".yml")],
            "decoding YAMLs (pass decoding=...)",
            zip_path,
        )
        decoding = unpack_dir / name if name else None
    settings = _read_yaml(decoding) if decoding else {}
    # The lexicon and word LM of --use_word_lm true (stage 9), by name.
    for option, filename in (
        ("lexicon_file", "lexicon.txt"),
        ("word_lm_file", "word_lm.arpa"),
    ):
        name = _one(
            [n for n in options if Path(n).name == filename], filename, zip_path
        )
        if name is not None:
            settings.setdefault(option, str(unpack_dir / name))
    return ModelFiles(
        unpack_dir / packed["asr_train_config"],
        unpack_dir / packed["asr_model_file"],
        settings,
        decoding,
    )


#: ESPnet's default ``best_model_criterion`` (its trainer's), for a config
#: that names none.
ESPNET_BEST_MODEL_CRITERION = (
    ("train", "loss", "min"),
    ("valid", "loss", "min"),
    ("train", "acc", "max"),
    ("valid", "acc", "max"),
)


def best_model_name(train_config: Mapping[str, Any]) -> str:
    """The averaged model file the recipe decodes, for a training config.

    ESPnet averages the ``keep_nbest_models`` best epochs of every
    ``best_model_criterion`` entry into ``<phase>.<criterion>.ave.pth``; the
    recipe's asr.sh (through ``pyscripts/utils/best_model_name.py``) and
    :func:`load_model` decode the one of the first ``valid`` entry.
    ``ValueError`` for a malformed entry or none of phase ``valid``.
    """
    criteria = train_config.get("best_model_criterion") or ESPNET_BEST_MODEL_CRITERION
    for entry in criteria:
        if len(entry) != 3:
            raise ValueError(
                f"best_model_criterion entry {entry!r}: "
                "expected [phase, criterion, min|max]"
            )
        phase, criterion, _ = entry
        if phase == "valid":
            return f"valid.{criterion}.ave.pth"
    raise ValueError(f"best_model_criterion {criteria!r} has no 'valid' entry")


def _best_model_file(exp_dir: Path, train_config: Mapping[str, Any]) -> Path:
    try:
        path = exp_dir / best_model_name(train_config)
    except ValueError as e:
        raise ValueError(f"{exp_dir}/config.yaml: {e}") from e
    if not path.is_file():
        raise FileNotFoundError(f"{exp_dir}: no {path.name} (is training done?)")
    return path


def _from_exp_dir(exp_dir: Path, decoding: Optional[Path]) -> ModelFiles:
    config = exp_dir / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{exp_dir}: no config.yaml (not an ASR experiment)")
    if decoding is None or decoding.is_dir():
        root = exp_dir if decoding is None else decoding
        records = sorted(root.glob(f"**/{RECORD_NAME}"))
        # Parallel jobs of one decoding write the same record.
        distinct: Dict[str, Path] = {}
        for path in records:
            distinct.setdefault(path.read_text(encoding="utf-8"), path)
        if not distinct:
            raise FileNotFoundError(
                f"{root}: no {RECORD_NAME} (written by "
                "espnet_shared_conformer.bin.asr_inference, recipe stage 12): "
                "decode it first, or pass decoding=<decoding YAML> and, for a "
                "lexicon model, lexicon_file=... word_lm_file=..."
            )
        if len(distinct) > 1:
            dirs = sorted(
                {str(p.relative_to(root).parts[0]) for p in distinct.values()}
            )
            raise ValueError(
                f"{root} was decoded {len(distinct)} ways ({', '.join(dirs)}): "
                "pass decoding=<one of these directories>"
            )
        decoding = next(iter(distinct.values()))
    options = _read_yaml(decoding)
    train_config = _read_yaml(config)
    model_file = options.pop("asr_model_file", None)
    options.pop("asr_train_config", None)
    model = Path(model_file) if model_file else _best_model_file(exp_dir, train_config)
    return ModelFiles(config, model, options, decoding)


def resolve_model(
    source: Union[str, Path],
    decoding: Union[str, Path, None] = None,
    unpack_dir: Union[str, Path, None] = None,
) -> ModelFiles:
    """Find a model's files and decoding options.

    ``source``: a zip from ``espnet2.bin.pack asr`` (recipe stage 14). The
    model's files are the ones its ``meta.yaml`` names; among the other
    members, the decoding YAML (the one ``*.yaml``), ``lexicon.txt`` and
    ``word_lm.arpa`` are found by name; the zip is unpacked into
    ``unpack_dir`` (default: a per-user cache) once, and later loads of the
    same archive reuse it. Other files in ``unpack_dir`` play no part. Or an
    experiment directory holding ``config.yaml`` and the record of its
    decoding (:data:`RECORD_NAME`, written by stage 12). ``decoding``
    chooses among several decodings: a decoding YAML, or a directory to look
    for the record in.
    """
    source = Path(source)
    decoding = Path(decoding) if decoding is not None else None
    if decoding is not None and not decoding.exists():
        raise FileNotFoundError(f"decoding: no such file or directory: {decoding}")
    if source.is_file():
        return _from_zip(source, Path(unpack_dir) if unpack_dir else None, decoding)
    if source.is_dir():
        return _from_exp_dir(source, decoding)
    raise FileNotFoundError(f"no such model (packed zip or experiment dir): {source}")


# ---------------------------------------------------------------- transcriber


class Transcriber:
    """A model with its decoding configuration applied: ``text = self(speech)``.

    ``speech`` is mono float32 samples ``(T,)`` at :attr:`fs` for a model with
    a frontend (the recipe's default: ``feats_type raw``), or Kaldi fbank
    frames ``(T, n_mels)`` for one trained on dumped features
    (:attr:`n_mels` is not None). Input too short for the encoder's
    subsampling raises :class:`TooShortUttError` (ESPnet's).
    """

    def __init__(
        self,
        asr_model: Any,
        train_args: Any,
        options: Dict[str, Any],
        speech2text: Any = None,
        lexicon_decoder: Any = None,
        fbank_fs: int = 16000,
    ) -> None:
        import humanfriendly

        self.asr_model = asr_model
        self.asr_train_args = train_args
        #: The decoding options in effect.
        self.options = options
        #: ESPnet's ``Speech2Text`` (its beam search), or None with a lexicon.
        self.speech2text = speech2text
        #: The ``CTCLexiconDecoder`` searching lexicon words, or None.
        self.lexicon_decoder = lexicon_decoder
        if getattr(asr_model, "frontend", None) is None:
            #: Fbank bins of the input for a model without a frontend, else None.
            self.n_mels: Optional[int] = int(train_args.input_size)
            #: The sample rate the model's input is computed at.
            self.fs = fbank_fs
        else:
            self.n_mels = None
            fs = (train_args.frontend_conf or {}).get("fs", 16000)
            self.fs = int(humanfriendly.parse_size(fs) if isinstance(fs, str) else fs)

    def __call__(self, speech: np.ndarray) -> str:
        """The best transcript of one utterance (see the class for ``speech``)."""
        import torch

        speech = np.asarray(speech, dtype=np.float32)
        expected = 1 if self.n_mels is None else 2
        if speech.ndim != expected or (
            self.n_mels is not None and speech.shape[1] != self.n_mels
        ):
            shape = (
                "(T,) samples" if self.n_mels is None else f"(T, {self.n_mels}) fbank"
            )
            raise ValueError(
                f"the model takes {shape}, not an array of shape {speech.shape}"
            )
        with torch.inference_mode():
            if self.lexicon_decoder is None:
                results = self.speech2text(speech)
                return (results[0][0] or "") if results else ""
            x = torch.from_numpy(speech)[None]
            encoded, lengths = self.asr_model.encode(x, torch.tensor([x.size(1)]))
            if isinstance(encoded, tuple):  # intermediate CTC outputs ride along
                encoded = encoded[0]
            log_probs = self.asr_model.ctc.log_softmax(encoded)[0, : int(lengths[0])]
            return " ".join(self.lexicon_decoder(log_probs)[0][0])


def _speech2text_defaults() -> Dict[str, Any]:
    """ESPnet's ``Speech2Text`` options and their defaults.

    Read from the source of ``espnet2.bin.asr_inference`` when every default
    there is a literal (they are: strings, numbers, None, lists): importing
    the module takes most of the start of a transcription command (every
    task, tokenizer and LM of ESPnet: 6 s of CPU time on top of the model's
    own imports, on the 2-core development machine), parsing it 0.1 s.
    Otherwise the imported class's signature.
    """
    try:
        return _literal_defaults("espnet2.bin.asr_inference", "Speech2Text")
    except ValueError:
        from espnet2.bin.asr_inference import Speech2Text

        return {
            name: p.default
            for name, p in inspect.signature(Speech2Text.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }


def _literal_defaults(module: str, class_name: str) -> Dict[str, Any]:
    """The keyword defaults of ``module.class_name.__init__``, from its source.

    ``ValueError`` when the source is not at hand, the class or its
    ``__init__`` is not defined there at top level, or a default is not a
    literal.
    """
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ValueError(f"no source for {module}")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    init = next(
        (
            node
            for cls in tree.body
            if isinstance(cls, ast.ClassDef) and cls.name == class_name
            for node in cls.body
            if isinstance(node, ast.FunctionDef) and node.name == "__init__"
        ),
        None,
    )
    if init is None:
        raise ValueError(f"no {class_name}.__init__ in {spec.origin}")
    arguments = init.args
    positional = arguments.posonlyargs + arguments.args
    with_default = positional[len(positional) - len(arguments.defaults) :]
    pairs = list(zip(with_default, arguments.defaults, strict=True))
    pairs += [
        (arg, default)
        for arg, default in zip(
            arguments.kwonlyargs, arguments.kw_defaults, strict=True
        )
        if default is not None  # a keyword-only argument without a default
    ]
    # literal_eval raises ValueError for anything but a literal.
    return {arg.arg: ast.literal_eval(default) for arg, default in pairs}


def load_model(
    source: Union[str, Path],
    *,
    decoding: Union[str, Path, None] = None,
    device: str = "cpu",
    unpack_dir: Union[str, Path, None] = None,
    use_lexicon: bool = True,
    fbank_fs: int = 16000,
    **overrides: Any,
) -> Transcriber:
    """Load a model with the decoding configuration it was evaluated with.

    Args:
        source: a packed zip (recipe stage 14) or an experiment directory
            decoded by stage 12; see :func:`resolve_model`, also for
            ``decoding`` and ``unpack_dir``.
        device: ``cpu`` or ``cuda``.
        use_lexicon: decode with the model's lexicon and word LM when it has
            them (``lexicon_file`` in its decoding options); False: ESPnet's
            beam search.
        fbank_fs: sample rate of the fbank input of a model without frontend.
        overrides: decoding options that beat the model's (``beam_size=8``,
            ``word_lm_weight=1.5``, ``quantize_asr_model=True``,
            ``lexicon_file=...``); any of ESPnet's ``Speech2Text`` options,
            :data:`LEXICON_OPTIONS` or :data:`STREAMING_OPTIONS`. ``streaming``
            and :data:`STREAMING_OPTIONS` (a streaming decoding's record holds
            them) are kept in the transcriber's ``options``, where
            ``StreamingRecognizer.from_model`` takes its chunks from; the
            transcriber itself decodes offline.

    Returns:
        A :class:`Transcriber`: ``transcriber(samples) -> str``.

    Raises:
        FileNotFoundError: the model or a file it names is missing.
        ValueError: an unknown option, or options the model cannot decode
            with: a decoder weight (``ctc_weight`` < 1) or ``partial_ar``
            without a decoder, ESPnet beam-search options passed to the
            lexicon search, an LM or tokenizer it cannot use, etc.
    """
    files = resolve_model(source, decoding, unpack_dir)
    defaults = _speech2text_defaults()
    known = set(defaults) | set(LEXICON_OPTIONS) | set(STREAMING_OPTIONS)
    unknown = sorted(
        k
        for k in {**files.decoding, **overrides}
        if k not in known and k not in _PER_RUN
    )
    if unknown:
        where = f" (from {files.decoding_source})" if files.decoding_source else ""
        raise ValueError(f"unknown decoding options{where}: {', '.join(unknown)}")
    options = {
        k: v for k, v in {**files.decoding, **overrides}.items() if k not in _PER_RUN
    }
    # A streaming decoding's chunks (its record): kept for
    # StreamingRecognizer.from_model; this transcriber decodes offline.
    streaming = {
        k: options.pop(k) for k in ("streaming", *STREAMING_OPTIONS) if k in options
    }
    espnet = {k: v for k, v in options.items() if k in defaults}
    lexicon = {k: v for k, v in options.items() if k in LEXICON_OPTIONS}
    if espnet.get("quantize_asr_model") and device != "cpu":
        raise ValueError(
            f"quantize_asr_model: dynamic quantization runs on the CPU, not {device}"
        )

    if use_lexicon and lexicon.get("lexicon_file"):
        unused = check_lexicon_options(espnet, set(overrides), defaults)
        if unused:
            logger.info(
                f"lexicon search: {', '.join(unused)} from {files.decoding_source} "
                "do not apply (they tune ESPnet's beam search)"
            )
        transcriber = _lexicon_transcriber(files, espnet, lexicon, device, fbank_fs)
        transcriber.options.update(streaming)
        return transcriber
    given_lexicon = sorted(set(lexicon) & set(overrides))
    if given_lexicon:
        why = "use_lexicon is False" if not use_lexicon else "there is no lexicon_file"
        raise ValueError(
            f"{given_lexicon[0]} applies to the lexicon search only, and {why}"
        )
    if lexicon:
        logger.info(f"ESPnet's beam search: {', '.join(sorted(lexicon))} do not apply")
    from espnet2.bin.asr_inference import Speech2Text

    register_encoder()
    train_config = _read_yaml(files.asr_train_config)
    espnet = check_decoder_options(
        builds_decoder(train_config), espnet, set(files.decoding) | set(overrides)
    )
    speech2text = Speech2Text(
        asr_train_config=str(files.asr_train_config),
        asr_model_file=str(files.asr_model_file),
        device=device,
        **espnet,
    )
    return Transcriber(
        speech2text.asr_model,
        speech2text.asr_train_args,
        {**espnet, **lexicon, **streaming},
        speech2text=speech2text,
        fbank_fs=fbank_fs,
    )


def _lexicon_transcriber(
    files: ModelFiles,
    espnet: Dict[str, Any],
    lexicon: Dict[str, Any],
    device: str,
    fbank_fs: int,
) -> Transcriber:
    from espnet_shared_conformer.lexicon import CTCLexiconDecoder, LexiconDecoderConfig

    model, train_args = load_asr_model(
        files.asr_train_config,
        files.asr_model_file,
        device=device,
        dtype=espnet.get("dtype", "float32"),
        quantize_asr_model=bool(espnet.get("quantize_asr_model", False)),
        quantize_modules=espnet.get("quantize_modules", ["Linear"]),
        quantize_dtype=espnet.get("quantize_dtype", "qint8"),
    )
    if getattr(model, "ctc", None) is None:
        raise ValueError(f"{files.asr_model_file}: the model has no CTC head to decode")
    config = LexiconDecoderConfig.from_options(lexicon, int(espnet.get("nbest", 1)))
    word_lm = lexicon.get("word_lm_file")
    decoder = CTCLexiconDecoder(
        model.token_list,
        Path(lexicon["lexicon_file"]),
        Path(word_lm) if word_lm else None,
        config,
    )
    return Transcriber(
        model,
        train_args,
        {**espnet, **lexicon},
        lexicon_decoder=decoder,
        fbank_fs=fbank_fs,
    )


# ---------------------------------------------------------------- the record


def write_decoding_record(
    output_dir: Union[str, Path], options: Mapping[str, Any]
) -> Path:
    """Write :data:`RECORD_NAME` into ``output_dir``: what was decoded, how.

    ``options`` are the model files and the decoding options that were set;
    file paths are made absolute so that the record is valid from anywhere.
    Written to a temporary name and renamed.
    """
    record: Dict[str, Any] = {}
    for name, value in sorted(options.items()):
        if name in _PER_RUN:
            continue
        if (
            name
            in (
                "asr_train_config",
                "asr_model_file",
                "lexicon_file",
                "word_lm_file",
                "lm_train_config",
                "lm_file",
                "ngram_file",
                "bpemodel",
            )
            and value
        ):
            value = str(Path(value).resolve())
        record[name] = value
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RECORD_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(record, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path
