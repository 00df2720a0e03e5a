"""The weight-sparse trainer (Gao et al. 2025, "Weight-sparse transformers have interpretable
circuits", Appendix A).

Each step:

1. set the scheduled density and learning rate (``training.schedule``);
2. forward and backward on a random batch of corpus windows;
3. clip the root-mean-square of all gradient entries to ``grad_rms_clip``;
4. AdamW step;
5. project every sparse tensor back to its top-k magnitudes (``training.sparsity``).

Every ``eval_interval`` steps one line goes to ``progress.json``; every ``checkpoint_interval`` steps
a resumable checkpoint is written. At the end the model goes to the store layout.

Under ``torchrun`` every process runs this loop on its slice of each global batch, with the
gradients averaged by DistributedDataParallel, and rank 0 alone writes files
(``training.distributed``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

from inference.gpt import GPT
from inference.loading import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_state_dict_strict,
    read_config,
    read_state_dict,
)
from training import checkpoint, data, distributed, metrics
from training.config import RunConfig
from training.distributed import SINGLE_PROCESS, DistributedContext
from training.schedule import density_at, lr_at
from training.sparsity import project_to_density, sparse_parameters

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run after a complete step; its checkpoint was written first."""


@dataclasses.dataclass
class TrainState:
    """Everything that changes during a run and is saved in a checkpoint."""

    model: GPT
    optimizer: torch.optim.AdamW
    generator: torch.Generator
    step: int = 0  # optimizer steps done
    tokens: int = 0  # tokens trained on, summed over all ranks
    elapsed_s: float = 0.0
    # Losses of the steps since the last evaluation, averaged into its train_xent.
    train_losses: list[float] = dataclasses.field(default_factory=list)
    context: DistributedContext = SINGLE_PROCESS
    # The DistributedDataParallel wrapper of ``model`` under torchrun, else None.
    ddp_model: nn.Module | None = None

    @property
    def forward_model(self) -> nn.Module:
        """The module that training forwards run through, so that DDP can average the gradients."""
        return self.model if self.ddp_model is None else self.ddp_model


def build_optimizer(model: nn.Module, run: RunConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings, none on norms, biases and sink logits."""
    train = run.train
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps)


def clip_grad_rms(params: list[nn.Parameter], max_rms: float) -> float:
    """Scale gradients so their root-mean-square over all entries is at most ``max_rms``."""
    grads = [p.grad for p in params if p.grad is not None]
    n_entries = sum(g.numel() for g in grads)
    # A norm limit of max_rms * sqrt(n) is the same as an RMS limit of max_rms.
    norm = torch.nn.utils.clip_grad_norm_(grads, max_rms * math.sqrt(n_entries))
    return float(norm) / math.sqrt(n_entries)


def read_initial_weights(run: RunConfig, folder: Path) -> dict[str, torch.Tensor]:
    """Read the weights of a finished model folder; its config must equal the run's."""
    saved_config = read_config(folder / CONFIG_FILE)
    if saved_config.to_dict() != run.model.to_dict():
        changed = sorted(
            key
            for key, value in run.model.to_dict().items()
            if saved_config.to_dict().get(key) != value
        )
        raise ValueError(f"init_from {folder}: model config differs from [model] in {changed}")
    return read_state_dict(folder / WEIGHTS_FILE, mmap=False)


def init_state(run: RunConfig, context: DistributedContext = SINGLE_PROCESS) -> TrainState:
    """Build a freshly initialised model, optimizer and data generator from the run's seed.

    Under torchrun only rank 0 reads ``init_from``, and sends the weights to the other ranks.
    """
    torch.manual_seed(run.train.seed)
    model = GPT(run.model)
    if run.train.init_from is not None:
        folder = Path(run.train.init_from)
        weights = context.call_on_main(lambda: read_initial_weights(run, folder))
        load_state_dict_strict(model, weights, source=str(folder / WEIGHTS_FILE))
        logger.info("initialised weights from %s", folder)
    model.to(context.device)
    optimizer = build_optimizer(model, run)
    generator = torch.Generator().manual_seed(run.train.seed)
    return TrainState(model=model, optimizer=optimizer, generator=generator, context=context)


def resume_state(
    run: RunConfig, folder: Path, context: DistributedContext = SINGLE_PROCESS
) -> TrainState:
    """Rebuild the state saved in the checkpoint folder (read by rank 0 under torchrun)."""
    saved = context.call_on_main(lambda: checkpoint.load_checkpoint(folder))
    checkpoint.check_resume_config(saved["run_config"], run)
    saved_out_dir = saved["run_config"]["train"].get("out_dir")
    if saved_out_dir is not None and saved_out_dir != run.train.out_dir:
        logger.warning(
            "train.out_dir changed from %s to %s: the progress.json records up to step %d stay "
            "in the old folder, so the run's curve is both files' lines in order",
            saved_out_dir,
            run.train.out_dir,
            saved["step"],
        )
    state = init_state(run, context)
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    state.step, state.tokens, state.elapsed_s = saved["step"], saved["tokens"], saved["elapsed_s"]
    state.train_losses = list(saved.get("train_losses", []))  # older checkpoints lack them
    logger.info("resumed %s at step %d (%d tokens)", folder, state.step, state.tokens)
    return state


def save_state(state: TrainState, run: RunConfig, folder: Path) -> None:
    """Write a resumable checkpoint of the state (on rank 0 only, since all ranks hold the same)."""
    if not state.context.is_main:
        return
    payload = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "generator": state.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "run_config": checkpoint.run_config_dict(run),
        "step": state.step,
        "tokens": state.tokens,
        "elapsed_s": state.elapsed_s,
        "train_losses": list(state.train_losses),
    }
    path = checkpoint.save_checkpoint(folder, payload)
    logger.info("checkpoint at step %d: %s", state.step, path)


