"""Training driver of the taste RNN (:mod:`spotrec.rnn.taste_rnn`).

Training streams the Spark-written Parquet windows (``input_tokens`` array<int>, ``target_token`` int) in
shuffled batches, logs one line per epoch, stops early on the validation loss, and saves a versioned checkpoint
(:func:`~spotrec.rnn.taste_rnn.save_checkpoint`). :func:`train_fn` is the same training as one picklable
function, so ``TorchDistributor(num_processes=k, local_mode=True, use_gpu=False).run(train_fn, ...)`` can run
it with DDP.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from spotrec.columns import INPUT_TOKENS, TARGET_TOKEN
from spotrec.config import RnnConfig
from spotrec.rnn.cbow import parquet_files
from spotrec.rnn.taste_rnn import (
    RnnSpec,
    TasteRNN,
    checkpoint_paths,
    padded_table,
    sampled_softmax_loss,
    save_checkpoint,
    taste_loss,
)

log = logging.getLogger(__name__)


class WindowBatches(IterableDataset):
    """Shuffled (input tokens, target token) batches streamed from Parquet windows with pyarrow.

    Files are split between DataLoader workers and between distributed ranks (``shard``/``shards``); every
    epoch reshuffles file order and rows within each record batch, seeded by (seed, epoch, shard, worker).
    ``fraction`` < 1 keeps that share of every record batch (rounded up), drawn afresh every epoch, so a
    bounded epoch is a sample of all the windows: reading only the first rows of the shuffled files would train on the
    same few files (the same windows, when they are all in one file) epoch after epoch.
    """

    def __init__(
        self,
        files: list[str],
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        shard: int = 0,
        shards: int = 1,
        read_rows: int = 16384,
        fraction: float = 1.0,
    ) -> None:
        super().__init__()
        self.files = files
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.shard = shard
        self.shards = shards
        self.read_rows = read_rows
        self.fraction = fraction
        self.epoch = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([self.seed, self.epoch, self.shard, worker])
        order = rng.permutation(len(self.files)) if self.shuffle else np.arange(len(self.files))
        files = [self.files[i] for i in order][self.shard :: self.shards][worker::workers]
        for path in files:
            reader = pq.ParquetFile(path)
            for batch in reader.iter_batches(batch_size=self.read_rows, columns=[INPUT_TOKENS, TARGET_TOKEN]):
                inputs = batch.column(0)
                n_rows = len(inputs)
                if n_rows == 0:
                    continue
                offsets = inputs.offsets.to_numpy()
                flat = inputs.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
                tokens = flat.reshape(n_rows, -1).astype(np.int64)  # fixed-length windows
                targets = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
                rows = rng.permutation(n_rows) if self.shuffle else np.arange(n_rows)
                if self.fraction < 1.0:  # a fresh random share of every record batch, rounded up
                    keep = rng.permutation(n_rows)[: math.ceil(self.fraction * n_rows)]
                    rows = keep if self.shuffle else np.sort(keep)
                for start in range(0, len(rows), self.batch_size):
                    idx = rows[start : start + self.batch_size]
                    yield torch.from_numpy(tokens[idx]), torch.from_numpy(targets[idx])


@dataclass
class RnnTrainingResult:
    """Where the best model was saved and how training went."""

    checkpoint: str
    best_epoch: int
    best_val_loss: float
    train_losses: list[float]
    val_losses: list[float]


def _spec(cfg: RnnConfig, vector_size: int, model_version: str, songs: int = 0) -> RnnSpec:
    return RnnSpec(
        cell=cfg.rnn_cell,
        vector_size=vector_size,
        hidden_size=cfg.hidden_size,
        layers=cfg.rnn_layers,
        sequence_length=cfg.sequence_length,
        loss=cfg.rnn_loss,
        model_version=model_version,
        songs=songs if cfg.rnn_loss == "softmax" else 0,
    )


def _batch_loss(
    model: TasteRNN,
    trained: nn.Module,
    table: torch.Tensor,
    tokens: torch.Tensor,
    targets: torch.Tensor,
    samples: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The configured loss of one batch (``table``: song vectors plus the zero padding row).

    ``samples`` > 0 (training only) replaces the full softmax by :func:`sampled_softmax_loss` when the
    catalogue is larger than that; validation always uses the full softmax, so its losses stay comparable.
    """
    songs = table[:-1]
    if model.spec.loss == "softmax" and 0 < samples < songs.shape[0]:
        return sampled_softmax_loss(trained(table[tokens]), targets, songs, model.song_bias, samples, generator)
    return taste_loss(trained(table[tokens]), table[targets], model.spec.loss, targets, songs, model.song_bias)


