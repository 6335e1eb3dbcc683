"""Parameter counts: the counting rule, and a report for an ASR config.

The rule: embedding + ``after_norm`` + each distinct module
instance once + the LayerNorms of each block (or of each virtual layer with
``per_layer_norms``); a low-rank projection counts ``r*(in+out)`` plus its
bias, and a shared factor counts once. :func:`encoder_block_parameters`
applies the rule from the options alone (no torch); the report counts the
real model and sets it beside the *virtual-equivalent* encoder, the unshared
full-rank Conformer with the same virtual depth.

For an encoder that streams the report also gives the memory one stream's
caches take between chunks: at its ``chunk_size`` and ``num_left_chunks``,
or, for a model trained with dynamic chunks that evaluates at full context
(``chunk_size`` 0), at :data:`NOMINAL_CHUNK` frames and
:data:`NOMINAL_LEFT_CHUNKS` left chunks where ``num_left_chunks`` is -1
(640 ms chunks and 2.56 s of left context with a 10 ms hop and 4x
subsampling); from
:func:`espnet_shared_conformer.streaming.cache_size`: per virtual layer
``2 d N C`` floats of keys and values (``N`` left chunks of ``C`` frames) and
``d (k - 1)`` of the causal convolution's left context, plus the input frames
the front end holds. Weights are shared across virtual layers, caches are
not: on an always-on device they are memory next to the weights.

Usage::

    python -m espnet_shared_conformer.params --config conf/train_asr.yaml \\
        [--token_list data/token_list/bpe_unigram5000/tokens.txt | --vocab_size 5000]
"""

import argparse
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

import yaml

from espnet_shared_conformer._cli import command_parser
from espnet_shared_conformer.config_dump import is_config_dump, training_options
from espnet_shared_conformer.plan import Projection, SharingOptions, SharingPlan

if TYPE_CHECKING:  # streaming imports torch, which the rule does without
    from espnet_shared_conformer.streaming import CacheSize

__all__ = [
    "NOMINAL_CHUNK",
    "NOMINAL_LEFT_CHUNKS",
    "ParameterReport",
    "count_parameters",
    "encoder_block_parameters",
    "get_parser",
    "main",
    "parameters_by_part",
    "virtual_equivalent_options",
]

_PARTS = (
    "frontend",
    "specaug",
    "normalize",
    "preencoder",
    "encoder",
    "postencoder",
    "decoder",
    "ctc",
    "joint_network",
)


def virtual_equivalent_options(options: Mapping[str, Any]) -> Dict[str, Any]:
    """The options of the unshared, full-rank Conformer with the same virtual depth."""
    return {k: v for k, v in options.items() if k not in SharingOptions.names()}


def encoder_block_parameters(options: Mapping[str, Any]) -> int:
    """Unique parameters of a shared Conformer encoder, without its embedding.

    ``options`` are the encoder's constructor arguments (``encoder_conf``);
    missing ones take the encoder's defaults. The embedding is left out
    because its size depends on the input layer's own arithmetic; count it
    from the module. Nothing is built, but reading the defaults imports the
    encoder (and so torch and ESPnet).
    """
    from espnet_shared_conformer.encoder import default_options

    o = {**default_options(), **options}
    d = o["output_size"]
    plan = SharingPlan.build(SharingOptions.from_conf(o), o)

    total = 0
    for block in range(plan.num_unique_blocks):
        for kind in plan.kinds:
            if plan.owns(kind, block):
                total += _module_parameters(plan, o, kind, block)
        if o["concat_after"]:
            total += 2 * d * d + d
    norms_per_layer = 2 + ("ffn_macaron" in plan.kinds) + 2 * ("conv" in plan.kinds)
    norm_holders = plan.num_layers if plan.per_layer_norms else plan.num_unique_blocks
    total += norm_holders * norms_per_layer * 2 * d
    if o["normalize_before"]:
        total += 2 * d  # after_norm
    return total