def schedule_position(state: TrainState, run: RunConfig) -> float:
    """Return the step the schedules use: the step count, or the used fraction of the time budget
    times max_steps when that is larger."""
    train = run.train
    if train.time_budget_s is None:
        return state.step
    return max(state.step, state.elapsed_s / train.time_budget_s * train.max_steps)


def is_finished(state: TrainState, run: RunConfig) -> bool:
    """Return whether the run has reached max_steps or used up its time budget."""
    return schedule_position(state, run) >= run.train.max_steps


def train_step(state: TrainState, run: RunConfig, train_tokens: torch.Tensor, sparse: dict) -> dict:
    """Run one optimizer step and the projection; return the step's loss, lr and density."""
    train = run.train
    position = schedule_position(state, run)
    density = density_at(
        position, train.max_steps, train.target_density, train.anneal_frac, train.start_density
    )
    lr = lr_at(position, train.max_steps, train.lr, train.warmup_frac, density)
    for group in state.optimizer.param_groups:
        group["lr"] = lr

    inputs, targets = data.sample_batch(
        train_tokens, train.batch_size, run.model.block_size, state.generator, state.context
    )
    device = state.context.device
    # NOTE: every rank seeds the global RNG alike, so with model.dropout > 0 the ranks draw the same
    # dropout masks for different sequences and the run differs from a single-process one. The
    # presets use dropout 0.
    _, loss, _ = state.forward_model(inputs.to(device), targets.to(device))
    loss.backward()  # under DDP this also averages the gradients over the ranks
    loss = loss.detach()
    grad_rms = clip_grad_rms(list(state.model.parameters()), train.grad_rms_clip)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    project_to_density(sparse, density, train.min_per_row)

    state.step += 1
    state.tokens += train.batch_size * run.model.block_size
    # The loss is this rank's, but grad_rms is that of the global batch.
    return {"loss": loss.item(), "lr": lr, "density": density, "grad_rms": grad_rms}


def evaluation_record(
    state: TrainState, sparse: dict, eval_batches: list, train_losses: list[float], last: dict
) -> dict[str, Any]:
    """Build one progress.json line: schedule values, losses, L0 and alive neurons.

    Under torchrun each rank evaluates its slice of ``eval_batches`` and the losses and alive
    neurons are reduced over the ranks, so every rank returns the same record.
    """
    context = state.context
    distributed.check_replicas_identical(state.model.state_dict().items(), context)
    l0, l0_non_embed = metrics.l0_counts(sparse)
    record = {
        "step": state.step,
        "tokens": state.tokens,
        "lr": last["lr"],
        "density": last["density"],
        "train_xent": context.mean(sum(train_losses) / len(train_losses)),
        "test_xent": context.mean(metrics.mean_loss(state.model, eval_batches)),
        "L0": l0,
        "L0_non_embed": l0_non_embed,
    }
    fired = context.any_rank(metrics.fired_neurons(state.model, eval_batches[0][0]))
    record.update(metrics.alive_counts(fired))
    record["elapsed_s"] = round(state.elapsed_s, 1)
    return record


