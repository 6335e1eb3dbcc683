"""Compress a trained Conformer into a shared, low-rank one, before fine-tuning.

Takes the weights of an unshared encoder (ESPnet's ``conformer``, or a
``shared_conformer`` that shares nothing) and initializes a
:class:`SharedConformerEncoder` with sharing options from them:

- a **factorized projection** ``W`` (out x in) starts as its truncated SVD,
  ``B = U_r sqrt(S_r)``, ``A = sqrt(S_r) V_r^T``: the best rank-``r``
  approximation in Frobenius norm (Eckart-Young); the bias is kept;
- a **factor shared across blocks** comes from the blocks' weights together.
  ``lowrank_shared_factor: in`` (one ``A``): the SVD of the vertically stacked
  ``[W_1; W_2; ...]`` gives the common row space ``A``, then each
  ``B_i = W_i A^+`` (least squares). This minimizes ``sum_i ||W_i - B_i A||_F^2``
  jointly. ``out`` (one ``B``) is the same with horizontal stacking
  ``[W_1, W_2, ...]`` and ``A_i = B^+ W_i``;
- a **module or block that replaces several layers** (repeated blocks,
  modules shared across layers, a tied macaron FFN, tied attention
  projections) starts from the *first* of those layers by default
  (``init="first"``). The mean minimizes the squared distance to all of them,
  but the layers were trained independently: the hidden units of two FFNs, the
  heads of two attention modules are not aligned (any permutation of them is
  an equally good network), so averaging mixes unrelated units, shrinks the
  weights by up to ``1/sqrt(k)`` and gives a function none of the layers
  computed. The first layer is a function the network really computed, and a
  residual network tolerates running it again; this is also what the
  "stepwise" initialization of recursive transformers does (Bae et al.,
  "Relaxed Recursive Transformers", 2024). ``init="mean"`` is there to compare.

Per-layer LayerNorms (``per_layer_norms``) are copied from their own layers.

Usage::

    python -m espnet_shared_conformer.compress --config exp/asr/config.yaml \\
        --model exp/asr/valid.acc.ave.pth --out_dir exp/asr_compressed \\
        --lowrank_rank 32 [--num_unique_blocks 4] [--share_across_layers conv] \\
        [--lowrank_shared_factor in] [--lowrank_modules ffn mhsa] [--init first]

writes ``out_dir/config.yaml`` (the encoder switched to ``shared_conformer``,
everything else unchanged) and ``out_dir/model.pth``, which ESPnet decodes
(after :func:`espnet_shared_conformer.register`) and fine-tunes like any
other checkpoint.
"""

import argparse
import dataclasses
import math
import os
import sys
import typing
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from espnet_shared_conformer._cli import add_model_arguments, command_parser
from espnet_shared_conformer.modules import LowRankLinear, resolve
from espnet_shared_conformer.params import count_parameters
from espnet_shared_conformer.plan import REPEAT_SCHEDULES, SharingOptions

__all__ = [
    "INIT_CHOICES",
    "CompressionReport",
    "ProjectionError",
    "compress_encoder",
    "compress_model",
    "compress_state_dict",
    "get_parser",
    "main",
    "truncated_svd",
]

INIT_CHOICES: Tuple[str, ...] = ("first", "mean")

_SOURCE_ENCODERS = ("conformer", "shared_conformer")


@dataclass(frozen=True)
class ProjectionError:
    """How well the initial factors of one low-rank projection fit.

    ``name`` is the projection's key in the compressed encoder (e.g.
    ``encoders.0.self_attn.linear_q``); ``error`` is
    ``||W - B A||_F / ||W||_F`` against the dense ``W`` it starts from (the
    first, or the mean, of the layers it replaces); ``shared_by`` counts the
    projections that share one of its factors (1: none).
    """

    name: str
    out_features: int
    in_features: int
    rank: int
    shared_by: int
    error: float


