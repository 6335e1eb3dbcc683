"""Build a trained ESPnet ASR model without importing ESPnet's ASR task.

``ASRTask.build_model_from_file`` builds any model, but importing
``espnet2.tasks.asr`` imports every frontend, encoder, decoder and the
trainer ESPnet has (self-supervised frontends, Hugging Face decoders, the
GAN-TTS aligner through the trainer, ...): 7-8 s of CPU time on the 2-core
development machine, against under 1 s for the few classes a model of this
package's recipe is made of, on top of torch and the encoder itself. A
command that decodes a few files (``bin.transcribe``) pays it on every call.

:func:`build_from_files` builds the recipe's models from those classes
alone: ESPnet's ``espnet`` model with the ``shared_conformer`` encoder, the
default frontend or fbank input, SpecAugment, global or utterance MVN, CTC,
no attention decoder, no pre- or post-encoder. For anything else it returns
None, and the caller builds the model with ESPnet's task: the same model,
more slowly. It builds exactly what ``ASRTask.build_model`` builds for such
a config (the same classes with the same arguments), and loads the weights
only if their names match the model's exactly; ESPnet's renaming of legacy
checkpoints is left to ESPnet's path.
"""

import argparse
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import yaml

__all__ = ["build_from_files"]

# Names of ESPnet's choices (``--normalize`` etc.) the fast path builds.
_NORMALIZERS = ("global_mvn", "utterance_mvn")
# ClassChoices' spellings of "none" for an optional choice.
_NONE = ("none", "null", "nil")


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.lower() in _NONE)


def _supported(args: argparse.Namespace) -> bool:
    """Whether the config is one :func:`build_from_files` builds itself."""
    from espnet_shared_conformer._registry import ENCODER_NAME

    return (
        getattr(args, "model", "espnet") in (None, "espnet")
        and getattr(args, "encoder", None) == ENCODER_NAME
        and (args.input_size is not None or args.frontend == "default")
        and getattr(args, "specaug", None) in (None, "specaug")
        and (_is_none(args.normalize) or args.normalize in _NORMALIZERS)
        and _is_none(getattr(args, "preencoder", None))
        and _is_none(getattr(args, "postencoder", None))
        and _is_none(getattr(args, "decoder", None))
        and not getattr(args, "use_adapter", False)
        and "transducer_multi_blank_durations" not in (args.model_conf or {})
    )


def _token_list(args: argparse.Namespace) -> list:
    # As ASRTask.build_model: a path is read and the list kept in args.
    if isinstance(args.token_list, str):
        with open(args.token_list, encoding="utf-8") as f:
            args.token_list = [line.rstrip() for line in f]
    return list(args.token_list)


def _build(args: argparse.Namespace) -> Any:
    """``ASRTask.build_model(args)`` for a config :func:`_supported` accepts."""
    from espnet2.asr.ctc import CTC
    from espnet2.asr.espnet_model import ESPnetASRModel

    from espnet_shared_conformer.encoder import SharedConformerEncoder

    token_list = _token_list(args)
    if args.input_size is None:
        from espnet2.asr.frontend.default import DefaultFrontend

        frontend = DefaultFrontend(**(args.frontend_conf or {}))
        input_size = frontend.output_size()
    else:
        args.frontend, args.frontend_conf = None, {}
        frontend, input_size = None, args.input_size
    specaug = None
    if getattr(args, "specaug", None) is not None:
        from espnet2.asr.specaug.specaug import SpecAug

        specaug = SpecAug(**(args.specaug_conf or {}))
    normalize = None
    if args.normalize == "global_mvn":
        from espnet2.layers.global_mvn import GlobalMVN

        normalize = GlobalMVN(**(args.normalize_conf or {}))
    elif args.normalize == "utterance_mvn":
        from espnet2.layers.utterance_mvn import UtteranceMVN

        normalize = UtteranceMVN(**(args.normalize_conf or {}))
    encoder = SharedConformerEncoder(input_size=input_size, **args.encoder_conf)
    ctc = CTC(
        odim=len(token_list),
        encoder_output_size=encoder.output_size(),
        **(args.ctc_conf or {}),
    )
    return ESPnetASRModel(
        vocab_size=len(token_list),
        frontend=frontend,
        specaug=specaug,
        normalize=normalize,
        preencoder=None,
        encoder=encoder,
        postencoder=None,
        decoder=None,
        ctc=ctc,
        joint_network=None,
        token_list=token_list,
        **(args.model_conf or {}),
    )


def _state_dict(model_file: Path, device: str) -> Dict[str, Any]:
    import torch

    state = torch.load(model_file, map_location=device, weights_only=True)
    # Checkpoints of DeepSpeed and Lightning wrap the weights, as ESPnet knows.
    for wrapper in ("module", "state_dict"):
        if wrapper in state:
            state = state[wrapper]
    return state


def build_from_files(
    asr_train_config: Union[str, Path],
    asr_model_file: Union[str, Path],
    device: str = "cpu",
) -> Optional[Tuple[Any, argparse.Namespace]]:
    """``(model, train_args)`` as ``ASRTask.build_model_from_file`` gives them,
    or None when the config or the weights need ESPnet's task.

    The model is on ``device`` in training mode, as ESPnet leaves it.
    """
    with open(asr_train_config, encoding="utf-8") as f:
        args = argparse.Namespace(**(yaml.safe_load(f) or {}))
    if not hasattr(args, "input_size") or not hasattr(args, "token_list"):
        return None  # not a dumped ASR config: ESPnet's error says what is missing
    if not _supported(args):
        return None
    model = _build(args).to(device)
    state = _state_dict(Path(asr_model_file), device)
    if set(state) != set(model.state_dict()):
        return None
    model.load_state_dict(state)
    return model, args