def load_tokens(
    run: RunConfig, encoding, context: DistributedContext = SINGLE_PROCESS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the train and validation token tensors of the run's corpus.

    Under torchrun the first process on each machine encodes and caches the corpus while the
    others wait, and then they read its cache.
    """
    train = run.train
    cache_dir = Path(train.checkpoint_dir) / "token_cache"
    if context.local_rank != 0:
        context.barrier()
    splits = []
    for split in ("train", "validation"):
        array = data.load_split_tokens(
            encoding,
            split,
            train.extra_dirs,
            cache_dir,
            include_stdlib=train.include_stdlib,
            validation_fraction=train.validation_fraction,
        )
        if len(array) < run.model.block_size + 2:
            raise ValueError(
                f"the {split} split has {len(array)} tokens, too few for one window of "
                f"block_size {run.model.block_size}; add .py files with train.extra_dirs or "
                f"change train.validation_fraction ({train.validation_fraction})"
            )
        splits.append(torch.from_numpy(array.astype("int64")))
    if context.local_rank == 0:
        context.barrier()
    return splits[0], splits[1]


def train(run: RunConfig, encoding, resume: bool = False, overwrite: bool = False) -> Path:
    """Train a model per ``run`` and write it to the store; return the model folder.

    A new run (``resume`` False) raises FileExistsError when the run's checkpoint, model or
    progress.json exist, unless ``overwrite`` is set. Under torchrun every process calls this.
    ``run.train.batch_size`` is the global batch, and rank 0 alone writes progress.json,
    checkpoints and the model folder.
    """
    rank, _, world_size = distributed.ranks_from_environment()
    distributed.local_batch_size(run.train.batch_size, world_size)  # raise before joining the group
    folder = Path(run.train.checkpoint_dir) / run.train.name
    out_dir = Path(run.train.out_dir)
    if rank == 0:
        # Raise now, before the corpus is read and steps are spent.
        checkpoint.check_output_folders(out_dir, folder)
        if run.train.init_from is not None and not resume:
            checkpoint.check_model_folder(Path(run.train.init_from))
        if resume:
            checkpoint.checkpoint_path(folder)
        elif overwrite:
            checkpoint.remove_run(out_dir, run.train.name, folder)
        else:
            checkpoint.check_fresh_start(out_dir, run.train.name, folder)
        checkpoint.copy_tokenizer(run.model.tokenizer_name, out_dir)
    with distributed.process_group(run.train.device) as context:
        return _train_in_group(run, encoding, resume, context)


def _train_in_group(run: RunConfig, encoding, resume: bool, context: DistributedContext) -> Path:
    train = run.train
    torch.set_num_threads(train.num_threads)
    _warn_if_oversubscribed(train.num_threads, context)
    out_dir = Path(train.out_dir)
    folder = Path(train.checkpoint_dir) / train.name
    progress = checkpoint.progress_path(out_dir, train.name)

    train_tokens, val_tokens = load_tokens(run, encoding, context)
    eval_batches = [
        (context.shard(inputs).to(context.device), context.shard(targets).to(context.device))
        for inputs, targets in data.fixed_eval_batches(
            val_tokens, train.eval_batches, train.batch_size, run.model.block_size, train.seed
        )
    ]
    state = resume_state(run, folder, context) if resume else init_state(run, context)
    state.ddp_model = distributed.wrap_model(state.model, context)
    if context.is_main:
        checkpoint.truncate_progress(progress, state.step)
    sparse = sparse_parameters(state.model)
    logger.info(
        "training %s: %d steps x %d tokens on %d process(es), %d sparse tensors, target density %g",
        train.name,
        train.max_steps,
        train.batch_size * run.model.block_size,
        context.world_size,
        len(sparse),
        train.target_density,
    )

    _run_steps(state, run, train_tokens, eval_batches, sparse, progress, folder)
    if not context.is_main:
        return checkpoint.model_folder(out_dir, train.name)
    return checkpoint.write_model(out_dir, train.name, run, state.model.state_dict())


def _warn_if_oversubscribed(num_threads: int, context: DistributedContext) -> None:
    """Warn when the processes on this machine ask for more threads than it has cores."""
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = os.cpu_count() or 1
    if context.local_rank == 0 and num_threads * local_processes > cores:
        logger.warning(
            "%d processes x train.num_threads %d exceed the %d CPU cores of this machine; "
            "set train.num_threads=%d",
            local_processes,
            num_threads,
            cores,
            max(1, cores // local_processes),
        )


def _run_steps(state, run, train_tokens, eval_batches, sparse, progress, folder) -> None:
    train = run.train
    tokens_per_step = train.batch_size * run.model.block_size
    bar = tqdm(
        total=train.max_steps * tokens_per_step,
        initial=state.tokens,
        unit="tok",
        unit_scale=True,
        disable=not (train.progress_bar and state.context.is_main),
    )
    state.model.train()
    stop = False
    with _stop_on_interrupt(state.context) as interrupted:
        while not is_finished(state, run) and not stop:
            started = time.perf_counter()
            last = train_step(state, run, train_tokens, sparse)
            state.elapsed_s += time.perf_counter() - started
            if train.time_budget_s is not None:
                # The schedules and the stop depend on the time used, so all ranks take rank 0's.
                state.elapsed_s = state.context.broadcast(state.elapsed_s)
            state.train_losses.append(last["loss"])
            bar.update(tokens_per_step)
            bar.set_postfix(loss=f"{last['loss']:.3f}", density=f"{last['density']:.3f}")

            done = is_finished(state, run)
            if state.step % train.eval_interval == 0 or done:
                record = evaluation_record(state, sparse, eval_batches, state.train_losses, last)
                state.train_losses = []
                if state.context.is_main:
                    checkpoint.append_progress(progress, record)
                    _log_progress(record, state)
            if state.step % train.checkpoint_interval == 0 or done:
                save_state(state, run, folder)
            # Every rank takes part, so all stop after the same step even if one got the signal.
            stop = bool(state.context.any_rank(torch.tensor([interrupted.is_set()])))
    bar.close()
    if stop and not is_finished(state, run):
        if state.step % train.checkpoint_interval != 0:  # else the loop has just written it
            save_state(state, run, folder)
        state.context.barrier()  # the other ranks wait until rank 0 has written it
        raise TrainingInterrupted(
            f"interrupted at step {state.step}; checkpoint written to {folder}, "
            "continue with --resume"
        )
    if state.step < train.max_steps and train.time_budget_s is not None:
        logger.info(
            "time budget of %.0f s used up after %d of %d steps",
            train.time_budget_s,
            state.step,
            train.max_steps,
        )


# Signals that stop a run after its current step. torchrun's agent passes the SIGINT or SIGTERM
# it gets on to every rank, then kills the ranks after 30 s (torch 2.13). Batch schedulers such as
# Slurm send SIGTERM before they kill a job.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A repeat within this many seconds of the first signal counts as the same stop. A launcher that
# forwards a signal the ranks also got from the terminal delivers it twice within milliseconds.
REPEAT_GRACE_S = 1.0


@contextmanager
def _stop_on_interrupt(context: DistributedContext) -> Iterator[threading.Event]:
    """Turn the first Ctrl-C or SIGTERM into a request to stop after the current step.

    A signal more than REPEAT_GRACE_S after the first aborts at once: Ctrl-C raises
    KeyboardInterrupt and SIGTERM ends the process. The training loop shares the request among
    ranks, so every rank stops after the same step.
    NOTE: signal handlers can only be set on the main thread, so a run on another thread keeps
    the defaults and writes no checkpoint when stopped.
    """
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    first_signal_at: list[float] = []

    def on_signal(signum, frame) -> None:
        now = time.monotonic()
        if not requested.is_set():
            requested.set()
            first_signal_at.append(now)
            logger.warning(
                "rank %d got %s: stopping after this step to write a checkpoint "
                "(another signal %.0f s or more from now aborts)",
                context.rank,
                signal.Signals(signum).name,
                REPEAT_GRACE_S,
            )
            return
        if now - first_signal_at[0] < REPEAT_GRACE_S:
            return
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, previous[stop_signal])
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    previous = {stop_signal: signal.signal(stop_signal, on_signal) for stop_signal in STOP_SIGNALS}
    try:
        yield requested
    finally:
        for stop_signal, handler in previous.items():
            signal.signal(stop_signal, handler)


def _log_progress(record: dict[str, Any], state: TrainState) -> None:
    logger.info(
        "step %d: train_xent %.4f test_xent %.4f density %.4f lr %.2e L0 %d, %.0f tokens/s",
        state.step,
        record["train_xent"],
        record["test_xent"],
        record["density"],
        record["lr"],
        record["L0"],
        state.tokens / max(state.elapsed_s, 1e-9),
    )
