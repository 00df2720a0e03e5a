"""Build a tiny store in a folder for the web app tests: one random model, its curves and circuits.

The circuit files follow the viz_data.pt schema that registry.viz validates. Kept nodes are a
fixed random subset of each location, and activations come from running the tiny model on two code
snippets. Edge weights are the model's own weights between kept nodes. Stored task losses use
upstream's doubled convention, as released files do.

Layout written (model `tiny`, task `quote_task`, sweep `prune_test`):
    models/tiny/{beeg_config.json, final_model.pt}
    train_curves/tiny/progress.json
    viz/tiny/quote_task/prune_test/{8,k_optim}/viz_data.pt   only `8` stores ablation_means
        (means over the snippets), as this project's pruner writes them; `k_optim` has none, like
        upstream files
    viz/tiny/quote_task/prune_test/sweep.json   loss against k, as this project's pruner writes it
    stdlib_2k/{encoder.json, vocab.bpe}   copied from the repository's embedded store
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from inference.circuit import mean_activations
from inference.config import GPTConfig
from inference.gpt import GPT
from inference.hook_utils import hook_recorder

REPO_STORE = Path(__file__).resolve().parents[1] / "store"
MODEL = "tiny"
TASK = "quote_task"
SWEEP = "prune_test"
KS = ("8", "k_optim")
MEANS_K = "8"  # the circuit that stores ablation_means
SNIPPETS = ('x = "a<b>"\nprint(x)', "y = 'c&d'\n\tprint(y)")
LOCATIONS = (
    "attn.act_in",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.resid_delta",
    "mlp.act_in",
    "mlp.post_act",
    "mlp.resid_delta",
)
FRACTIONS = (0.001, 0.01, 0.1, 0.5)
CONFIG = {
    "block_size": 64,
    "vocab_size": 2048,
    "n_layer": 2,
    "n_head": 2,
    "d_head": 4,
    "d_model": 8,
    "d_mlp": 16,
    "bias": False,
    "rms_norm": True,
    "activation_type": "relu",
    "tied_unembed": False,
    "tokenizer_name": "stdlib_2k",
    "afrac": None,
    "flash": False,
    "pfrac": 0.25,
}


def _encode(text: str) -> list[int]:
    from registry.store import Store
    from registry.tokenizer import get_encoding

    return get_encoding("stdlib_2k", Store(REPO_STORE)).encode(text)


def _kept(width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    count = max(2, width // 2)
    return torch.randperm(width, generator=generator)[:count].sort().values


def _weights_between(model: GPT, layer: int, source: str, target: str) -> torch.Tensor:
    """The (n_source_channels x n_target_channels) weight block of one layer's edge type."""
    block = model.transformer.h[layer]
    width = model.config.n_head * model.config.d_head
    c_attn = block.attn.c_attn.weight  # (3 * width, d_model): q rows, then k, then v
    matrices = {
        ("attn.act_in", "attn.q"): c_attn[:width].T,
        ("attn.act_in", "attn.k"): c_attn[width : 2 * width].T,
        ("attn.act_in", "attn.v"): c_attn[2 * width :].T,
        ("attn.v", "attn.resid_delta"): block.attn.c_proj.weight.T,
        ("mlp.act_in", "mlp.post_act"): block.mlp.c_fc.weight.T,
        ("mlp.post_act", "mlp.resid_delta"): block.mlp.c_proj.weight.T,
    }
    return matrices[(source, target)]


def _samples(tokens: torch.Tensor, acts: torch.Tensor, node: int) -> dict:
    """Per fraction: [bottom examples, top examples], each (tokens, activations, position)."""
    examples = []
    for row in range(tokens.shape[0]):
        values = acts[row, :, node]
        examples.append((tokens[row].clone(), values.clone(), int(values.abs().argmax())))
    ordered = sorted(examples, key=lambda example: float(example[1][example[2]]))
    return {fraction: [ordered[:2], ordered[::-1][:2]] for fraction in FRACTIONS}


