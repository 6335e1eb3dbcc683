"""Tiny seeded encoders and the 'unrolled' view used to check sharing."""

import logging
from typing import Dict, Iterator, Tuple

import pytest
import torch

from espnet_shared_conformer._compat import ConformerEncoder
from espnet_shared_conformer.encoder import SharedConformerEncoder

# ESPnet warns about legacy relative attention at every build; the tests build
# hundreds of encoders on purpose.
logging.getLogger().setLevel(logging.ERROR)

INPUT_SIZE = 20

#: Small enough for milliseconds per forward, big enough for every option.
TINY = dict(
    input_size=INPUT_SIZE,
    output_size=16,
    attention_heads=2,
    linear_units=24,
    num_blocks=4,
    cnn_module_kernel=5,
    dropout_rate=0.0,
    positional_dropout_rate=0.0,
    attention_dropout_rate=0.0,
    macaron_style=True,
    rel_pos_type="latest",
)


def build(seed: int = 0, **options) -> SharedConformerEncoder:
    torch.manual_seed(seed)
    return SharedConformerEncoder(**{**TINY, **options})


def build_espnet(seed: int = 0, **options) -> ConformerEncoder:
    torch.manual_seed(seed)
    return ConformerEncoder(**{**TINY, **options})


def batch(
    lengths=(40, 33, 19), seed: int = 1, dim: int = INPUT_SIZE
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random features (B, T, dim) with zeros past each length, and the lengths."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), dim, generator=g)
    x = x * (
        torch.arange(max(lengths))[None, :, None] < torch.tensor(lengths)[:, None, None]
    )
    return x, torch.tensor(lengths)


def unshared_twin(encoder: SharedConformerEncoder) -> SharedConformerEncoder:
    """The same encoder with every sharing option off (low rank kept, unshared)."""
    unshared = encoder.sharing.unshared().to_conf()
    return SharedConformerEncoder(**{**encoder.build_options, **unshared})


def _source_path(encoder: SharedConformerEncoder, path: str) -> str:
    """Where, in ``encoder``, the twin's entry ``path`` lives.

    Virtual layer i of the twin is block ``schedule[i]`` (its norms live in
    ``layer_norms[i]`` with per-layer norms).
    """
    parts = path.split(".")
    if parts[0] == "encoders":
        layer = int(parts[1])
        if encoder.plan.per_layer_norms and parts[2].startswith("norm_"):
            return ".".join(["layer_norms", str(layer)] + parts[2:])
        parts[1] = str(encoder.plan.schedule[layer])
    return ".".join(parts)


def lookup(module: torch.nn.Module, path: str):
    """Follow ``path`` by attribute access, so aliases resolve on the way."""
    for part in path.split("."):
        module = getattr(module, part)
    return module


def unrolled_entries(
    encoder: SharedConformerEncoder, twin: SharedConformerEncoder
) -> Iterator[Tuple[str, torch.Tensor]]:
    """(twin path, the tensor the shared encoder uses there), for every twin entry."""
    for path in twin.state_dict():
        yield path, lookup(encoder, _source_path(encoder, path))


def load_unrolled(encoder: SharedConformerEncoder) -> SharedConformerEncoder:
    """The unshared twin holding copies of the weights the shared encoder uses."""
    twin = unshared_twin(encoder)
    state: Dict[str, torch.Tensor] = {
        path: tensor.detach().clone()
        for path, tensor in unrolled_entries(encoder, twin)
    }
    twin.load_state_dict(state, strict=True)
    return twin


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    yield
