"""The sharing plan: which weights each virtual layer of the encoder uses.

A :class:`SharingPlan` is plain data, built and validated once from the
encoder's options; the modules only read it. It imports no torch, so configs
can be checked and parameter budgets computed without building a model.

Terms (as in DESIGN.md): ``V`` virtual layers (``num_blocks``), ``U`` unique
blocks held in memory; a block holds up to four module *kinds*:
``ffn_macaron`` (first, half-step feed-forward), ``mhsa``, ``conv`` and
``ffn``.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

__all__ = [
    "LOWRANK_SHARED_FACTORS",
    "MODULE_KINDS",
    "REPEAT_SCHEDULES",
    "TIED_PROJECTIONS",
    "Projection",
    "SharingPlan",
]

#: Module kinds in the order a Conformer block runs them.
MODULE_KINDS: Tuple[str, ...] = ("ffn_macaron", "mhsa", "conv", "ffn")
REPEAT_SCHEDULES: Tuple[str, ...] = ("cyclic", "consecutive")
TIED_PROJECTIONS: Tuple[str, ...] = ("none", "qk", "qkv")
LOWRANK_SHARED_FACTORS: Tuple[str, ...] = ("none", "in", "out")

# Attribute of ESPnet's EncoderLayer that holds each kind.
_ATTRIBUTE = {
    "ffn_macaron": "feed_forward_macaron",
    "mhsa": "self_attn",
    "conv": "conv_module",
    "ffn": "feed_forward",
}


@dataclass(frozen=True)
class Projection:
    """One weight matrix ``W`` (``out_features`` x ``in_features``) of a block.

    ``name`` is the attribute inside its module (``linear_q``, ``w_1``,
    ``pointwise_conv1``, ...); ``kind`` plus ``name`` is the projection's
    *position*, which is what a shared low-rank factor is shared across.
    """

    kind: str
    name: str
    in_features: int
    out_features: int
    bias: bool


@dataclass(frozen=True)
class SharingPlan:
    """Which block, module instance and low-rank factor each layer uses.

    Build it with :meth:`from_options`, which validates every option and
    raises ``ValueError`` naming the option and its value.
    """

    num_layers: int
    num_unique_blocks: int
    schedule: Tuple[int, ...]
    kinds: Tuple[str, ...]
    shared_modules: Tuple[str, ...]
    tie_macaron_ffn: bool
    tie_attention_projections: str
    lowrank_rank: Optional[int]
    lowrank_modules: Tuple[str, ...]
    lowrank_shared_factor: str
    per_layer_norms: bool
    output_size: int
    linear_units: int
    relative_attention: bool

    @classmethod
    def from_options(
        cls,
        *,
        num_blocks: int,
        output_size: int,
        linear_units: int,
        macaron_style: bool,
        use_cnn_module: bool,
        positionwise_layer_type: str = "linear",
        relative_attention: bool = True,
        num_unique_blocks: Optional[int] = None,
        repeat_schedule: Union[str, Sequence[int]] = "cyclic",
        share_across_layers: Sequence[str] = (),
        tie_macaron_ffn: bool = False,
        tie_attention_projections: str = "none",
        lowrank_rank: Optional[int] = None,
        lowrank_modules: Optional[Sequence[str]] = None,
        lowrank_shared_factor: str = "none",
        per_layer_norms: bool = False,
    ) -> "SharingPlan":
        """Validate the encoder's sharing options and turn them into a plan."""
        if num_blocks < 1:
            raise ValueError(f"num_blocks ({num_blocks}) must be at least 1")
        num_layers = num_blocks
        kinds = tuple(
            k
            for k in MODULE_KINDS
            if (k != "ffn_macaron" or macaron_style) and (k != "conv" or use_cnn_module)
        )

        if num_unique_blocks is None:
            num_unique_blocks = num_layers
        if not 1 <= num_unique_blocks <= num_layers:
            raise ValueError(
                f"num_unique_blocks ({num_unique_blocks}) must be between 1 and "
                f"num_blocks ({num_layers})"
            )
        schedule = _schedule(repeat_schedule, num_layers, num_unique_blocks)

        shared = _module_list("share_across_layers", share_across_layers, kinds)
        if tie_macaron_ffn and not macaron_style:
            raise ValueError(
                "tie_macaron_ffn (True) needs macaron_style: without it a block "
                "has no macaron feed-forward to tie"
            )
        if tie_macaron_ffn and "ffn_macaron" in shared and "ffn" not in shared:
            raise ValueError(
                "tie_macaron_ffn (True) contradicts share_across_layers "
                f"({list(shared)}): a tied macaron FFN is its block's own FFN, "
                "so it can be shared across layers only together with 'ffn'"
            )
        if tie_attention_projections not in TIED_PROJECTIONS:
            raise ValueError(
                f"tie_attention_projections ({tie_attention_projections!r}) must be "
                f"one of {list(TIED_PROJECTIONS)}"
            )

        if lowrank_shared_factor not in LOWRANK_SHARED_FACTORS:
            raise ValueError(
                f"lowrank_shared_factor ({lowrank_shared_factor!r}) must be one of "
                f"{list(LOWRANK_SHARED_FACTORS)}"
            )
        if lowrank_rank is None:
            if lowrank_modules is not None:
                raise ValueError(
                    f"lowrank_modules ({lowrank_modules}) needs lowrank_rank: "
                    "without a rank nothing is factorized"
                )
            if lowrank_shared_factor != "none":
                raise ValueError(
                    f"lowrank_shared_factor ({lowrank_shared_factor!r}) needs "
                    "lowrank_rank: there are no factors to share"
                )
            lowrank = ()
        else:
            if lowrank_modules is None:
                lowrank = kinds
            else:
                lowrank = _module_list("lowrank_modules", lowrank_modules, kinds)
            if positionwise_layer_type != "linear" and (
                {"ffn", "ffn_macaron"} & set(lowrank)
            ):
                raise ValueError(
                    f"lowrank_modules ({list(lowrank)}) factorizes the feed-forward "
                    "modules, which needs positionwise_layer_type 'linear', not "
                    f"{positionwise_layer_type!r}; leave 'ffn' and 'ffn_macaron' "
                    "out of lowrank_modules"
                )

        plan = cls(
            num_layers=num_layers,
            num_unique_blocks=num_unique_blocks,
            schedule=schedule,
            kinds=kinds,
            shared_modules=shared,
            tie_macaron_ffn=tie_macaron_ffn,
            tie_attention_projections=tie_attention_projections,
            lowrank_rank=lowrank_rank,
            lowrank_modules=lowrank,
            lowrank_shared_factor=lowrank_shared_factor,
            per_layer_norms=per_layer_norms,
            output_size=output_size,
            linear_units=linear_units,
            relative_attention=relative_attention,
        )
        if lowrank_rank is not None:
            plan._check_rank()
        return plan

    # -- which module instance serves where --------------------------------

    def source(self, kind: str, block: int) -> Tuple[str, int]:
        """The (kind, block) whose module instance block ``block`` runs as ``kind``.

        It is ``(kind, block)`` itself when the block owns that module.
        """
        if kind == "ffn_macaron" and self.tie_macaron_ffn:
            return self.source("ffn", block)
        if kind in self.shared_modules:
            return kind, 0
        return kind, block

    def owns(self, kind: str, block: int) -> bool:
        """Whether ``block`` holds the parameters of its ``kind`` module."""
        return self.source(kind, block) == (kind, block)

    def factor_owner(self, block: int) -> int:
        """The block owning the low-rank factors ``block`` uses (itself if unshared)."""
        return 0 if self.lowrank_shared_factor != "none" else block

    def is_lowrank(self, kind: str) -> bool:
        return kind in self.lowrank_modules

    @staticmethod
    def attribute(kind: str) -> str:
        """The attribute name of ``kind`` in a block, as in ESPnet's EncoderLayer."""
        return _ATTRIBUTE[kind]

    def tied_projections(self) -> Tuple[str, ...]:
        """Attention projections that reuse ``linear_q`` instead of owning a weight."""
        return {
            "none": (),
            "qk": ("linear_k",),
            "qkv": ("linear_k", "linear_v"),
        }[self.tie_attention_projections]

    def projections(self, kind: str) -> Tuple[Projection, ...]:
        """The factorizable weight matrices of a module kind (tied ones left out)."""
        d, f = self.output_size, self.linear_units
        if kind in ("ffn", "ffn_macaron"):
            return (
                Projection(kind, "w_1", d, f, True),
                Projection(kind, "w_2", f, d, True),
            )
        if kind == "mhsa":
            names = [
                n
                for n in ("linear_q", "linear_k", "linear_v", "linear_out")
                if n not in self.tied_projections()
            ]
            projections = [Projection(kind, n, d, d, True) for n in names]
            if self.relative_attention:
                projections.append(Projection(kind, "linear_pos", d, d, False))
            return tuple(projections)
        if kind == "conv":
            return (
                Projection(kind, "pointwise_conv1", d, 2 * d, True),
                Projection(kind, "pointwise_conv2", d, d, True),
            )
        raise KeyError(kind)

    def _check_rank(self) -> None:
        rank = self.lowrank_rank
        assert rank is not None
        if rank < 1:
            raise ValueError(f"lowrank_rank ({rank}) must be at least 1")
        for kind in self.lowrank_modules:
            for p in self.projections(kind):
                if rank >= min(p.in_features, p.out_features):
                    raise ValueError(
                        f"lowrank_rank ({rank}) must be smaller than both sides of "
                        f"every projection it factorizes; {kind}.{p.name} is "
                        f"{p.out_features} x {p.in_features} (output_size "
                        f"{self.output_size}, linear_units {self.linear_units})"
                    )


