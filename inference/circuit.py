"""Circuits: sets of kept nodes, and running a model with everything else mean-ablated.

A node is one channel at one node location. Node locations, per layer `<i>`, are the hooks the pruning
method of Gao et al. (2025) puts masks on: `<i>.attn.act_in`, `<i>.attn.q`, `<i>.attn.k`,
`<i>.attn.v`, `<i>.attn.resid_delta`, `<i>.mlp.act_in`, `<i>.mlp.post_act`, `<i>.mlp.resid_delta`.
A circuit maps node locations to 1-D LongTensors (or lists) of kept channel ids, like the
`circuit_data` of a viz_data file. A location it does not name has no kept nodes. `apply_circuit`
is the one place where a circuit is run: the pruner, its verifier and the web app all call it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

from inference.checks import channel_ids, check_channel_range
from inference.config import GPTConfig
from inference.hook_utils import Intervention, hook_recorder

BLOCK_NODE_LOCATIONS = (
    "attn.act_in",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.resid_delta",
    "mlp.act_in",
    "mlp.post_act",
    "mlp.resid_delta",
)

Circuit = Mapping[str, torch.Tensor]

# Matches `<layer>.<block location>` with the layer in ASCII digits, because str.isdigit also
# accepts "²" and "١", which int() rejects or reads as another number.
_LOCATION = re.compile(r"([0-9]+)\.(.+)")


def node_locations(config: GPTConfig) -> list[str]:
    """Return every node location of a model, in forward order."""
    return [f"{i}.{loc}" for i in range(config.n_layer) for loc in BLOCK_NODE_LOCATIONS]


def location_width(config: GPTConfig, location: str) -> int:
    """Number of channels (nodes) at a node location such as `3.attn.q`.

    Raises TypeError for a location that is not a string and KeyError for one the model lacks.
    """
    if not isinstance(location, str):
        raise TypeError(
            f"node location must be a string such as '0.attn.q'; got {type(location).__name__}"
        )
    match = _LOCATION.fullmatch(location)
    layer, block_loc = match.groups() if match else ("", "")
    if not layer or int(layer) >= config.n_layer or block_loc not in BLOCK_NODE_LOCATIONS:
        raise KeyError(
            f"{location!r} is not a node location of this model; valid: "
            f"0..{config.n_layer - 1} followed by one of {', '.join(BLOCK_NODE_LOCATIONS)}"
        )
    if block_loc in ("attn.act_in", "mlp.act_in"):
        return config.d_model_in
    if block_loc in ("attn.q", "attn.k", "attn.v"):
        return config.n_head * config.d_head
    if block_loc == "mlp.post_act":
        return config.d_mlp
    return config.d_model


def num_total_nodes(config: GPTConfig) -> int:
    return sum(location_width(config, loc) for loc in node_locations(config))


def circuit_masks(config: GPTConfig, circuit: Circuit) -> dict[str, torch.Tensor]:
    """Boolean keep-masks for every node location (all False where the circuit names nothing).

    Each error names the location. Raises `KeyError` for a location the model does not have,
    `TypeError` for channel ids that are not integers and `ValueError` for ids with more than one
    dimension. Ids outside 0..width-1 raise `OutOfRangeError`, an IndexError and a ValueError.
    """
    locations = node_locations(config)
    unknown = sorted(set(circuit) - set(locations))
    if unknown:
        raise KeyError(
            f"circuit names locations this model does not have: {unknown}; valid locations are "
            f"0..{config.n_layer - 1} followed by one of {', '.join(BLOCK_NODE_LOCATIONS)}"
        )
    masks = {}
    for loc in locations:
        width = location_width(config, loc)
        mask = torch.zeros(width, dtype=torch.bool)
        kept = circuit.get(loc)
        if kept is not None:
            mask[_kept_channel_ids(loc, kept, width)] = True
        masks[loc] = mask
    return masks


def _kept_channel_ids(location: str, kept: object, width: int) -> torch.Tensor:
    """Return the kept channel ids at `location` as a 1-D LongTensor, checked against `width`.

    Negative ids are rejected instead of counting from the end. See `inference.checks.channel_ids`
    for the types accepted.
    """
    name = f"circuit[{location!r}]"
    ids = channel_ids(kept, name)
    check_channel_range(ids, width, name, "the location")
    return ids


def keep_or_mean(keep: torch.Tensor, mean: torch.Tensor) -> Intervention:
    """Keep channels where `keep` is True and set the others to `mean`.

    `keep` and `mean` are copied to the activation's device (and `mean` to its dtype) on the first
    forward pass that needs them there, and the copies are reused.
    """
    copies: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def fn(x: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype)
        if key not in copies:
            copies[key] = (keep.to(x.device), mean.to(device=x.device, dtype=x.dtype))
        keep_here, mean_here = copies[key]
        return torch.where(keep_here, x, mean_here)

    return fn


def check_means(config: GPTConfig, means: Mapping[str, torch.Tensor]) -> None:
    """Raise unless `means` has a (width,) tensor for every node location of the model."""
    locations = node_locations(config)
    missing = sorted(set(locations) - set(means))
    if missing:
        raise KeyError(
            f"means are missing for node locations {missing}; compute them with mean_activations"
        )
    for loc in locations:
        mean = means[loc]
        width = location_width(config, loc)
        if not isinstance(mean, torch.Tensor):
            raise TypeError(
                f"means[{loc!r}] is a {type(mean).__name__}; expected a tensor of shape ({width},)"
            )
        if tuple(mean.shape) != (width,):
            raise ValueError(
                f"means[{loc!r}] has shape {tuple(mean.shape)}, expected ({width},): one mean "
                "activation per channel, as mean_activations returns"
            )


def circuit_interventions(
    config: GPTConfig, circuit: Circuit, means: Mapping[str, torch.Tensor], invert: bool = False
) -> dict[str, Intervention]:
    """Interventions that mean-ablate every node outside `circuit` (or, with `invert`, inside it).

    Checks the circuit and the means once here, so a bad input raises before any forward pass.
    """
    check_means(config, means)
    interventions = {}
    for loc, keep in circuit_masks(config, circuit).items():
        if invert:
            keep = ~keep
        if not bool(keep.all()):
            interventions[loc] = keep_or_mean(keep, means[loc])
    return interventions


@contextmanager
def apply_circuit(
    model: torch.nn.Module,
    circuit: Circuit,
    means: Mapping[str, torch.Tensor],
    *,
    invert: bool = False,
    regex: str | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Run `model` inside this block with every node outside `circuit` set to its mean activation.

    `means` maps each node location to a (width,) tensor of mean activations over the pretraining
    distribution. With `invert=True` the circuit's own nodes are ablated instead (necessity checks).
    Hooks matching `regex` are recorded into the yielded dict (by default none). The circuit and the
    means are checked on entry (see `circuit_masks` and `check_means`), not on every forward pass.

        with apply_circuit(model, viz.circuit_data, viz.ablation_means):
            logits = model(idx)[0]
    """
    interventions = circuit_interventions(model.config, circuit, means, invert=invert)
    with hook_recorder(regex=regex, interventions=interventions) as records:
        yield records


@torch.no_grad()
def mean_activations(model: torch.nn.Module, batches) -> dict[str, torch.Tensor]:
    """Mean activation of every node over all positions of `batches` (iterable of (B, T) token ids).

    These are the position-independent means that mean ablation substitutes for pruned nodes.
    """
    locations = node_locations(model.config)
    sums: dict[str, torch.Tensor] = {}
    count = 0
    pattern = "|".join(loc.replace(".", r"\.") for loc in locations)
    for idx in batches:
        with hook_recorder(regex=pattern) as rec:
            model(idx)
        for loc in locations:
            flat = rec[loc].reshape(-1, rec[loc].shape[-1]).double()  # (B * T, width)
            sums[loc] = sums.get(loc, 0) + flat.sum(dim=0)
        count += idx.numel()
    if count == 0:
        raise ValueError("mean_activations needs at least one non-empty batch of tokens")
    return {loc: (total / count).float() for loc, total in sums.items()}