@dataclass(frozen=True)
class CompressionReport:
    """Parameters before and after, and the per-projection reconstruction errors."""

    parameters_before: int
    parameters_after: int
    projections: Tuple[ProjectionError, ...]
    #: Whole ASR model (encoder, decoder, CTC, ...), when a model was compressed.
    model_parameters_before: Optional[int] = None
    model_parameters_after: Optional[int] = None

    @property
    def reduction(self) -> float:
        """Parameters before per parameter after (of the encoder)."""
        return self.parameters_before / max(self.parameters_after, 1)

    def format(self) -> str:
        lines = [
            f"encoder parameters: {self.parameters_before:,} -> "
            f"{self.parameters_after:,} ({self.reduction:.2f}x fewer)"
        ]
        if self.model_parameters_before and self.model_parameters_after:
            lines.append(
                f"model parameters: {self.model_parameters_before:,} -> "
                f"{self.model_parameters_after:,} ("
                f"{self.model_parameters_before / self.model_parameters_after:.2f}x "
                f"fewer; fp32 {4 * self.model_parameters_after / 2**20:.2f} MiB, "
                f"int8 about {self.model_parameters_after / 2**20:.2f} MiB)"
            )
        if self.projections:
            width = max(len(p.name) for p in self.projections)
            lines.append(
                f"  {'projection':<{width}}  {'out x in':>11}  rank  shared  "
                "||W-BA||/||W||"
            )
            for p in self.projections:
                shape = f"{p.out_features}x{p.in_features}"
                lines.append(
                    f"  {p.name:<{width}}  {shape:>11}  {p.rank:>4}  "
                    f"{p.shared_by:>6}  {p.error:.4f}"
                )
        return "\n".join(lines)


def truncated_svd(weight: torch.Tensor, rank: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B, A)`` with ``B A`` the best rank-``rank`` approximation of ``weight``.

    ``weight`` (out x in); ``B = U_r sqrt(S_r)`` (out x r), ``A = sqrt(S_r)
    V_r^T`` (r x in): the singular values split evenly, so that both factors
    have the same scale.
    """
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    root = s[:rank].sqrt()
    b = u[:, :rank] * root
    a = root[:, None] * vh[:rank]
    return b.to(weight.dtype), a.to(weight.dtype)


def _shared_in(
    weights: Sequence[torch.Tensor], rank: int
) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """One ``A`` (r x in) for all ``weights`` and each ``B_i = W_i A^+``."""
    stacked = torch.cat([w.double() for w in weights], dim=0)  # (k out, in)
    _, s, vh = torch.linalg.svd(stacked, full_matrices=False)
    # Divide out the sqrt(k) that stacking k matrices adds to the singular
    # values, so that with one matrix this is exactly truncated_svd.
    scale = (s[:rank] / math.sqrt(len(weights))).clamp_min(1e-12).sqrt()
    a = scale[:, None] * vh[:rank]  # rows span the best common row space
    a_pinv = vh[:rank].T / scale[None, :]  # A^+ (in, r): A has orthogonal rows
    bs = [(w.double() @ a_pinv).to(w.dtype) for w in weights]
    return a.to(weights[0].dtype), bs


def _shared_out(
    weights: Sequence[torch.Tensor], rank: int
) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """One ``B`` (out x r) for all ``weights`` and each ``A_i = B^+ W_i``."""
    a, bs = _shared_in([w.T for w in weights], rank)
    return a.T.contiguous(), [b.T.contiguous() for b in bs]


def _reduce(tensors: Sequence[torch.Tensor], init: str) -> torch.Tensor:
    if init == "first" or len(tensors) == 1 or not tensors[0].is_floating_point():
        return tensors[0].clone()
    return torch.stack(tensors).mean(0)


def _dense_source(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``state`` with every low-rank projection multiplied out (``weight = B A``)."""
    dense = dict(state)
    for key in list(state):
        if key.endswith(".a.weight"):
            prefix = key[: -len(".a.weight")]
            b = dense.pop(f"{prefix}.b.weight")
            a = dense.pop(key)
            dense[f"{prefix}.weight"] = b @ a
    return dense