def _schedule(
    repeat_schedule: Union[str, Sequence[int]], num_layers: int, num_unique: int
) -> Tuple[int, ...]:
    if isinstance(repeat_schedule, str):
        if repeat_schedule == "cyclic":
            return tuple(i % num_unique for i in range(num_layers))
        if repeat_schedule == "consecutive":
            return tuple(i * num_unique // num_layers for i in range(num_layers))
        raise ValueError(
            f"repeat_schedule ({repeat_schedule!r}) must be one of "
            f"{list(REPEAT_SCHEDULES)} or a list of num_blocks block indices"
        )
    schedule = tuple(repeat_schedule)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in schedule):
        raise ValueError(
            f"repeat_schedule ({list(schedule)}) must list integer block indices"
        )
    if len(schedule) != num_layers:
        raise ValueError(
            f"repeat_schedule ({list(schedule)}) has {len(schedule)} entries; it "
            f"needs one block index per virtual layer, num_blocks ({num_layers})"
        )
    bad = [i for i in schedule if not 0 <= i < num_unique]
    if bad:
        raise ValueError(
            f"repeat_schedule ({list(schedule)}) names blocks {bad} outside "
            f"0..{num_unique - 1} (num_unique_blocks {num_unique})"
        )
    unused = sorted(set(range(num_unique)) - set(schedule))
    if unused:
        raise ValueError(
            f"repeat_schedule ({list(schedule)}) never uses blocks {unused}: every "
            f"one of num_unique_blocks ({num_unique}) must run at least once"
        )
    return schedule


def _module_list(
    option: str, names: Sequence[str], kinds: Tuple[str, ...]
) -> Tuple[str, ...]:
    if isinstance(names, str):
        raise ValueError(
            f"{option} ({names!r}) must be a list of module kinds, e.g. [{names!r}]"
        )
    for name in names:
        if name not in MODULE_KINDS:
            raise ValueError(
                f"{option} names an unknown module kind {name!r}; known kinds are "
                f"{list(MODULE_KINDS)}"
            )
        if name not in kinds:
            raise ValueError(
                f"{option} names {name!r}, which this encoder does not have "
                f"('ffn_macaron' needs macaron_style, 'conv' needs use_cnn_module)"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"{option} ({list(names)}) names a module kind twice")
    # Keep the block's running order, whatever order the user wrote.
    return tuple(k for k in kinds if k in names)