def _module_parameters(
    plan: SharingPlan, o: Mapping[str, Any], kind: str, block: int
) -> int:
    d = o["output_size"]
    total = sum(
        _projection_parameters(plan, o, p, block) for p in plan.projections(kind)
    )
    if kind == "mhsa":
        if plan.relative_attention:
            total += 2 * d  # pos_bias_u, pos_bias_v: heads x d_k each
        if o["qk_norm"]:
            total += 2 * 2 * (d // o["attention_heads"])
    elif kind == "conv":
        total += d * o["cnn_module_kernel"] + d  # depthwise convolution
        total += 2 * d  # BatchNorm's affine weights
    return total


def _projection_parameters(
    plan: SharingPlan, o: Mapping[str, Any], p: Projection, block: int
) -> int:
    bias = p.out_features if p.bias else 0
    if plan.is_lowrank(p.kind):
        r = plan.lowrank_rank
        a, b = r * p.in_features, p.out_features * r
        owns_shared = plan.factor_owner(block) == block
        if plan.lowrank_shared_factor == "in" and not owns_shared:
            a = 0
        if plan.lowrank_shared_factor == "out" and not owns_shared:
            b = 0
        return a + b + bias
    if p.kind in ("ffn", "ffn_macaron") and o["positionwise_layer_type"] != "linear":
        # Feed-forward made of 1-D convolutions: w_1 always has the kernel,
        # w_2 only in "conv1d" (in "conv1d-linear" it is pointwise).
        k = o["positionwise_conv_kernel_size"]
        if p.name == "w_2" and o["positionwise_layer_type"] == "conv1d-linear":
            k = 1
        return p.in_features * p.out_features * k + bias
    return p.in_features * p.out_features + bias


def count_parameters(*modules) -> int:
    """Unique parameters of torch ``modules`` together.

    A tensor shared inside a module or between them counts once (``parameters()``
    lists a module's shared tensors once already).
    """
    unique = {id(p): p for module in modules for p in module.parameters()}
    return sum(p.numel() for p in unique.values())


def parameters_by_part(model, parts: Optional[Sequence[str]] = None) -> Dict[str, int]:
    """Unique parameters of each part of ``model``, in ``parts`` order.

    ``parts`` name child modules (default: all of ``model``'s, in order); a
    name the model lacks, or that is not a module, is left out. A tensor two
    parts share counts in the first.
    """
    import torch

    if parts is None:
        parts = [name for name, _ in model.named_children()]
    counts = {}
    counted: List = []
    for name in parts:
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Module):
            # What this part adds to the parts before it.
            before = count_parameters(*counted)
            counts[name] = count_parameters(*counted, module) - before
            counted.append(module)
    return counts


#: Chunk (output frames) and left chunks at which the report sizes the cache
#: of a dynamic-chunk model whose config evaluates at full context.
NOMINAL_CHUNK = 16
NOMINAL_LEFT_CHUNKS = 4


