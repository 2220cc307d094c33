"""The taste RNN: from the song vectors of a user's last ``n`` plays, predict the vector of the next one.

De Boom et al. (2017) feed the word2vec vectors of the ``n`` most recent songs into a recurrent network whose
output is a *taste vector* in the same space; it is trained to land on the vector of song ``n + 1`` (L2 loss),
and recommendations are the songs nearest to it. The song vectors are fixed inputs here, not trained.

This module holds the network, its losses, its versioned checkpoint (``<model_version>-rnn.pt`` state_dict
next to ``<model_version>-rnn.json``, the architecture and run facts) and inference; the training driver is
:mod:`spotrec.rnn.training`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


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


def padded_table(vectors: np.ndarray) -> torch.Tensor:
    """Song vectors plus one zero row at the end: the vector of padding (token -1 indexes it)."""
    table = np.zeros((vectors.shape[0] + 1, vectors.shape[1]), dtype=np.float32)
    table[:-1] = vectors
    return torch.from_numpy(table)


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
