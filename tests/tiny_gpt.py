"""A tiny random GPT and token batches for the hook, intervention and circuit tests."""

import torch

from inference.gpt import GPT, GPTConfig


def tiny_model(n_layer=2, seed=0, **overrides) -> GPT:
    """Return a random GPT in eval mode: vocab 32, block 16, d_model 16, 2 heads."""
    torch.manual_seed(seed)
    config = GPTConfig(
        block_size=16,
        vocab_size=32,
        n_layer=n_layer,
        n_head=2,
        d_model=16,
        bias=False,
        rms_norm=True,
        tied_unembed=False,
        **overrides,
    )
    return GPT(config).eval()


def tokens(batch=2, T=8, seed=1) -> torch.Tensor:
    """Return a (batch, T) tensor of random token ids below 32."""
    return torch.randint(0, 32, (batch, T), generator=torch.Generator().manual_seed(seed))
