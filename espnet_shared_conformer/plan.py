"""The sharing options and the sharing plan they give an encoder.

:class:`SharingOptions` defines each option the encoder adds to ESPnet's
Conformer once: its name, default, allowed values and check. A
:class:`SharingPlan`, built from the options and the Conformer's own, says
which weights each virtual layer uses; the modules only read it. Both are
plain data and import no torch, so configs can be checked without building a
model.

Terms (as in README.md, "Options"): ``V`` virtual layers (``num_blocks``),
``U`` unique blocks held in memory; a block holds up to four module *kinds*:
``ffn_macaron`` (first, half-step feed-forward), ``mhsa``, ``conv`` and
``ffn``.
"""

from dataclasses import dataclass, field, fields, replace
from typing import (
    Any,
    Callable,
    Dict,
    Mapping,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

from typeguard import TypeCheckError, check_type

__all__ = [
    "LOWRANK_SHARED_FACTORS",
    "MODULE_KINDS",
    "REPEAT_SCHEDULES",
    "TIED_PROJECTIONS",
    "OptionGroup",
    "Projection",
    "SharingOptions",
    "SharingPlan",
    "option",
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


def _at_least_one(name: str, value: Optional[int], choices: Tuple[str, ...]) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} ({value}) must be at least 1")


def _one_of(name: str, value: str, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} ({value!r}) must be one of {list(choices)}")


def _schedule(
    name: str, value: Union[str, Tuple[int, ...]], choices: Tuple[str, ...]
) -> None:
    if isinstance(value, str):
        if value not in choices:
            raise ValueError(
                f"{name} ({value!r}) must be one of {list(choices)} or a list of "
                "num_blocks block indices"
            )
    elif not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise ValueError(f"{name} ({list(value)}) must list integer block indices")


def _module_kinds(
    name: str, value: Optional[Tuple[str, ...]], choices: Tuple[str, ...]
) -> None:
    if value is None:
        return
    for kind in value:
        if kind not in choices:
            raise ValueError(
                f"{name} names an unknown module kind {kind!r}; known kinds are "
                f"{list(choices)}"
            )
    if len(set(value)) != len(value):
        raise ValueError(f"{name} ({list(value)}) names a module kind twice")


def option(
    default: Any,
    help: str,
    check: Optional[Callable[[str, Any, Tuple[str, ...]], None]] = None,
    choices: Tuple[str, ...] = (),
    shares: bool = True,
) -> Any:
    """A field of an :class:`OptionGroup`: its default, and as metadata its
    ``help``, its ``check`` (raising ``ValueError`` naming option and value),
    the ``choices`` the check allows and whether the option ``shares``
    weights."""
    return field(
        default=default,
        metadata=dict(help=help, check=check, choices=choices, shares=shares),
    )


_Group = TypeVar("_Group", bound="OptionGroup")


class OptionGroup:
    """What a frozen dataclass of ``encoder_conf`` options, each field made by
    :func:`option`, has in common: its checks, its names and its conf.

    A subclass's ``__post_init__`` calls :meth:`_check_fields` first, then
    checks the combinations of its options.
    """

    def _check_fields(self) -> None:
        """Keep lists as tuples, then check each option's type and value on its
        own: ``TypeCheckError`` (as ESPnet's typechecked constructors raise)
        for a wrong type, the option's ``check`` for an impossible value."""
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, spec.name, value)
            try:
                check_type(value, spec.type)
            except TypeCheckError:
                raise TypeCheckError(
                    f"{spec.name} ({value!r}) must be {_type_name(spec.type)}"
                ) from None
            check = spec.metadata["check"]
            if check is not None:
                check(spec.name, value, spec.metadata["choices"])

    @classmethod
    def names(cls) -> Tuple[str, ...]:
        """The options' names, as ``encoder_conf`` spells them."""
        return tuple(spec.name for spec in fields(cls))

    @classmethod
    def from_conf(cls: Type[_Group], conf: Mapping[str, Any]) -> _Group:
        """The options of this group among ``conf``'s entries (an
        ``encoder_conf``; other entries are ignored, missing options take
        their defaults)."""
        return cls(**{name: conf[name] for name in cls.names() if name in conf})

    def to_conf(self) -> Dict[str, Any]:
        """Every option, as ``encoder_conf`` writes it (tuples as lists)."""
        conf = {}
        for name in self.names():
            value = getattr(self, name)
            conf[name] = list(value) if isinstance(value, tuple) else value
        return conf

    def changed(self) -> Dict[str, Any]:
        """The options that differ from their defaults, as :meth:`to_conf`."""
        defaults = type(self)().to_conf()
        return {k: v for k, v in self.to_conf().items() if v != defaults[k]}