def _viz_data(model: GPT, tokens: torch.Tensor, lengths: list[int], seed: int) -> dict:
    config = model.config
    with torch.no_grad(), hook_recorder() as records:
        model(tokens)

    circuit, ch_losses, task_acts, samples = {}, {}, {}, {}
    for layer in range(config.n_layer):
        for suffix in LOCATIONS:
            location = f"{layer}.{suffix}"
            acts = records[location]  # (N, T, width)
            kept = _kept(acts.shape[-1], seed + 7 * layer + LOCATIONS.index(suffix))
            circuit[location] = kept
            ch_losses[location] = torch.linspace(0.2, 1.2, len(kept))  # doubled, like upstream
            task_acts[location] = {int(i): acts[:, :, i].clone() for i in kept}
            samples[location] = {int(i): _samples(tokens, acts, int(i)) for i in kept}

    pair_data = []
    for layer in range(config.n_layer):
        for source, target in [
            ("attn.act_in", "attn.q"),
            ("attn.act_in", "attn.k"),
            ("attn.act_in", "attn.v"),
            ("attn.v", "attn.resid_delta"),
            ("mlp.act_in", "mlp.post_act"),
            ("mlp.post_act", "mlp.resid_delta"),
        ]:
            src, tgt = f"{layer}.{source}", f"{layer}.{target}"
            weights = _weights_between(model, layer, source, target)
            block = weights[circuit[src]][:, circuit[tgt]].detach().clone()
            pair_data.append([block, circuit[src].tolist(), circuit[tgt].tolist(), (src, tgt)])

    config_dict = {k: v for k, v in CONFIG.items() if k != "pfrac"}
    return {
        "circuit_data": circuit,
        "samples": samples,
        "importances": {
            "beeg_model_config": config_dict,
            "loss": 0.2,  # doubled: 0.1 per sequence
            "interv_loss": 0.3,  # doubled: 0.15 per sequence
            "ch_interv_losses": ch_losses,
            "layer_interv_losses": {
                f"{i}.{b}": 0.5 for i in range(config.n_layer) for b in ("attn", "mlp")
            },
            "pair_data": pair_data,
            "pair_data_connections": [],
            "task_samples": (tokens, task_acts),
        },
        "task_sample_lengths": torch.tensor(lengths),
        "all_loss": [(0, 0.9), (1, 0.5), (2, 0.3)],
        "num_total_nodes": sum(records[f"0.{s}"].shape[-1] for s in LOCATIONS) * config.n_layer,
        "prune_config": {"target_loss": 0.15, "k": 8},
    }


def _sparsify(model: GPT, density: float) -> None:
    """Zero all but a random `density` fraction of each weight matrix, like a weight-sparse model."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                keep = torch.rand(parameter.shape, generator=generator) < density
                parameter.mul_(keep)


def build_tiny_store(root: Path) -> Path:
    """Write the tiny store under `root` and return `root`."""
    shutil.copytree(REPO_STORE / "stdlib_2k", root / "stdlib_2k", dirs_exist_ok=True)

    torch.manual_seed(0)
    config = GPTConfig(**{k: v for k, v in CONFIG.items() if k != "pfrac"})
    model = GPT(config).eval()
    _sparsify(model, CONFIG["pfrac"])
    model_dir = root / "models" / MODEL
    model_dir.mkdir(parents=True)
    (model_dir / "beeg_config.json").write_text(json.dumps(CONFIG))
    torch.save(model.state_dict(), model_dir / "final_model.pt")

    curves_dir = root / "train_curves" / MODEL
    curves_dir.mkdir(parents=True)
    lines = [
        json.dumps({"step": step, "test_xent": 5.0 / (step + 1), "L0": 1000 - step})
        for step in range(0, 50, 5)
    ]
    (curves_dir / "progress.json").write_text("\n".join(lines) + "\n")

    encoded = [_encode(text) for text in SNIPPETS]
    width = max(len(ids) for ids in encoded)
    tokens = torch.zeros(len(encoded), width, dtype=torch.long)  # right-padded with token 0
    for row, ids in enumerate(encoded):
        tokens[row, : len(ids)] = torch.tensor(ids)

    sweep = {
        "k_optim": 12,
        "full_model_loss_per_sequence": 0.1,
        "target_loss_per_sequence": 0.15,
        "points": [{"k": k, "loss_per_sequence": 0.6 / (k + 1)} for k in (0, 4, 8, 16)],
    }
    sweep_dir = root / "viz" / MODEL / TASK / SWEEP
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "sweep.json").write_text(json.dumps(sweep))

    for seed, k in enumerate(KS):
        viz_dir = root / "viz" / MODEL / TASK / SWEEP / k
        viz_dir.mkdir(parents=True)
        viz = _viz_data(model, tokens, [len(ids) for ids in encoded], seed)
        if k == MEANS_K:
            viz["ablation_means"] = mean_activations(model, [tokens])
        torch.save(viz, viz_dir / "viz_data.pt")
    return root