def _target_path(encoder: nn.Module, key: str) -> str:
    """Where the weight ``key`` of the unshared encoder lives in ``encoder``."""
    parts = key.split(".")
    if parts[0] == "encoders":
        plan = encoder.plan
        layer = int(parts[1])
        if layer >= plan.num_layers:
            raise ValueError(
                f"the source has layer {layer} ({key}), but num_blocks is "
                f"{plan.num_layers}: compression keeps the virtual depth"
            )
        if plan.per_layer_norms and parts[2].startswith("norm_"):
            return ".".join(["layer_norms", str(layer)] + parts[2:])
        parts[1] = str(plan.schedule[layer])
    return ".".join(parts)


def _lookup(module: nn.Module, path: str) -> Tuple[nn.Module, str]:
    """The module (aliases resolved) that holds the last part of ``path``."""
    *modules, name = path.split(".")
    for part in modules:
        module = resolve(getattr(module, part))
    return module, name


@torch.no_grad()
def compress_encoder(
    source: Mapping[str, torch.Tensor], target: nn.Module, init: str = "first"
) -> CompressionReport:
    """Initialize ``target``, in place, from the weights of an unshared encoder.

    Args:
        source: ``state_dict`` of an unshared encoder with ``target``'s virtual
            depth and base options: ESPnet's ``ConformerEncoder``, or a
            ``SharedConformerEncoder`` that shares nothing (low-rank
            projections in it are multiplied out first).
        target: The :class:`SharedConformerEncoder` to initialize.
        init: ``"first"`` or ``"mean"``: what a tensor that replaces several
            layers' tensors starts as (see the module docstring for why the
            first is the default).

    Returns:
        Parameter counts before and after, and the relative reconstruction
        error of every factorized projection.

    Raises:
        ValueError: the source does not match ``target``'s unshared layout.
    """
    if init not in INIT_CHOICES:
        raise ValueError(f"init ({init!r}) must be one of {list(INIT_CHOICES)}")
    source = _dense_source(source)
    target_state = target.state_dict(keep_vars=True)
    key_of = {id(t): k for k, t in target_state.items()}
    module_names = {id(m): n for n, m in target.named_modules()}
    parameter_ids = {id(p) for p in target.parameters()}

    plain: Dict[str, List[str]] = defaultdict(list)  # target key -> source keys
    lowrank: Dict[int, Tuple[str, LowRankLinear, List[str]]] = {}
    parameters_before = 0
    for key, tensor in source.items():
        owner, name = _lookup(target, _target_path(target, key))
        if isinstance(owner, LowRankLinear) and name == "weight":
            slot = lowrank.setdefault(id(owner), (module_names[id(owner)], owner, []))
            slot[2].append(key)
            parameters_before += tensor.numel()
            continue
        held = getattr(owner, name, None)
        if not isinstance(held, torch.Tensor) or id(held) not in key_of:
            raise ValueError(
                f"the source's {key} has no place in the compressed encoder: is the "
                "source an unshared Conformer with the same options?"
            )
        plain[key_of[id(held)]].append(key)
        if id(held) in parameter_ids:
            parameters_before += tensor.numel()

    # Everything the target holds must come from somewhere.
    covered = set(plain) | {
        k
        for _, layer, _ in lowrank.values()
        for k in (
            key_of[id(resolve(layer.a).weight)],
            key_of[id(resolve(layer.b).weight)],
        )
    }
    missing = [k for k in target_state if k not in covered]
    if missing:
        raise ValueError(
            f"the source has nothing for {missing[:5]} of the compressed encoder: "
            "is the source an unshared Conformer with the same options?"
        )

    for key, sources in plain.items():
        value = _reduce([source[s] for s in sources], init)
        if value.shape != target_state[key].shape:
            raise ValueError(
                f"{sources[0]} has shape {tuple(value.shape)}, but the compressed "
                f"encoder's {key} has {tuple(target_state[key].shape)}"
            )
        target_state[key].copy_(value)

    # Dense W of every low-rank slot, then factorize, sharing factors where
    # the slots' A (or B) resolve to one module.
    shared_factor = getattr(
        getattr(target, "plan", None), "lowrank_shared_factor", "none"
    )
    groups: Dict[int, List[Tuple[str, LowRankLinear, torch.Tensor]]] = defaultdict(list)
    for name, layer, sources in lowrank.values():
        weights = [
            source[s].reshape(layer.out_features, layer.in_features) for s in sources
        ]
        dense = _reduce(weights, init)
        factor = {"in": layer.a, "out": layer.b}.get(shared_factor)
        group = id(resolve(factor)) if factor is not None else id(layer)
        groups[group].append((name, layer, dense))

    errors = []
    for members in groups.values():
        rank = members[0][1].rank
        dense = [w for _, _, w in members]
        if len(members) == 1:
            b, a = truncated_svd(dense[0], rank)
            factors = [(b, a)]
        elif shared_factor == "in":
            a, bs = _shared_in(dense, rank)
            factors = [(b, a) for b in bs]
        else:
            b, as_ = _shared_out(dense, rank)
            factors = [(b, a) for a in as_]
        for (name, layer, w), (b, a) in zip(members, factors, strict=True):
            resolve(layer.a).weight.copy_(a)
            resolve(layer.b).weight.copy_(b)
            error = torch.linalg.norm(w - b @ a) / torch.linalg.norm(w).clamp_min(1e-30)
            errors.append(
                ProjectionError(
                    name,
                    layer.out_features,
                    layer.in_features,
                    rank,
                    len(members),
                    float(error),
                )
            )
    errors.sort(key=lambda e: _natural(e.name))
    return CompressionReport(
        parameters_before=parameters_before,
        parameters_after=count_parameters(target),
        projections=tuple(errors),
    )