@dataclass(frozen=True)
class SharingOptions(OptionGroup):
    """The options ``SharedConformerEncoder`` adds to ESPnet's Conformer.

    Each field is one option, as it is spelt in ``encoder_conf``, with its
    default; its metadata holds a one-line ``help``, the ``check`` of its
    value, the ``choices`` the check allows (for a list: each entry) and
    whether it ``shares`` weights (the low-rank options factorize each weight
    on its own). Lists, as YAML and command lines give them, are kept as
    tuples.

    Construction checks each option on its own, raising ``TypeCheckError``
    (as ESPnet's typechecked constructors do) for a wrong type and
    ``ValueError`` naming the option and its value for an impossible one;
    whether the options fit a given Conformer is the plan's check.
    """

    num_unique_blocks: Optional[int] = option(
        None,
        "(i) unique blocks U serving the num_blocks virtual layers; None: V",
        _at_least_one,
    )
    repeat_schedule: Union[str, Tuple[int, ...]] = option(
        "cyclic",
        "which block each virtual layer runs: cyclic (layer i runs block i % U), "
        "consecutive (block i * U // V), or V block indices using every block",
        _schedule,
        REPEAT_SCHEDULES,
    )
    share_across_layers: Tuple[str, ...] = option(
        (),
        "(ii) module kinds of which one instance serves every block",
        _module_kinds,
        MODULE_KINDS,
    )
    tie_macaron_ffn: bool = option(
        False, "(iii) each block's macaron FFN is its second FFN"
    )
    tie_attention_projections: str = option(
        "none",
        "(iii) qk: the key projection is the query projection; qkv: the value "
        "projection too",
        _one_of,
        TIED_PROJECTIONS,
    )
    lowrank_rank: Optional[int] = option(
        None,
        "(iv) rank r: each factorized projection W becomes B A",
        _at_least_one,
        shares=False,
    )
    lowrank_modules: Optional[Tuple[str, ...]] = option(
        None,
        "module kinds whose projections are factorized; None: every kind the block has",
        _module_kinds,
        MODULE_KINDS,
        shares=False,
    )
    lowrank_shared_factor: str = option(
        "none",
        "(iv) in: one A per projection position for all blocks; out: one B; "
        "biases stay per block",
        _one_of,
        LOWRANK_SHARED_FACTORS,
    )
    per_layer_norms: bool = option(
        False, "every virtual layer owns its LayerNorms even where blocks repeat"
    )

    def __post_init__(self) -> None:
        self._check_fields()
        if self.lowrank_rank is None and self.lowrank_modules is not None:
            raise ValueError(
                f"lowrank_modules ({list(self.lowrank_modules)}) needs lowrank_rank: "
                "without a rank nothing is factorized"
            )
        if self.lowrank_rank is None and self.lowrank_shared_factor != "none":
            raise ValueError(
                f"lowrank_shared_factor ({self.lowrank_shared_factor!r}) needs "
                "lowrank_rank: there are no factors to share"
            )

    def unshared(self) -> "SharingOptions":
        """These options with every option that shares weights at its default.

        What is left factorizes each weight on its own (``lowrank_rank``,
        ``lowrank_modules``): the options of the unrolled encoder, which
        computes what this one does when each place that uses a shared
        tensor holds a copy of it.
        """
        return replace(
            self,
            **{o.name: o.default for o in fields(self) if o.metadata["shares"]},
        )


