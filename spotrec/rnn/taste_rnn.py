"""The taste RNN: from the song vectors of a user's last ``n`` plays, predict the vector of the next one.

De Boom et al. (2017) feed the word2vec vectors of the ``n`` most recent songs into a recurrent network whose
output is a *taste vector* in the same space; it is trained to land on the vector of song ``n + 1`` (L2 loss),
and recommendations are the songs nearest to it. The song vectors are fixed inputs here, not trained.

Training streams the Spark-written Parquet windows (``input_tokens`` array<int>, ``target_token`` int) in
shuffled batches, logs one line per epoch, stops early on the validation loss, and saves a versioned checkpoint:
``<model_version>-rnn.pt`` (state_dict) next to ``<model_version>-rnn.json`` (the architecture and run facts).
:func:`train_fn` is the same training as one picklable function, so
``TorchDistributor(num_processes=k, local_mode=True, use_gpu=False).run(train_fn, ...)`` can run it with DDP.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from spotrec.columns import INPUT_TOKENS, TARGET_TOKEN
from spotrec.config import RnnConfig
from spotrec.rnn.cbow import parquet_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RnnSpec:
    """Everything needed to rebuild the network from its state_dict (the checkpoint's JSON side)."""

    cell: str
    vector_size: int
    hidden_size: int
    layers: int
    sequence_length: int
    loss: str
    model_version: str
    songs: int = 0
    """Catalogue size; a ``softmax`` model learns one bias per song (0 for ``l2`` / ``cosine``)."""


class TasteRNN(nn.Module):
    """GRU or LSTM over song vectors, with a linear read-out of the last hidden state into song space.

    With the ``softmax`` loss the model also holds one learnt bias per song: a song's score is
    ``taste . vector + bias`` (see :func:`song_scores`), so the taste vector only has to say what is
    personal while the bias carries how likely any listener is to pick the song next.
    """

    def __init__(self, spec: RnnSpec) -> None:
        super().__init__()
        self.spec = spec
        rnn_cls = nn.GRU if spec.cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(spec.vector_size, spec.hidden_size, num_layers=spec.layers, batch_first=True)
        self.out = nn.Linear(spec.hidden_size, spec.vector_size)
        self.song_bias = nn.Parameter(torch.zeros(spec.songs)) if spec.loss == "softmax" else None

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """Taste vectors (B, d) from song-vector histories (B, n, d), oldest first."""
        outputs, _ = self.rnn(history)
        return self.out(outputs[:, -1, :])


def song_scores(taste: torch.Tensor, songs: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Scores (B, songs) of every song for each taste vector: ``taste . vector (+ bias)``."""
    scores = taste @ songs.T
    return scores if bias is None else scores + bias


def taste_loss(
    predicted: torch.Tensor,
    target: torch.Tensor,
    kind: str,
    target_tokens: torch.Tensor | None = None,
    songs: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean loss of a batch.

    ``l2`` = squared Euclidean distance to the next song's vector (the paper), ``cosine`` = 1 - cos, and
    ``softmax`` = cross-entropy of the next song among all songs scored by :func:`song_scores` (needs
    ``target_tokens``, ``songs`` and ``bias``). The full softmax costs one (B x songs) product per batch, cheap
    for catalogues of tens of thousands of songs.
    """
    if kind == "softmax":
        if target_tokens is None or songs is None:
            raise ValueError("the softmax loss needs target_tokens and the song vectors")
        return F.cross_entropy(song_scores(predicted, songs, bias), target_tokens)
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(predicted, target, dim=-1)).mean()
    return ((predicted - target) ** 2).sum(-1).mean()


class WindowBatches(IterableDataset):
    """Shuffled (input tokens, target token) batches streamed from Parquet windows with pyarrow.

    Files are split between DataLoader workers and between distributed ranks (``shard``/``shards``); every
    epoch reshuffles file order and rows within each record batch, seeded by (seed, epoch, shard, worker).
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
    ) -> None:
        super().__init__()
        self.files = files
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.shard = shard
        self.shards = shards
        self.read_rows = read_rows
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
                for start in range(0, n_rows, self.batch_size):
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


def checkpoint_paths(out_dir: str, model_version: str) -> tuple[str, str]:
    """(state_dict file, JSON file) of a model version; version-named so executors never mix versions."""
    base = os.path.join(out_dir, f"{model_version}-rnn")
    return base + ".pt", base + ".json"


def save_checkpoint(model: TasteRNN, out_dir: str, extra: dict[str, Any]) -> str:
    """Write ``<version>-rnn.pt`` (state_dict) and ``<version>-rnn.json`` (spec + ``extra``); return the .pt path."""
    os.makedirs(out_dir, exist_ok=True)
    pt, meta = checkpoint_paths(out_dir, model.spec.model_version)
    torch.save(model.state_dict(), pt)
    with open(meta, "w") as fh:
        json.dump({"spec": asdict(model.spec), **extra}, fh, indent=2, sort_keys=True)
    return pt


def load_checkpoint(pt_path: str, json_path: str | None = None) -> TasteRNN:
    """Rebuild a :class:`TasteRNN` from its state_dict and JSON files (eval mode, CPU)."""
    json_path = json_path or pt_path[: -len(".pt")] + ".json"
    with open(json_path) as fh:
        spec = RnnSpec(**json.load(fh)["spec"])
    model = TasteRNN(spec)
    model.load_state_dict(torch.load(pt_path, map_location="cpu", weights_only=True))
    model.eval()
    return model


def padded_table(vectors: np.ndarray) -> torch.Tensor:
    """Song vectors plus one zero row at the end: the vector of padding (token -1 indexes it)."""
    table = np.zeros((vectors.shape[0] + 1, vectors.shape[1]), dtype=np.float32)
    table[:-1] = vectors
    return torch.from_numpy(table)


def sampled_softmax_loss(
    predicted: torch.Tensor,
    target_tokens: torch.Tensor,
    songs: torch.Tensor,
    bias: torch.Tensor | None,
    samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cross-entropy of the true next song against ``samples`` uniformly drawn songs shared by the batch.

    With uniform proposals the usual log-probability correction of sampled softmax is one constant for every
    candidate, so it cancels; a drawn song that is the row's own target is masked out. The cost per batch is
    B x (samples + 1) scores instead of B x songs, which is what makes the softmax affordable for large
    catalogues and for the demo on two cores.
    """
    negatives = torch.randint(0, songs.shape[0], (samples,), generator=generator)
    true = (predicted * songs[target_tokens]).sum(-1, keepdim=True)
    sampled = predicted @ songs[negatives].T
    if bias is not None:
        true = true + bias[target_tokens].unsqueeze(-1)
        sampled = sampled + bias[negatives]
    sampled = sampled.masked_fill(negatives.unsqueeze(0) == target_tokens.unsqueeze(-1), float("-inf"))
    logits = torch.cat([true, sampled], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))


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


