"""Task accuracy of a full (unpruned) model on the binary next-token tasks.

A pair counts as correct when the model prefers ``target_tokid`` over ``target_alt_tokid`` after
``inputs`` and the reverse after ``patch_from_inputs``. Both comparisons use the logits at the last
token of each sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inference.gpt import GPT


@dataclass(frozen=True)
class TaskAccuracy:
    """Counts of correct predictions of one model on one task's test pairs."""

    task: str
    n_pairs: int
    pairs_correct: int  # pairs with both sequences predicted correctly
    sequences_correct: int  # out of 2 * n_pairs

    @property
    def pair_accuracy(self) -> float:
        return self.pairs_correct / self.n_pairs

    @property
    def sequence_accuracy(self) -> float:
        return self.sequences_correct / (2 * self.n_pairs)


@torch.no_grad()
def last_token_logits(model: GPT, sequences: list[list[int]], batch_size: int = 64) -> torch.Tensor:
    """Return the logits after the last token of each sequence, (n_sequences, vocab_size)."""
    block_size = model.config.block_size
    too_long = [len(seq) for seq in sequences if len(seq) > block_size]
    if too_long:
        raise ValueError(
            f"{len(too_long)} task sequences exceed block_size {block_size} (longest "
            f"{max(too_long)} tokens); use a model with a larger block_size"
        )
    rows = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        width = max(len(seq) for seq in chunk)
        # Right padding is safe: causal attention never lets a token see the padding after it.
        idx = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, seq in enumerate(chunk):
            idx[row, : len(seq)] = torch.tensor(seq)
        logits, _, _ = model(idx)  # (batch, width, vocab_size)
        lengths = torch.tensor([len(seq) for seq in chunk])
        rows.append(logits[torch.arange(len(chunk)), lengths - 1])
    return torch.cat(rows)


def task_accuracy(model: GPT, task) -> TaskAccuracy:
    """Score a ``registry.tasks.Task`` on its test pairs."""
    pairs = task.xs_test
    if not pairs:
        raise ValueError(f"task {task.name!r} has no test pairs")
    logits = last_token_logits(
        model, [list(p.inputs) for p in pairs] + [list(p.patch_from_inputs) for p in pairs]
    )
    first, second = logits[: len(pairs)], logits[len(pairs) :]
    target = torch.tensor([p.target_tokid for p in pairs])
    alt = torch.tensor([p.target_alt_tokid for p in pairs])
    rows = torch.arange(len(pairs))

    first_correct = first[rows, target] > first[rows, alt]
    second_correct = second[rows, alt] > second[rows, target]
    return TaskAccuracy(
        task=task.name,
        n_pairs=len(pairs),
        pairs_correct=int((first_correct & second_correct).sum()),
        sequences_correct=int(first_correct.sum() + second_correct.sum()),
    )