def _type_name(annotation: Any) -> str:
    """``Optional[Tuple[str, ...]]`` -> ``'list of str or None'``, as YAML has it."""
    if get_origin(annotation) is Union:
        return " or ".join(_type_name(a) for a in get_args(annotation))
    if get_origin(annotation) is tuple:
        return f"list of {_type_name(get_args(annotation)[0])}"
    return "None" if annotation is type(None) else annotation.__name__


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

    Build it with :meth:`build`, from checked :class:`SharingOptions` and
    the Conformer options they must fit.
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
    def build(
        cls, options: SharingOptions, conformer: Mapping[str, Any]
    ) -> "SharingPlan":
        """The plan of an encoder with ``options`` and ESPnet Conformer options.

        ``conformer`` holds at least ``num_blocks``, ``output_size``,
        ``linear_units``, ``macaron_style``, ``use_cnn_module``,
        ``positionwise_layer_type`` and ``selfattention_layer_type`` (an
        ``encoder_conf`` with ESPnet's defaults filled in). Raises
        ``ValueError`` naming the option and its value where the options do
        not fit this Conformer.
        """
        num_layers = conformer["num_blocks"]
        if num_layers < 1:
            raise ValueError(f"num_blocks ({num_layers}) must be at least 1")
        kinds = tuple(
            k
            for k in MODULE_KINDS
            if (k != "ffn_macaron" or conformer["macaron_style"])
            and (k != "conv" or conformer["use_cnn_module"])
        )

        num_unique_blocks = options.num_unique_blocks
        if num_unique_blocks is None:
            num_unique_blocks = num_layers
        if num_unique_blocks > num_layers:
            raise ValueError(
                f"num_unique_blocks ({num_unique_blocks}) must be between 1 and "
                f"num_blocks ({num_layers})"
            )
        schedule = _schedule_of(options.repeat_schedule, num_layers, num_unique_blocks)

        shared = _present("share_across_layers", options.share_across_layers, kinds)
        if options.tie_macaron_ffn and "ffn_macaron" not in kinds:
            raise ValueError(
                "tie_macaron_ffn (True) needs macaron_style: without it a block "
                "has no macaron feed-forward to tie"
            )
        if options.tie_macaron_ffn and "ffn_macaron" in shared and "ffn" not in shared:
            raise ValueError(
                "tie_macaron_ffn (True) contradicts share_across_layers "
                f"({list(shared)}): a tied macaron FFN is its block's own FFN, "
                "so it can be shared across layers only together with 'ffn'"
            )

        lowrank: Tuple[str, ...] = ()
        if options.lowrank_rank is not None:
            lowrank = kinds
            if options.lowrank_modules is not None:
                lowrank = _present("lowrank_modules", options.lowrank_modules, kinds)
            positionwise = conformer["positionwise_layer_type"]
            if positionwise != "linear" and {"ffn", "ffn_macaron"} & set(lowrank):
                raise ValueError(
                    f"lowrank_modules ({list(lowrank)}) factorizes the feed-forward "
                    "modules, which needs positionwise_layer_type 'linear', not "
                    f"{positionwise!r}; leave 'ffn' and 'ffn_macaron' out of "
                    "lowrank_modules"
                )

        plan = cls(
            num_layers=num_layers,
            num_unique_blocks=num_unique_blocks,
            schedule=schedule,
            kinds=kinds,
            shared_modules=shared,
            tie_macaron_ffn=options.tie_macaron_ffn,
            tie_attention_projections=options.tie_attention_projections,
            lowrank_rank=options.lowrank_rank,
            lowrank_modules=lowrank,
            lowrank_shared_factor=options.lowrank_shared_factor,
            per_layer_norms=options.per_layer_norms,
            output_size=conformer["output_size"],
            linear_units=conformer["linear_units"],
            relative_attention=conformer["selfattention_layer_type"] != "selfattn",
        )
        if plan.lowrank_rank is not None:
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
        for kind in self.lowrank_modules:
            for p in self.projections(kind):
                if rank >= min(p.in_features, p.out_features):
                    raise ValueError(
                        f"lowrank_rank ({rank}) must be smaller than both sides of "
                        f"every projection it factorizes; {kind}.{p.name} is "
                        f"{p.out_features} x {p.in_features} (output_size "
                        f"{self.output_size}, linear_units {self.linear_units})"
                    )


def _schedule_of(
    repeat_schedule: Union[str, Tuple[int, ...]], num_layers: int, num_unique: int
) -> Tuple[int, ...]:
    """The block each of ``num_layers`` virtual layers runs."""
    if repeat_schedule == "cyclic":
        return tuple(i % num_unique for i in range(num_layers))
    if repeat_schedule == "consecutive":
        return tuple(i * num_unique // num_layers for i in range(num_layers))
    schedule = repeat_schedule
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


def _present(
    option: str, names: Tuple[str, ...], kinds: Tuple[str, ...]
) -> Tuple[str, ...]:
    """``names`` (checked module kinds) in running order, all of them in ``kinds``."""
    for name in names:
        if name not in kinds:
            raise ValueError(
                f"{option} names {name!r}, which this encoder does not have "
                f"('ffn_macaron' needs macaron_style, 'conv' needs use_cnn_module)"
            )
    # Keep the block's running order, whatever order the user wrote.
    return tuple(k for k in kinds if k in names)
