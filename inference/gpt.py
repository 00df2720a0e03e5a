"""The weight-sparse GPT of Gao et al. (2025), "Weight-sparse transformers have interpretable circuits".

A nanoGPT-style decoder whose forward pass matches OpenAI's released inference code on every config
option of the released checkpoints. Those options are LayerNorm or RMSNorm, GELU or ReLU, AbsTopK
activation sparsity at any of ten locations, an attention sink (on every attention path), a bigram
logit table, concatenated (learned or sinusoidal) position embeddings and a ReLU residual stream. Module names match the
checkpoint keys (`transformer.h.<i>.attn.c_attn.weight`, ...).

Hook points (see `inference.hook_utils`) per layer `<i>`: `resid_in`, `attn.act_in`, `attn.q`,
`attn.k`, `attn.v`, `attn.y`, `attn.resid_delta`, `resid_mid`, `mlp.act_in`, `mlp.post_act`,
`mlp.resid_delta`; then `final_resid`. Each hook sees the activation after AbsTopK at that place.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from inference.checks import OutOfRangeError, check_integer_tensor
from inference.config import GPTConfig, config_from_dict
from inference.hook_utils import hook_namespace, hook_save

__all__ = ["GPT", "GPTConfig", "config_from_dict", "load_model"]


def abs_topk(x: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k entries of largest magnitude along the last dim, zero the rest."""
    _, idx = torch.topk(x.abs(), k, dim=-1, sorted=False)
    return torch.zeros_like(x).scatter_(-1, idx, x.gather(-1, idx))


def maybe_abstopk(config: GPTConfig, x: torch.Tensor, loc: str) -> torch.Tensor:
    k = config.abstopk_k(loc)
    return x if k is None else abs_topk(x, k)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (eps 1e-5)."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


def make_norm(config: GPTConfig, ndim: int) -> nn.Module:
    return nn.RMSNorm(ndim) if config.rms_norm else LayerNorm(ndim, bias=config.ln_bias)


class AttentionSink(nn.Module):
    """A learnable logit per head for an extra always-visible key slot whose value is zero."""

    def __init__(self, n_head: int):
        super().__init__()
        self.sink_logit = nn.Parameter(torch.zeros(n_head))


def sink_attention_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sink_logit: torch.Tensor, scale: float
) -> torch.Tensor:
    """Causal attention with a sink through torch SDPA's `is_causal` kernel, without a mask.

    An explicit (T, T + 1) mask sends SDPA to its slow math path. Instead, one extra channel carries
    the sink: queries get a 1 there, real keys a 0 and a sink key `sink_logit / scale`, so the sink's
    score is `sink_logit` and every other score is unchanged. The sink key goes first and a dummy
    query first too, so the square causal mask lets query i + 1 see the sink and keys 0 to i. The
    dummy query's row is dropped. Values get a zero channel so q, k and v share one head size.
    """
    B, H, T, D = q.shape
    # One padded buffer per tensor, written once (two torch.cat calls each copied every entry twice).
    q_pad = q.new_zeros(B, H, T + 1, D + 1)
    q_pad[:, :, 1:, :D] = q
    q_pad[:, :, 1:, D] = 1.0
    k_pad = k.new_zeros(B, H, T + 1, D + 1)
    k_pad[:, :, 1:, :D] = k
    k_pad[:, :, 0, D] = (sink_logit.to(k.dtype) / scale).view(1, H)
    v_pad = v.new_zeros(B, H, T + 1, D + 1)
    v_pad[:, :, 1:, :D] = v
    q, k, v = q_pad, k_pad, v_pad
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    return y[:, :, 1:, :D]  # (B, H, T, D): drop the dummy query and the sink channel


def causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    sink_logit: torch.Tensor | None,
    use_sdpa: bool,
) -> torch.Tensor:
    """Causal softmax attention over (B, n_head, T, d_head) tensors, with an optional sink.

    The sink adds one key slot per head with logit `sink_logit[h]` and a zero value: it only enlarges
    the softmax denominator. Both paths (torch SDPA, explicit) compute the same function.
    NOTE: NaN queries give zeros from torch 2.13's SDPA CPU kernel but NaN from the explicit path.
    """
    T = q.size(-2)
    scale = 1.0 / math.sqrt(q.size(-1))
    if use_sdpa and sink_logit is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    if use_sdpa:
        return sink_attention_sdpa(q, k, v, sink_logit, scale)

    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = (q @ k.transpose(-2, -1)) * scale  # (B, n_head, T, T)
    att = att.masked_fill(~causal, float("-inf"))
    if sink_logit is None:
        return F.softmax(att, dim=-1) @ v
    sink = sink_logit.to(att.dtype).view(1, -1, 1, 1).expand(*att.shape[:-1], 1)
    probs = F.softmax(torch.cat([sink, att], dim=-1), dim=-1)[..., 1:]  # drop the sink column
    return probs @ v


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        width = config.n_head * config.d_head
        self.c_attn = nn.Linear(config.d_model_in, 3 * width, bias=config.bias)
        self.c_proj = nn.Linear(width, config.d_model, bias=config.bias)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.attn_imp = AttentionSink(config.n_head) if config.sink else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        B, T, _ = x.shape
        x = hook_save("act_in", maybe_abstopk(cfg, x, "attn_in"))

        q, k, v = self.c_attn(x).split(cfg.n_head * cfg.d_head, dim=2)
        k = hook_save("k", maybe_abstopk(cfg, k, "attn_k"))  # (B, T, n_head * d_head)
        q = hook_save("q", maybe_abstopk(cfg, q, "attn_q"))
        v = hook_save("v", maybe_abstopk(cfg, v, "attn_v"))

        q = q.view(B, T, cfg.n_head, cfg.d_head).transpose(1, 2)  # (B, n_head, T, d_head)
        k = k.view(B, T, cfg.n_head, cfg.d_head).transpose(1, 2)
        v = v.view(B, T, cfg.n_head, cfg.d_head).transpose(1, 2)
        sink = self.attn_imp.sink_logit if self.attn_imp is not None else None
        y = causal_attention(q, k, v, sink, use_sdpa=cfg.flash)
        y = y.transpose(1, 2).reshape(B, T, cfg.n_head * cfg.d_head)  # heads side by side
        y = hook_save("y", y)

        y = self.resid_dropout(self.c_proj(y))
        return maybe_abstopk(cfg, y, "attn_out")


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.c_fc = nn.Linear(config.d_model_in, config.d_mlp, bias=config.bias)
        self.act_fn = nn.GELU() if config.activation_type == "gelu" else nn.ReLU()
        self.c_proj = nn.Linear(config.d_mlp, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        x = hook_save("act_in", maybe_abstopk(cfg, x, "mlp_in"))
        x = self.act_fn(self.c_fc(x))
        x = hook_save("post_act", maybe_abstopk(cfg, x, "mlp_neuron"))
        x = self.dropout(self.c_proj(x))
        return maybe_abstopk(cfg, x, "mlp_out")


class Block(nn.Module):
    """One transformer block; `forward` equals `forward_mlp_block(forward_attn_block(x))`."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.ln_1 = make_norm(config, config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config, config.d_model)
        self.mlp = MLP(config)
        if config.cat_pos_emb:
            self.ln_p1 = make_norm(config, config.d_pos_emb)
            self.ln_p2 = make_norm(config, config.d_pos_emb)

    def _residual_out(self, x: torch.Tensor, loc: str) -> torch.Tensor:
        if self.config.residual_activation_type == "relu":
            x = torch.relu(x)
        return maybe_abstopk(self.config, x, loc)

    @staticmethod
    def _cat_pos(x: torch.Tensor, pos: torch.Tensor | None, norm: nn.Module | None) -> torch.Tensor:
        if pos is None:
            return x
        pos = norm(pos).expand(x.size(0), -1, -1)  # (B, T, d_pos_emb)
        return torch.cat([x, pos], dim=-1)

    def forward_attn_block(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = hook_save("resid_in", x)
        with hook_namespace("attn"):
            h = self._cat_pos(self.ln_1(x), pos, getattr(self, "ln_p1", None))
            x = x + hook_save("resid_delta", self.attn(h))
        return self._residual_out(x, "resid_post_attn")

    def forward_mlp_block(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = hook_save("resid_mid", x)
        with hook_namespace("mlp"):
            h = self._cat_pos(self.ln_2(x), pos, getattr(self, "ln_p2", None))
            x = x + hook_save("resid_delta", self.mlp(h))
        return self._residual_out(x, "resid_post_mlp")

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_mlp_block(self.forward_attn_block(x, pos), pos)


def sinusoidal_positions(block_size: int, d_pos_emb: int) -> torch.Tensor:
    """Fixed sin/cos position codes with periods log-spaced from 4 tokens to block_size tokens."""
    positions = torch.arange(block_size, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    d_half = max(1, d_pos_emb // 2)
    p_max = max(4.0, float(block_size))
    periods = torch.logspace(math.log10(4.0), math.log10(p_max), steps=d_half)
    angles = positions * (2 * math.pi / periods)  # (T, d_half)
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if enc.shape[1] < d_pos_emb:
        enc = torch.cat([enc, torch.zeros(block_size, d_pos_emb - enc.shape[1])], dim=1)
    return enc[:, :d_pos_emb]


def _min_max(*tensors: torch.Tensor | None) -> list[list[int]]:
    """Return [min, max] of each tensor that is not None, copied to the host together."""
    # Reading a bound of a CUDA tensor waits for the GPU, so all bounds are copied in one transfer.
    bounds = [torch.stack(t.aminmax()).long() for t in tensors if t is not None]
    return torch.stack(bounds).tolist()


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.d_model),
                wpe=nn.Embedding(config.block_size, config.d_pos_emb or config.d_model),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=make_norm(config, config.d_model),
            )
        )
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.register_buffer("final_logits_bias", torch.zeros(config.vocab_size))
        if config.enable_bigram_table:
            table = torch.zeros(config.vocab_size, config.vocab_size)
            if config.learnable_bigram_table:
                self.bigram_table = nn.Parameter(table)
            else:
                self.register_buffer("bigram_table", table)
        else:
            self.bigram_table = None
        if config.tied_unembed:
            self.transformer.wte.weight = self.lm_head.weight

        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.cat_pos_emb and config.sinusoidal_cat_pos_emb:
            with torch.no_grad():
                self.transformer.wpe.weight.copy_(
                    sinusoidal_positions(config.block_size, config.d_pos_emb)
                )
            self.transformer.wpe.weight.requires_grad_(False)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def check_input(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> None:
        """Raise for a batch the model cannot run, naming the value and the fix.

        TypeError: `idx` or `targets` is not an int64 or int32 tensor. ValueError: `idx` is not
        (batch, pos) with 1 <= pos <= block_size, or holds an id outside the vocabulary. For
        `targets`, also ValueError when its shape or device differs from idx's, when an entry is
        neither -1 (no loss at that position) nor a vocabulary id, or when every entry is -1.
        An id outside its range raises `OutOfRangeError`, a ValueError that is also an IndexError.
        """
        check_integer_tensor("idx", idx, "token ids", "(batch, pos)")
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError(
                f"idx must have shape (batch, pos) with pos >= 1; got {tuple(idx.shape)}"
            )
        T = idx.size(1)
        if T > self.config.block_size:
            raise ValueError(
                f"sequence length {T} exceeds block_size {self.config.block_size}; "
                "truncate the input to the last block_size tokens"
            )
        if targets is not None:
            check_integer_tensor("targets", targets, "token ids", "(batch, pos)")
            if targets.shape != idx.shape or targets.device != idx.device:
                raise ValueError(
                    f"targets has shape {tuple(targets.shape)} on {targets.device}, but idx has "
                    f"shape {tuple(idx.shape)} on {idx.device}; pass one target id per input "
                    "position (-1 where no loss is taken), on idx's device"
                )
        self._check_id_values(idx, targets)

    def _check_id_values(self, idx: torch.Tensor, targets: torch.Tensor | None) -> None:
        """Raise ValueError for ids outside the vocabulary, or for targets that are all -1."""
        vocab_size = self.config.vocab_size
        bounds = _min_max(idx, targets) if idx.numel() else []
        if bounds:
            low, high = bounds[0]
            if low < 0 or high >= vocab_size:
                raise OutOfRangeError(
                    f"token id {low if low < 0 else high} is outside the vocabulary "
                    f"[0, {vocab_size}); encode the text with this model's tokenizer"
                )
        if targets is None:
            return
        low, high = bounds[1] if bounds else (-1, -1)  # an empty batch has no target either
        if low < -1 or high >= vocab_size:
            raise OutOfRangeError(
                f"target id {low if low < -1 else high} is invalid; targets must be token ids "
                f"in [0, {vocab_size}) or -1 for a position without a loss"
            )
        if high == -1:
            raise ValueError(
                f"targets of shape {tuple(targets.shape)} has no position with a target (every "
                "entry is -1 or the batch is empty), so the mean loss would be NaN; pass at "
                "least one target id, or targets=None"
            )

    @staticmethod
    def _check_logit_positions(
        idx: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor | None
    ) -> None:
        if targets is not None:
            raise ValueError("pass either targets or logit_positions, not both")
        B, T = idx.shape
        check_integer_tensor("logit_positions", positions, "positions", f"({B},)")
        if positions.shape != (B,):
            raise ValueError(
                f"logit_positions must be a ({B},) integer tensor, one position per sequence; "
                f"got shape {tuple(positions.shape)}"
            )
        if not B:
            return
        low, high = torch.stack(positions.aminmax()).tolist()  # one transfer from the device
        if low < 0 or high >= T:
            raise OutOfRangeError(
                f"logit_positions must lie in [0, {T}), the sequence length; "
                f"got values from {low} to {high}"
            )

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        include_resid_mid: bool = False,
        logit_positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Return (logits (B, T, vocab_size), loss, hidden states at each block input).

        `idx` and `targets` are (B, T) int64 or int32 tensors of token ids. `loss` is the mean
        cross-entropy over targets != -1, or a zero tensor without targets. With
        `include_resid_mid`, the hidden states also hold each block's resid_mid. `check_input`
        lists the errors raised for a batch the model cannot run.

        `logit_positions` ((B,) int64 or int32 tensor) unembeds only one position per sequence,
        and the logits then have shape (B, vocab_size). Callers that read one answer per sequence,
        such as the pruner, skip most of the unembedding and bigram-table work this way.
        """
        self.check_input(idx, targets)
        if logit_positions is not None:
            self._check_logit_positions(idx, logit_positions, targets)
        T = idx.size(1)
        tok_emb = self.transformer.wte(idx)  # (B, T, d_model)
        pos_emb = self.transformer.wpe.weight[:T].unsqueeze(0)  # (1, T, d_model or d_pos_emb)
        if self.config.cat_pos_emb:
            x = self.transformer.drop(tok_emb)
            pos = self.transformer.drop(pos_emb) if self.config.dropout_cat_pos_emb else pos_emb
        else:
            x = self.transformer.drop(tok_emb + pos_emb)
            pos = None

        hidden_states = []
        for i, block in enumerate(self.transformer.h):
            with hook_namespace(str(i)):
                hidden_states.append(x)
                x = block.forward_attn_block(x, pos)
                if include_resid_mid:
                    hidden_states.append(x)
                x = block.forward_mlp_block(x, pos)

        x = hook_save("final_resid", x)
        if logit_positions is not None:
            rows = torch.arange(idx.size(0), device=idx.device)
            positions = logit_positions.to(idx.device)
            x = x[rows, positions]  # (B, d_model)
            idx = idx[rows, positions]  # (B,): the token whose bigram row is added
        logits = self.lm_head(self.transformer.ln_f(x)) + self.final_logits_bias
        if self.bigram_table is not None:
            # As upstream: the last row (end of text) is a padding row, so training never updates it.
            bigram = F.embedding(idx, self.bigram_table, padding_idx=-1)
            logits = logits + bigram.to(logits.dtype)

        if targets is None:
            loss = torch.zeros(1, device=idx.device)
        else:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.reshape(-1).long(), ignore_index=-1
            )
        return logits, loss, hidden_states


def load_model(path_or_url: str, cuda: bool = False, **kwargs) -> GPT:
    """Load a model folder (`beeg_config.json` + `final_model.pt`) from a path, URL or store name.

    See `inference.loading.load_model` for the keyword arguments (`mmap`, `sparse`).
    """
    from inference.loading import load_model as _load_model

    return _load_model(path_or_url, cuda=cuda, **kwargs)