def _natural(name: str) -> Tuple:
    return tuple(int(p) if p.isdigit() else p for p in name.split("."))


def compress_state_dict(
    source: Mapping[str, torch.Tensor],
    encoder_options: Mapping[str, Any],
    init: str = "first",
) -> Tuple[Dict[str, torch.Tensor], CompressionReport]:
    """The ``state_dict`` of a ``SharedConformerEncoder(**encoder_options)``
    initialized from an unshared encoder's ``source`` state (see
    :func:`compress_encoder`), and the report.

    ``encoder_options`` are the compressed encoder's full constructor
    arguments (``input_size`` included): the source's options plus the
    sharing options.
    """
    from espnet_shared_conformer.encoder import SharedConformerEncoder

    target = SharedConformerEncoder(**encoder_options)
    report = compress_encoder(source, target, init)
    return target.state_dict(), report


def compress_model(
    config: str,
    model_file: str,
    out_dir: str,
    options: Mapping[str, Any],
    init: str = "first",
) -> CompressionReport:
    """Compress the encoder of a trained ESPnet ASR model; write config and weights.

    Args:
        config: The trained model's ``config.yaml``; its encoder must be
            ``conformer`` or a ``shared_conformer`` that shares nothing.
        model_file: Its weights (e.g. ``valid.acc.ave.pth``).
        out_dir: Gets ``config.yaml`` (the encoder switched to
            ``shared_conformer`` with ``options`` added, all else unchanged)
            and ``model.pth``.
        options: Sharing options of the compressed encoder
            (``num_unique_blocks``, ``lowrank_rank``, ...).
        init: See :func:`compress_encoder`.
    """
    import yaml
    from espnet2.tasks.asr import ASRTask

    from espnet_shared_conformer._registry import ENCODER_NAME, register

    unknown = sorted(set(options) - set(SharingOptions.names()))
    if unknown:
        raise ValueError(
            f"options ({unknown}) are not sharing options; known: "
            f"{list(SharingOptions.names())}"
        )
    sharing = SharingOptions(**options)
    with open(config, encoding="utf-8") as f:
        train_config = yaml.safe_load(f)
    encoder = train_config.get("encoder")
    if encoder not in _SOURCE_ENCODERS:
        raise ValueError(
            f"{config}: encoder ({encoder!r}) must be one of {list(_SOURCE_ENCODERS)}"
        )
    conf = dict(train_config.get("encoder_conf") or {})
    source_sharing = SharingOptions.from_conf(conf)
    if source_sharing.unshared() != source_sharing:
        raise ValueError(
            f"{config}: the encoder already shares weights "
            f"({source_sharing.changed()}); compress an unshared Conformer"
        )
    conf = {k: v for k, v in conf.items() if k not in SharingOptions.names()}
    conf.update(sharing.changed())
    new_config = dict(train_config, encoder=ENCODER_NAME, encoder_conf=conf)

    register()
    source = ASRTask.build_model_from_file(config, model_file, "cpu")[0]
    os.makedirs(out_dir, exist_ok=True)
    config_out = os.path.join(out_dir, "config.yaml")
    with open(config_out + ".tmp", "w", encoding="utf-8") as f:
        yaml.safe_dump(new_config, f, sort_keys=False)
    os.replace(config_out + ".tmp", config_out)
    target = ASRTask.build_model_from_file(config_out, None, "cpu")[0]

    report = compress_encoder(source.encoder.state_dict(), target.encoder, init)
    state = target.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("encoder."):
            state[key] = value
    target.load_state_dict(state, strict=True)
    model_out = os.path.join(out_dir, "model.pth")
    torch.save(target.state_dict(), model_out + ".tmp")
    os.replace(model_out + ".tmp", model_out)
    return dataclasses.replace(
        report,
        model_parameters_before=count_parameters(source),
        model_parameters_after=count_parameters(target),
    )


