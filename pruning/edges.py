"""Edges of a circuit: the weights that connect its kept nodes.

`pair_data` lists, per block, the weight matrices between kept nodes of the edge
types act_in->q, act_in->k, act_in->v, v->resid_delta (attention) and
act_in->post_act, post_act->resid_delta (MLP). Each entry is
[weights (n_src x n_tgt), src ids, tgt ids, (src location, tgt location)]. When
the model's Linear layers have biases, the source id list ends with "bias" and
the matrix has one more row holding the bias of each target node.

`pair_data_connections` lists the residual-stream edges in the same format:
from each kept resid_delta channel to the same channel of every later act_in
location (attention or MLP input). The weight is the gain of that input's norm
(ln_1 or ln_2 weight) at the channel, which is the direct path apart from the
input-dependent normalization.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

ATTN_PARTS = ("q", "k", "v")


def _edge(weight, bias, src_ids, tgt_ids, src_loc, tgt_loc) -> list:
    """Build one pair_data entry from a Linear weight (out_features, in_features)."""
    matrix = weight[tgt_ids][:, src_ids].T.detach().clone()  # (n_src, n_tgt)
    src_list = [int(i) for i in src_ids]
    if bias is not None:
        matrix = torch.cat([matrix, bias[tgt_ids].detach().clone()[None, :]], dim=0)
        src_list.append("bias")
    return [matrix.float(), src_list, [int(i) for i in tgt_ids], (src_loc, tgt_loc)]


def pair_data(model, circuit: Mapping[str, torch.Tensor]) -> list:
    """Return the block edges between kept nodes (see the module docstring)."""
    config = model.config
    width = config.n_head * config.d_head
    entries = []
    for layer, block in enumerate(model.transformer.h):

        def loc(name: str, layer=layer) -> str:
            return f"{layer}.{name}"

        c_attn = block.attn.c_attn
        for part_index, part in enumerate(ATTN_PARTS):
            rows = slice(part_index * width, (part_index + 1) * width)
            bias = c_attn.bias[rows] if c_attn.bias is not None else None
            entries.append(
                _edge(
                    c_attn.weight[rows],
                    bias,
                    circuit[loc("attn.act_in")],
                    circuit[loc(f"attn.{part}")],
                    loc("attn.act_in"),
                    loc(f"attn.{part}"),
                )
            )
        c_proj = block.attn.c_proj
        entries.append(
            _edge(
                c_proj.weight,
                c_proj.bias,
                circuit[loc("attn.v")],
                circuit[loc("attn.resid_delta")],
                loc("attn.v"),
                loc("attn.resid_delta"),
            )
        )
        mlp = block.mlp
        entries.append(
            _edge(
                mlp.c_fc.weight,
                mlp.c_fc.bias,
                circuit[loc("mlp.act_in")],
                circuit[loc("mlp.post_act")],
                loc("mlp.act_in"),
                loc("mlp.post_act"),
            )
        )
        entries.append(
            _edge(
                mlp.c_proj.weight,
                mlp.c_proj.bias,
                circuit[loc("mlp.post_act")],
                circuit[loc("mlp.resid_delta")],
                loc("mlp.post_act"),
                loc("mlp.resid_delta"),
            )
        )
    return entries


def _later_inputs(n_layer: int, layer: int, block: str) -> list[tuple[str, str]]:
    """Return (act_in location, norm attribute) of every block input after a resid_delta."""
    inputs = []
    if block == "attn":
        inputs.append((f"{layer}.mlp.act_in", "ln_2"))
    for later in range(layer + 1, n_layer):
        inputs.append((f"{later}.attn.act_in", "ln_1"))
        inputs.append((f"{later}.mlp.act_in", "ln_2"))
    return inputs


def residual_connections(model, circuit: Mapping[str, torch.Tensor]) -> list:
    """Return residual-stream edges from kept resid_delta channels to later kept act_in channels."""
    n_layer = model.config.n_layer
    entries = []
    for layer in range(n_layer):
        for block in ("attn", "mlp"):
            src_loc = f"{layer}.{block}.resid_delta"
            src_ids = circuit[src_loc]
            if not len(src_ids):
                continue
            for tgt_loc, norm_name in _later_inputs(n_layer, layer, block):
                tgt_ids = circuit[tgt_loc]
                same = src_ids[:, None] == tgt_ids[None, :]  # (n_src, n_tgt)
                if not bool(same.any()):
                    continue
                target_layer = int(tgt_loc.split(".")[0])
                gain = getattr(model.transformer.h[target_layer], norm_name).weight.detach()
                matrix = same.float() * gain[src_ids].float()[:, None]
                entries.append(
                    [
                        matrix,
                        [int(i) for i in src_ids],
                        [int(i) for i in tgt_ids],
                        (src_loc, tgt_loc),
                    ]
                )
    return entries