def _evaluate(model: TasteRNN, loader: DataLoader, vectors: torch.Tensor, limit: int = 0) -> float:
    """Mean validation loss over the loader's windows (the first ``limit`` of them when ``limit`` > 0)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for tokens, targets in loader:
            loss = _batch_loss(model, model, vectors, tokens, targets)
            total += loss.item() * len(targets)
            count += len(targets)
            if limit and count >= limit:
                break
    model.train()
    return total / max(count, 1)


def _over_budget(elapsed: float, budget: float, distributed: bool) -> bool:
    """Whether training is past its time budget; under DDP any rank past it stops all (one decision)."""
    over = torch.tensor([1.0 if elapsed >= budget else 0.0])
    if distributed:
        torch.distributed.all_reduce(over, op=torch.distributed.ReduceOp.MAX)
    return bool(over.item() > 0)


def train_taste_rnn(
    train_path: str,
    val_path: str | None,
    vectors: np.ndarray,
    cfg: RnnConfig,
    out_dir: str,
    model_version: str,
    workers: int = 0,
) -> RnnTrainingResult:
    """Train the taste RNN on Parquet windows; keep the epoch with the best validation loss.

    Runs as a plain call, or inside ``TorchDistributor`` (through :func:`train_fn`): when ``WORLD_SIZE`` > 1
    the model is wrapped in DistributedDataParallel (gloo, CPU), each rank reads its share of the training
    files, every rank scores the whole validation set (so all ranks take the same early-stopping decision),
    and only rank 0 writes the checkpoint.

    Args:
        train_path: folder of Parquet windows (input_tokens, target_token) to learn from.
        val_path: held-out windows for early stopping; ``None`` trains for ``rnn_epochs`` and keeps the last.
        vectors: song vectors, row = token (fixed, not trained).
        cfg: rnn_cell, hidden_size, rnn_layers, sequence_length, rnn_loss, rnn_epochs, rnn_lr, batch_size,
            patience, min_delta, max_windows_per_epoch, time_budget_s, seed, torch_threads.
        out_dir: where the checkpoint goes.
        model_version: names the checkpoint files.
        workers: DataLoader worker processes.

    Returns:
        the checkpoint path and the loss history.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world > 1
    if distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    sampler = torch.Generator().manual_seed(cfg.seed + rank)  # negatives of the sampled softmax
    table = padded_table(vectors)
    model = TasteRNN(_spec(cfg, table.shape[1], model_version, len(vectors)))
    trained: nn.Module = nn.parallel.DistributedDataParallel(model) if distributed else model
    optimiser = torch.optim.Adam(trained.parameters(), lr=cfg.rnn_lr)
    train_files = parquet_files(train_path)
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in train_files) if cfg.max_windows_per_epoch else 0
    fraction = min(1.0, cfg.max_windows_per_epoch / total) if total else 1.0
    train_data = WindowBatches(train_files, cfg.batch_size, cfg.seed, shard=rank, shards=world, fraction=fraction)
    val_loader = None
    if val_path is not None:
        val_data = WindowBatches(parquet_files(val_path), 4096, cfg.seed, shuffle=False)
        val_loader = DataLoader(val_data, batch_size=None, num_workers=0)
    best_state: dict[str, torch.Tensor] | None = None
    best_loss, best_epoch, stale = float("inf"), 0, 0
    train_losses: list[float] = []
    val_losses: list[float] = []
    # Bounded epochs: each rank reads its share of max_windows_per_epoch; validation the same share of its own.
    limit = -(-cfg.max_windows_per_epoch // world) if cfg.max_windows_per_epoch else 0
    share = cfg.validation_fraction / (1 - cfg.validation_fraction)
    val_limit = max(4096, int(cfg.max_windows_per_epoch * share)) if cfg.max_windows_per_epoch else 0
    training_started = time.perf_counter()
    for epoch in range(cfg.rnn_epochs):
        train_data.epoch = epoch
        started, total, count = time.perf_counter(), 0.0, 0
        # Ranks may hold different numbers of batches; DDP's join() keeps the all-reduces matched.
        uneven = trained.join() if isinstance(trained, nn.parallel.DistributedDataParallel) else nullcontext()
        with uneven:
            for tokens, targets in DataLoader(train_data, batch_size=None, num_workers=workers):
                if limit and count + len(targets) > limit:  # the bound is exact: cut the last batch
                    tokens, targets = tokens[: limit - count], targets[: limit - count]
                loss = _batch_loss(model, trained, table, tokens, targets, cfg.softmax_samples, sampler)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(targets)
                count += len(targets)
                if limit and count >= limit:
                    break
        train_losses.append(total / max(count, 1))
        val = _evaluate(model, val_loader, table, val_limit) if val_loader is not None else train_losses[-1]
        val_losses.append(val)
        if cfg.log_every_epoch and rank == 0:
            log.info(
                "rnn epoch %d/%d: train_loss=%.5f val_loss=%.5f windows=%d (%.0f windows/s)",
                epoch + 1,
                cfg.rnn_epochs,
                train_losses[-1],
                val,
                count,
                count / max(time.perf_counter() - started, 1e-9),
            )
        improved = best_state is None or val < best_loss - cfg.min_delta * abs(best_loss)
        if improved or val_loader is None:
            best_loss, best_epoch, stale = val, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                if rank == 0:
                    log.info("rnn: early stop after epoch %d (best epoch %d)", epoch + 1, best_epoch)
                break
        if cfg.time_budget_s and _over_budget(time.perf_counter() - training_started, cfg.time_budget_s, distributed):
            if rank == 0:
                log.info(
                    "rnn: time budget of %.0f s reached after epoch %d (best epoch %d)",
                    cfg.time_budget_s,
                    epoch + 1,
                    best_epoch,
                )
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    pt = checkpoint_paths(out_dir, model_version)[0]
    if rank == 0:
        pt = save_checkpoint(
            model,
            out_dir,
            {
                "best_epoch": best_epoch,
                "best_val_loss": best_loss,
                "train_losses": train_losses,
                "val_losses": val_losses,
            },
        )
    if distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return RnnTrainingResult(pt, best_epoch, best_loss, train_losses, val_losses)


def train_fn(
    train_path: str,
    val_path: str | None,
    vectors_path: str,
    cfg_dict: dict[str, Any],
    out_dir: str,
    model_version: str,
) -> str:
    """Picklable entry point for ``TorchDistributor.run`` (plain arguments only); returns the checkpoint path.

    Example:
        ``TorchDistributor(num_processes=2, local_mode=True, use_gpu=False).run(train_fn, train, val,
        vectors_npy, cfg.model_dump(), out_dir, version)``
    """
    logging.basicConfig(level=logging.INFO)
    cfg = RnnConfig(**cfg_dict)
    vectors = np.load(vectors_path)
    return train_taste_rnn(train_path, val_path, vectors, cfg, out_dir, model_version).checkpoint


def run_training(
    train_path: str,
    val_path: str | None,
    vectors_path: str,
    cfg: RnnConfig,
    out_dir: str,
    model_version: str,
) -> str:
    """Train through ``TorchDistributor`` when ``cfg.use_distributor`` is set, else as a plain call.

    Returns:
        the checkpoint (.pt) path.
    """
    args = (train_path, val_path, vectors_path, cfg.model_dump(), out_dir, model_version)
    if cfg.use_distributor:
        from pyspark.ml.torch.distributor import TorchDistributor

        distributor = TorchDistributor(num_processes=cfg.num_processes, local_mode=True, use_gpu=False)
        result = distributor.run(train_fn, *args)
        return str(result) if result is not None else checkpoint_paths(out_dir, model_version)[0]
    return train_fn(*args)