def get_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "compress",
        "Compress a trained ESPnet Conformer ASR model into a "
        "shared_conformer (truncated SVD for low-rank projections, the first or "
        "mean of the replaced layers for shared modules), ready to decode or "
        "fine-tune.",
    )
    add_model_arguments(parser)
    parser.add_argument("--out_dir", required=True, help="gets config.yaml, model.pth")
    _add_sharing_arguments(parser)
    parser.add_argument(
        "--init",
        choices=INIT_CHOICES,
        default="first",
        help="what a tensor replacing several layers' tensors starts as",
    )
    return parser


def _add_sharing_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per field of :class:`SharingOptions`, from its metadata."""
    group = parser.add_argument_group("sharing options of the compressed encoder")
    for option in dataclasses.fields(SharingOptions):
        # argparse formats help with %: the schedule's "i % U" needs escaping.
        help = option.metadata["help"].replace("%", "%%")
        kwargs: Dict[str, Any] = dict(default=option.default, help=help)
        choices = option.metadata["choices"] or None
        if option.type is bool:
            kwargs.update(action="store_true")
        elif option.name == "repeat_schedule":
            kwargs.update(type=_schedule_argument, help=f"{help} (comma-separated)")
        elif _is_list(option.type):
            kwargs.update(nargs="+", choices=choices)
        elif choices:
            kwargs.update(choices=choices)
        else:
            kwargs.update(type=int)
        group.add_argument(f"--{option.name}", **kwargs)


def _is_list(annotation: Any) -> bool:
    """Whether ``annotation`` is ``Tuple[X, ...]`` or ``Optional[Tuple[X, ...]]``."""
    arms = (annotation, *typing.get_args(annotation))
    return any(typing.get_origin(arm) is tuple for arm in arms)


def _schedule_argument(value: str):
    """``cyclic``, ``consecutive``, or comma-separated block indices."""
    if value in REPEAT_SCHEDULES:
        return value
    try:
        return [int(i) for i in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is none of {list(REPEAT_SCHEDULES)} nor comma-separated "
            "block indices"
        ) from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    options = {name: getattr(args, name) for name in SharingOptions.names()}
    try:
        report = compress_model(
            args.config, args.model, args.out_dir, options, args.init
        )
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.format())
    print(f"wrote {args.out_dir}/config.yaml and {args.out_dir}/model.pth")
    return 0


if __name__ == "__main__":
    sys.exit(main())
