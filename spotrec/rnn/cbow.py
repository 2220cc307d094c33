"""CBOW with negative sampling in PyTorch: the song-vector model of De Boom et al. (2017).

Spark writes the vocabulary-encoded documents (``tokens`` array<int>) as Parquet; :class:`CbowPairs`
streams them back with pyarrow, one record batch at a time, and turns each batch into shuffled
(context, song) training pairs with numpy only (no per-token Python loop):

- subsampling: a song of corpus frequency ``f`` is kept with probability ``(sqrt(f/t) + 1) * t / f``
  (word2vec's rule, threshold ``t = cfg.subsample``), so very popular songs stop dominating the contexts;
- dynamic window: each position draws ``b`` in ``1..window`` and uses the ``b`` songs on each side, as the C
  tool does (nearer songs weigh more on average);
- documents are laid end to end with ``window`` padding tokens in between, so a sliding window over the
  whole batch never mixes two playlists.

The model averages the context's input vectors and scores the true song against ``negatives`` noise songs
drawn from unigram counts ** 0.75; sparse embeddings + ``SparseAdam`` touch only the rows in the batch.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from spotrec.columns import TOKENS
from spotrec.config import RnnConfig

log = logging.getLogger(__name__)


def parquet_files(path: str) -> list[str]:
    """The Parquet part files Spark wrote under ``path`` (sorted, so epochs are reproducible)."""
    files = sorted(glob.glob(os.path.join(path, "*.parquet")))
    if not files and os.path.isfile(path):
        files = [path]
    if not files:
        raise FileNotFoundError(f"no Parquet files under {path}: write the documents with write_parquet first")
    return files


def keep_probabilities(counts: np.ndarray, threshold: float) -> np.ndarray:
    """word2vec's subsampling: P(keep) = min(1, (sqrt(f / t) + 1) * t / f), f = count / total count."""
    counts = np.asarray(counts, dtype=np.float64)
    if threshold <= 0:
        return np.ones_like(counts)
    freq = counts / max(counts.sum(), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = (np.sqrt(freq / threshold) + 1.0) * threshold / freq
    return np.clip(np.nan_to_num(p, nan=1.0, posinf=1.0), 0.0, 1.0)


def noise_distribution(counts: np.ndarray, exponent: float = 0.75) -> np.ndarray:
    """Negative-sampling distribution: unigram counts ** exponent, normalised."""
    weights = np.asarray(counts, dtype=np.float64) ** exponent
    return weights / weights.sum()


def cbow_pairs(
    values: np.ndarray,
    offsets: np.ndarray,
    keep_prob: np.ndarray,
    window: int,
    pad: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(context, song) pairs of one batch of documents given as flat ``values`` and list ``offsets``.

    Args:
        values: all documents' tokens, concatenated.
        offsets: document boundaries (``len(documents) + 1`` entries, Arrow list offsets).
        keep_prob: per-token subsampling probability.
        window: maximum context half-width.
        pad: the padding token (= vocabulary size); padded slots carry no signal.
        rng: source of the subsampling and window draws.

    Returns:
        contexts (pairs x 2 * window, int64, ``pad`` where empty) and songs (pairs,), for every kept
        position with at least one kept neighbour inside its drawn window.
    """
    lengths = np.diff(offsets)
    doc_of = np.repeat(np.arange(len(lengths)), lengths)
    values = values.astype(np.int64, copy=False)
    kept = rng.random(len(values)) < keep_prob[values]
    tokens, docs = values[kept], doc_of[kept]
    if len(tokens) == 0:
        return np.empty((0, 2 * window), dtype=np.int64), np.empty(0, dtype=np.int64)
    # Lay the documents end to end with `window` pads before each one and after the last.
    pos = np.arange(len(tokens)) + window * (docs + 1)
    stream = np.full(len(tokens) + window * (len(lengths) + 1), pad, dtype=np.int64)
    stream[pos] = tokens
    frames = np.lib.stride_tricks.sliding_window_view(stream, 2 * window + 1)[pos - window]
    contexts = np.delete(frames, window, axis=1).copy()
    distance = np.abs(np.delete(np.arange(-window, window + 1), window))
    reach = rng.integers(1, window + 1, size=len(tokens))
    contexts[distance[None, :] > reach[:, None]] = pad
    useful = (contexts != pad).any(axis=1)
    return contexts[useful], tokens[useful]


class CbowPairs(IterableDataset):
    """Streams shuffled (context, song) batches from Spark-written Parquet documents.

    Each DataLoader worker reads its own share of the files; every epoch reshuffles the file order and
    redraws subsampling and windows from a generator seeded by (seed, epoch, worker).
    """

    def __init__(
        self,
        files: list[str],
        keep_prob: np.ndarray,
        window: int,
        batch_size: int,
        seed: int,
        column: str = TOKENS,
        read_rows: int = 8192,
    ) -> None:
        super().__init__()
        self.files = files
        self.keep_prob = keep_prob
        self.window = window
        self.batch_size = batch_size
        self.seed = seed
        self.column = column
        self.read_rows = read_rows
        self.pad = len(keep_prob)
        self.epoch = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([self.seed, self.epoch, worker])
        files = [self.files[i] for i in rng.permutation(len(self.files))][worker::workers]
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=self.read_rows, columns=[self.column]):
                lists = batch.column(0)
                offsets = lists.offsets.to_numpy()
                values = lists.values.to_numpy(zero_copy_only=False)
                # Offsets index into the (possibly sliced) values buffer.
                values = values[offsets[0] : offsets[-1]]
                offsets = offsets - offsets[0]
                contexts, songs = cbow_pairs(values, offsets, self.keep_prob, self.window, self.pad, rng)
                order = rng.permutation(len(songs))
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    yield torch.from_numpy(contexts[idx]), torch.from_numpy(songs[idx])


class CbowNS(nn.Module):
    """CBOW: mean of the context's input vectors, scored against output vectors with negative sampling."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.inputs = nn.Embedding(vocab_size + 1, dim, padding_idx=vocab_size, sparse=True)
        self.outputs = nn.Embedding(vocab_size, dim, sparse=True)
        with torch.no_grad():
            # word2vec's initialisation: small uniform input vectors, zero output vectors.
            self.inputs.weight.uniform_(-0.5 / dim, 0.5 / dim)
            self.inputs.weight[vocab_size].zero_()
            self.outputs.weight.zero_()

    def forward(self, contexts: torch.Tensor, songs: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Mean negative-sampling loss of a batch.

        Args:
            contexts: (B, 2w) token ids, ``vocab_size`` for padding.
            songs: (B,) the true songs.
            negatives: (B, K) noise songs.
        """
        mask = (contexts != self.vocab_size).unsqueeze(-1).float()
        hidden = (self.inputs(contexts) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        positive = (hidden * self.outputs(songs)).sum(-1)
        negative = torch.bmm(self.outputs(negatives), hidden.unsqueeze(-1)).squeeze(-1)
        return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1)).mean()

    def song_vectors(self) -> np.ndarray:
        """The learnt input vectors (vocab_size x dim), the song vectors word2vec publishes."""
        return self.inputs.weight[: self.vocab_size].detach().cpu().numpy().astype(np.float32)


@dataclass
class CbowResult:
    """Trained song vectors (row = token) and the per-epoch training log."""

    vectors: np.ndarray
    epoch_losses: list[float]
    pairs_per_second: float


def train_cbow(documents_path: str, counts: np.ndarray, cfg: RnnConfig, workers: int = 0) -> CbowResult:
    """Train CBOW-NS song vectors from Parquet documents written by Spark.

    Args:
        documents_path: folder of Parquet files with a ``tokens`` (array<int>) column.
        counts: corpus count of each token (index = token), e.g. the vocabulary's ``count`` column.
        cfg: vector_size, window, negatives, ns_exponent, subsample, w2v_epochs, w2v_lr, w2v_batch_size, seed,
            torch_threads.
        workers: DataLoader worker processes (0 = read in the training process, fully deterministic).

    Returns:
        the song vectors in token order and the mean loss of each epoch.
    """
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    counts = np.asarray(counts, dtype=np.float64)
    vocab_size = len(counts)
    model = CbowNS(vocab_size, cfg.vector_size)
    optimiser = torch.optim.SparseAdam(list(model.parameters()), lr=cfg.w2v_lr)
    noise = torch.from_numpy(noise_distribution(counts, cfg.ns_exponent))
    dataset = CbowPairs(
        parquet_files(documents_path),
        keep_probabilities(counts, cfg.subsample),
        cfg.window,
        cfg.w2v_batch_size,
        cfg.seed,
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    total_pairs, total_time = 0, 0.0
    for epoch in range(cfg.w2v_epochs):
        dataset.epoch = epoch
        loader = DataLoader(dataset, batch_size=None, num_workers=workers)
        started, loss_sum, pairs = time.perf_counter(), 0.0, 0
        for contexts, songs in loader:
            negatives = torch.multinomial(noise, songs.numel() * cfg.negatives, True, generator=generator)
            loss = model(contexts, songs, negatives.view(-1, cfg.negatives))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss_sum += loss.item() * len(songs)
            pairs += len(songs)
        elapsed = time.perf_counter() - started
        total_pairs, total_time = total_pairs + pairs, total_time + elapsed
        losses.append(loss_sum / max(pairs, 1))
        if cfg.log_every_epoch:
            log.info(
                "cbow epoch %d/%d: loss=%.4f pairs=%d (%.0f pairs/s)",
                epoch + 1,
                cfg.w2v_epochs,
                losses[-1],
                pairs,
                pairs / max(elapsed, 1e-9),
            )
    return CbowResult(model.song_vectors(), losses, total_pairs / max(total_time, 1e-9))