def _evaluate(model: TasteRNN, loader: DataLoader, vectors: torch.Tensor) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for tokens, targets in loader:
            loss = _batch_loss(model, model, vectors, tokens, targets)
            total += loss.item() * len(targets)
            count += len(targets)
    model.train()
    return total / max(count, 1)


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
            patience, min_delta, seed, torch_threads.
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
    train_data = WindowBatches(parquet_files(train_path), cfg.batch_size, cfg.seed, shard=rank, shards=world)
    val_loader = None
    if val_path is not None:
        val_data = WindowBatches(parquet_files(val_path), 4096, cfg.seed, shuffle=False)
        val_loader = DataLoader(val_data, batch_size=None, num_workers=0)
    best_state: dict[str, torch.Tensor] | None = None
    best_loss, best_epoch, stale = float("inf"), 0, 0
    train_losses: list[float] = []
    val_losses: list[float] = []
    for epoch in range(cfg.rnn_epochs):
        train_data.epoch = epoch
        started, total, count = time.perf_counter(), 0.0, 0
        # Ranks may hold different numbers of batches; DDP's join() keeps the all-reduces matched.
        uneven = trained.join() if isinstance(trained, nn.parallel.DistributedDataParallel) else nullcontext()
        with uneven:
            for tokens, targets in DataLoader(train_data, batch_size=None, num_workers=workers):
                loss = _batch_loss(model, trained, table, tokens, targets, cfg.softmax_samples, sampler)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(targets)
                count += len(targets)
        train_losses.append(total / max(count, 1))
        val = _evaluate(model, val_loader, table) if val_loader is not None else train_losses[-1]
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


def predict_taste(model: TasteRNN, vectors: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """Taste vectors for token histories of any length (each history batched with others of its length).

    Histories shorter than the model's ``sequence_length`` are left-padded with zero vectors, as the
    training windows were (see ``rnn_windows(min_inputs=...)``); longer ones are used whole.

    Args:
        model: a trained :class:`TasteRNN` (eval mode).
        vectors: song vectors, row = token.
        histories: one token array per user, oldest first (typically the last ``n`` plays).

    Returns:
        (len(histories), vector_size) float32; zeros for an empty history.
    """
    n, dim = model.spec.sequence_length, model.spec.vector_size
    out = np.zeros((len(histories), dim), dtype=np.float32)
    lengths = np.array([len(h) for h in histories])
    with torch.no_grad():
        for length in np.unique(lengths):
            if length == 0:
                continue
            rows = np.flatnonzero(lengths == length)
            tokens = np.stack([np.asarray(histories[i], dtype=np.int64) for i in rows])
            for start in range(0, len(rows), 4096):
                chunk = tokens[start : start + 4096]
                batch = np.zeros((len(chunk), max(n, int(length)), dim), dtype=np.float32)
                batch[:, batch.shape[1] - int(length) :, :] = vectors[chunk]
                out[rows[start : start + 4096]] = model(torch.from_numpy(batch)).numpy()
    return out


def retrieval_space(model: TasteRNN, vectors: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Item vectors for the nearest-neighbour index of this model, and the metric it needs (None: any).

    ``l2`` / ``cosine`` models land near the next song's vector, so the song vectors themselves are searched
    with the configured metric. A ``softmax`` model scores ``taste . vector + bias``: its items are
    ``[vector, bias]`` searched by inner product (``dot``) with the query ``[taste, 1]`` (:func:`retrieval_query`),
    which gives exactly the model's ranking.
    """
    if model.song_bias is None:
        return np.asarray(vectors, dtype=np.float32), None
    bias = model.song_bias.detach().cpu().numpy().astype(np.float32)
    return np.hstack([np.asarray(vectors, dtype=np.float32), bias[:, None]]), "dot"


def retrieval_query(model_loss: str, tastes: np.ndarray) -> np.ndarray:
    """The index query for taste vectors: ``[taste, 1]`` for a ``softmax`` model, the taste itself otherwise."""
    if model_loss != "softmax":
        return tastes
    return np.hstack([tastes, np.ones((len(tastes), 1), dtype=tastes.dtype)])
