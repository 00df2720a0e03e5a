"""Per-node and per-block ablation losses, and the activations of circuit nodes on task samples.

Losses here are per sequence; `pruning.vizdata` doubles them for the file.
`node_ablation_losses` ablates one more circuit node at a time. It runs several
ablations in one forward pass by repeating the batch, with a different gate per
copy, so its cost is (kept nodes) x (sequences) forward tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from tqdm.auto import tqdm

from inference.circuit import apply_circuit, circuit_masks, node_locations
from inference.hook_utils import hook_recorder
from pruning.data import PairBatch, make_batch, pair_logits, sequence_losses
from pruning.masks import gated_interventions
from pruning.search import circuit_loss
from pruning.train import frozen, gated_task_loss
from pruning.vizdata import value_storage_dtype

NODES_PER_FORWARD = 8


def _repeat_batch(batch: PairBatch, copies: int) -> PairBatch:
    return PairBatch(
        tokens=batch.tokens.repeat(copies, 1),
        lengths=batch.lengths.repeat(copies),
        target=batch.target.repeat(copies),
        alt=batch.alt.repeat(copies),
        is_patch=batch.is_patch.repeat(copies),
    )


@torch.no_grad()
def node_ablation_losses(
    model, circuit, means, batch: PairBatch, *, scale=1.0, shift=0.0, progress=False
) -> dict[str, list[float]]:
    """Return location -> per-node loss with that circuit node also ablated, in circuit order."""
    config = model.config
    keep = {loc: mask.float() for loc, mask in circuit_masks(config, circuit).items()}
    nodes = [(loc, int(i)) for loc in node_locations(config) for i in circuit.get(loc, [])]
    n_sequences = len(batch)
    losses: list[float] = []

    chunks = range(0, len(nodes), NODES_PER_FORWARD)
    for start in tqdm(chunks, desc="node ablations", disable=not progress, leave=False):
        part = nodes[start : start + NODES_PER_FORWARD]
        gates = {loc: mask.repeat(len(part), 1) for loc, mask in keep.items()}  # (copies, width)
        for copy, (loc, node) in enumerate(part):
            gates[loc][copy, node] = 0.0
        # One gate row per sequence: (copies * n_sequences, 1, width).
        gates = {
            loc: g.repeat_interleave(n_sequences, dim=0).unsqueeze(1) for loc, g in gates.items()
        }
        repeated = _repeat_batch(batch, len(part))
        with hook_recorder(regex=None, interventions=gated_interventions(gates, means)):
            logits = pair_logits(model, repeated)
        per_sequence = sequence_losses(logits, repeated, scale, shift)
        losses.extend(per_sequence.view(len(part), n_sequences).mean(dim=1).tolist())

    result: dict[str, list[float]] = {loc: [] for loc in node_locations(config)}
    for (loc, _), loss in zip(nodes, losses, strict=True):
        result[loc].append(loss)
    return result


def first_order_node_losses(
    model, circuit, means, batch: PairBatch, *, scale=1.0, shift=0.0
) -> dict[str, list[float]]:
    """Estimate each circuit node's ablation loss from one backward pass.

    With every gate at its circuit value (1 inside, 0 outside), closing node i
    changes the loss by about -dL/dgate_i, so the estimate is loss - dL/dgate_i.
    """
    config = model.config
    gates = {
        loc: mask.float().requires_grad_(True)
        for loc, mask in circuit_masks(config, circuit).items()
    }
    with frozen(model):
        loss = gated_task_loss(model, gates, means, batch, scale, shift)
        loss.backward()
    base = float(loss.detach())
    result: dict[str, list[float]] = {loc: [] for loc in node_locations(config)}
    for loc in node_locations(config):
        grad = gates[loc].grad
        result[loc] = [base - float(grad[int(i)]) for i in circuit.get(loc, [])]
    return result


def block_ablation_losses(model, circuit, means, batch, *, scale=1.0, shift=0.0) -> dict:
    """Return "<i>.attn" / "<i>.mlp" -> loss with that block's circuit nodes also ablated."""
    empty = torch.zeros(0, dtype=torch.long)
    result = {}
    for layer in range(model.config.n_layer):
        for block in ("attn", "mlp"):
            prefix = f"{layer}.{block}."
            reduced = {
                loc: (empty if loc.startswith(prefix) else ids) for loc, ids in circuit.items()
            }
            result[f"{layer}.{block}"] = circuit_loss(
                model, reduced, means, batch, scale=scale, shift=shift
            )
    return result


@torch.no_grad()
def task_sample_activations(
    model, circuit: Mapping[str, torch.Tensor], means, pairs, *, record=None
):
    """Run the circuit on task pairs and return (tokens, activations, lengths).

    `tokens` is (N, T) with the N/2 `inputs` first and the N/2 patched sequences
    second, right-padded with 0. `activations` maps location -> node id ->
    (N, T) activations, zero after each sequence's end, of the nodes in `record`
    (default: every circuit node). They are float16 (float32 if a value would
    overflow) views of one buffer per location, so a file stores one tensor per
    location instead of one per node.
    """
    record = circuit if record is None else record
    batch = make_batch(pairs, model.config.block_size)
    locations = [loc for loc, ids in record.items() if len(ids)]
    activations: dict[str, dict[int, torch.Tensor]] = {}
    if locations:
        pattern = "|".join(re.escape(loc) for loc in locations)
        with apply_circuit(model, circuit, means, regex=pattern) as records:
            pair_logits(model, batch)
        positions = torch.arange(batch.tokens.shape[1])
        valid = positions[None, :] < batch.lengths[:, None]  # (N, T)
        for loc in locations:
            ids = record[loc].tolist()
            node_values = (records[loc][:, :, ids] * valid[:, :, None]).permute(2, 0, 1)
            node_values = node_values.contiguous().to(value_storage_dtype(node_values))  # (n, N, T)
            activations[loc] = {node: node_values[column] for column, node in enumerate(ids)}
    return batch.tokens, activations, batch.lengths