@dataclass(frozen=True)
class ParameterReport:
    """Unique parameters per part of an ESPnet ASR model, what sharing saves,
    and for a streaming encoder the size of one stream's caches."""

    config: str
    vocab_size: int
    parts: Dict[str, int]
    total: int
    encoder: int
    encoder_virtual: int
    encoder_name: str
    # At the config's chunk_size and num_left_chunks (a dynamic-chunk model
    # at full context: the nominal chunk); None when it does not stream.
    streaming_cache: Optional["CacheSize"] = None

    @property
    def compression(self) -> float:
        """Virtual-equivalent encoder parameters per unique encoder parameter."""
        return self.encoder_virtual / self.encoder if self.encoder else 1.0

    @property
    def total_virtual(self) -> int:
        return self.total - self.encoder + self.encoder_virtual

    @classmethod
    def from_config(
        cls,
        config: str,
        vocab_size: Optional[int] = None,
        token_list: Optional[str] = None,
    ) -> "ParameterReport":
        """Build the model an ESPnet ASR config describes and count it.

        The vocabulary comes from ``token_list`` (a file, as ESPnet writes
        them), else from the config's own ``token_list``, else ``vocab_size``.
        """
        from espnet2.tasks.asr import ASRTask

        from espnet_shared_conformer._registry import register

        if not os.path.isfile(config):
            raise FileNotFoundError(f"no such config file: {config}")
        register()
        parser = ASRTask.get_parser()
        with open(config, encoding="utf-8") as f:
            resolved = yaml.safe_load(f) or {}
        if is_config_dump(resolved):
            # Loading a config is set_defaults (espnet2.utils.config_argparse):
            # do that with the options the dump holds. A hand-written config
            # still goes through --config, where a misspelt key stays an error.
            parser.set_defaults(**training_options(resolved, parser))
            argv = []
        else:
            argv = ["--config", config]
        if token_list is not None:
            argv += ["--token_list", token_list]
        args = parser.parse_args(argv)
        if args.token_list is None:
            if vocab_size is None:
                raise ValueError(
                    f"{config} names no token_list: pass --token_list or --vocab_size"
                )
            if vocab_size < 3:
                raise ValueError(f"vocab_size ({vocab_size}) must be at least 3")
            args.token_list = (
                ["<blank>"] + [f"t{i}" for i in range(vocab_size - 2)] + ["<sos/eos>"]
            )
        model = ASRTask.build_model(args)

        parts = parameters_by_part(model, _PARTS)
        total = count_parameters(model)
        parts["other"] = total - sum(parts.values())

        encoder = model.encoder
        encoder_count = count_parameters(encoder)
        options = getattr(encoder, "build_options", None)
        streaming_cache = None
        if options is None:  # not ours: nothing is shared
            virtual = encoder_count
        else:
            embed = count_parameters(encoder.embed)
            virtual = embed + encoder_block_parameters(
                virtual_equivalent_options(options)
            )
            if options["chunk_size"] > 0:
                from espnet_shared_conformer.streaming import cache_size

                streaming_cache = cache_size(options)
            elif options["dynamic_chunk_training"]:
                from espnet_shared_conformer.streaming import cache_size

                left = options["num_left_chunks"]
                streaming_cache = cache_size(
                    options,
                    chunk_size=NOMINAL_CHUNK,
                    num_left_chunks=NOMINAL_LEFT_CHUNKS if left < 0 else left,
                )
        return cls(
            config=config,
            vocab_size=len(model.token_list),
            parts=parts,
            total=total,
            encoder=encoder_count,
            encoder_virtual=virtual,
            encoder_name=args.encoder,
            streaming_cache=streaming_cache,
        )

    def format(self) -> str:
        from humanfriendly import format_number, format_size

        lines = [
            f"{self.config} (encoder: {self.encoder_name}, "
            f"vocabulary {self.vocab_size})"
        ]
        width = max(len(n) for n in self.parts) + 2
        for name, count in self.parts.items():
            if count or name in ("encoder", "decoder", "ctc"):
                lines.append(f"  {name:<{width}}{format_number(count):>14}")
        lines.append(f"  {'total':<{width}}{format_number(self.total):>14}")
        lines += [
            f"  encoder, virtual-equivalent (unshared, full rank): "
            f"{format_number(self.encoder_virtual)}",
            f"  encoder compression: {self.compression:.2f}x "
            f"(model: {self.total_virtual / self.total:.2f}x, "
            f"{format_number(self.total_virtual)} virtual)",
            f"  size: fp32 {format_size(4 * self.total)}, "
            f"int8 {format_size(self.total)}",
        ]
        if self.streaming_cache is not None:
            lines.append(_format_cache(self.streaming_cache))
        return "\n".join(lines)


def _format_cache(cache: "CacheSize") -> str:
    """One line: a stream's cache in bytes at fp32, and what it holds."""
    from humanfriendly import format_size

    left = cache.num_left_chunks
    head = (
        f"  streaming cache per stream (chunk {cache.chunk_size}, "
        f"{'all' if left < 0 else left} left chunks), fp32: "
    )
    parts = (
        f"convolutions {format_size(4 * cache.conv)}, "
        f"front end {format_size(4 * cache.front_end)}"
    )
    if cache.total is None:
        fixed = cache.conv + cache.front_end
        return (
            f"{head}{format_size(4 * fixed)} ({parts}) plus keys and values of "
            f"{format_size(4 * cache.attention_per_frame)} per output frame, "
            "unbounded (num_left_chunks -1)"
        )
    keys = cache.attention_per_frame * cache.left_frames
    return (
        f"{head}{format_size(4 * cache.total)} (keys and values "
        f"{format_size(4 * keys)}, {parts})"
    )


def get_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "params",
        "Unique parameters per part of the ASR model an ESPnet config "
        "describes, the virtual-equivalent encoder, the compression ratio and the "
        "model's size at fp32 and int8.",
    )
    parser.add_argument("--config", required=True, nargs="+", help="ASR config YAML(s)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--token_list", help="token list file (sets the vocabulary)")
    group.add_argument(
        "--vocab_size",
        type=int,
        default=5000,
        help="vocabulary size when the config names no token list",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    reports: List[str] = []
    for config in args.config:
        try:
            report = ParameterReport.from_config(
                config, args.vocab_size, args.token_list
            )
        except (OSError, ValueError) as e:
            print(f"error: {config}: {e}", file=sys.stderr)
            return 1
        reports.append(report.format())
    print("\n\n".join(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
