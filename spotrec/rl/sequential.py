"""The sequential user model: a GRU over the session so far, with the MLP user model's heads on top.

``rl.user_model: gru``. The listener of a real session does not answer each track alone: a jump in sound
after a run of coherent tracks, the third track of an artist in a row, a session of unloved hits that wears
out the listener's patience. A model that sees only the candidate, the position and the skip run (the MLP of
:mod:`spotrec.rl.user_model`) cannot learn any of that. This one reads the session so far:

* per played track ``i`` the GRU reads ``x_i = [track features_i, labels_i (complete, skip, listen > X)]``
  and updates ``h_i = GRU(x_i, h_{i-1})`` (``h_0 = 0``);
* a candidate at step ``t`` is scored by an MLP trunk over ``[user, h_{t-1}, track, context, s_t]`` where
  ``s_t`` are three explicit sequence features of the candidate (:data:`SEQUENCE_FEATURES`): its cosine
  distance to the previous track, its smallest distance to any earlier track of the session, and how many
  earlier tracks lie within :data:`NEAR` of it (a same-artist proxy: the synthetic world's tracks of one
  artist lie within about 0.1 of each other). Distances use the track embedding block when the layout has
  one (ALS factors), else the track features but :data:`NOT_SOUND`, centred on their training mean;
* three sigmoid heads (complete, skip, listen > X) and, with ``rl.termination: learned``, the termination
  head P(the session ends after this play | its outcome) from the trunk and the outcome's labels, as in
  the MLP model.

Training is teacher-forced on logged sessions (one padded batch of sessions at a time, loss masked to real
plays), with the same early stopping on validation log-loss as the MLP. In the simulator
(:class:`SequentialResponse`) the GRU state is stepped once per played track and cached per session.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from spotrec.config import RlConfig
from spotrec.rl.features import FeatureLayout
from spotrec.rl.user_model import (
    HEADS,
    OUTCOME_LABELS,
    UserModelData,
    load_checkpoint,
    model_version,
    save_checkpoint,
)

if TYPE_CHECKING:
    from spotrec.rl.env import History, ResponseProbs, SessionSpec

log = logging.getLogger(__name__)

SEQUENCE_FEATURES = ("s_distance_prev", "s_distance_min", "s_near_count")
"""Per-candidate features of the session so far (0, 0, 0 at the first track; counts divided by
:data:`NEAR_CAP`)."""
NEAR = 0.15
"""Cosine distance under which an earlier track counts as "near" the candidate (same-artist proxy)."""
NEAR_CAP = 5.0
NOT_SOUND = ("t_duration", "t_popularity", "t_score")
"""Track-block columns that say nothing about a track's sound (left out of the distances)."""


def similarity_columns(layout: FeatureLayout) -> np.ndarray:
    """Indices of the track block used for distances: the embedding when there is one, else all named
    features but :data:`NOT_SOUND`."""
    if layout.track_vector_dim:
        return np.arange(len(layout.track), layout.track_dim)
    keep = [i for i, n in enumerate(layout.track) if n not in NOT_SOUND]
    return np.array(keep or list(range(layout.track_dim)))


def candidate_sequence_features(
    played: np.ndarray, candidates: np.ndarray, columns: np.ndarray, centre: np.ndarray
) -> np.ndarray:
    """(n, 3) :data:`SEQUENCE_FEATURES` of ``candidates`` (n, dt) after the ``played`` (k, dt) tracks, on the
    track-block ``columns`` centred on ``centre`` (zeros before the first play)."""
    n = len(candidates)
    if len(played) == 0:
        return np.zeros((n, len(SEQUENCE_FEATURES)), np.float32)

    def unit(a: np.ndarray) -> np.ndarray:
        x = np.asarray(a, dtype=np.float32)[:, columns] - centre
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)

    dist = 1.0 - unit(candidates) @ unit(played).T  # (n, k)
    return np.column_stack([dist[:, -1], dist.min(axis=1), (dist < NEAR).sum(axis=1) / NEAR_CAP]).astype(np.float32)


# --- data -----------------------------------------------------------------------------------------


@dataclass
class SessionData:
    """Logged sessions as padded arrays: S sessions of at most L plays."""

    user: np.ndarray
    """(S, du) the session's user context (constant within a session)."""
    track: np.ndarray
    """(S, L, dt)"""
    context: np.ndarray
    """(S, L, dc)"""
    labels: np.ndarray
    """(S, L, 3) in :data:`HEADS` order."""
    valid: np.ndarray
    """(S, L) bool: a real play (not padding)."""
    ended: np.ndarray | None = None
    """(S, L) 1 on the session's last play."""
    order: np.ndarray | None = None
    """(S, L) the row of the source :class:`UserModelData` of each play (-1 on padding)."""

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def from_rows(cls, data: UserModelData, max_length: int | None = None) -> SessionData:
        """Group rows by ``data.session_keys`` and order them by ``data.positions``.

        Sessions longer than ``max_length`` keep their first ``max_length`` plays.
        """
        if data.session_keys is None or data.positions is None:
            raise ValueError("the sequential user model needs session keys and positions in the rows")
        n = len(data)
        frame = pd.DataFrame({"key": data.session_keys, "pos": data.positions, "row": np.arange(n)})
        frame = frame.sort_values(["key", "pos", "row"], kind="stable")
        codes, _ = pd.factorize(frame["key"], sort=False)
        step = frame.groupby(codes).cumcount().to_numpy()
        keep = step < max_length if max_length else np.ones(n, bool)
        codes, step, rows = codes[keep], step[keep], frame["row"].to_numpy()[keep]
        s = int(codes.max()) + 1 if len(codes) else 0
        length = int(step.max()) + 1 if len(step) else 0
        order = np.full((s, length), -1, np.int64)
        order[codes, step] = rows
        valid = order >= 0
        safe = np.where(valid, order, 0)

        def pad(a: np.ndarray) -> np.ndarray:
            out = a[safe]
            out[~valid] = 0
            return out.astype(np.float32)

        return cls(
            user=data.user[order[:, 0]].astype(np.float32) if s else np.zeros((0, data.user.shape[1]), np.float32),
            track=pad(data.track),
            context=pad(data.context),
            labels=pad(data.labels),
            valid=valid,
            ended=None if data.ended is None else pad(data.ended),
            order=order,
        )


def sequence_features(
    track: torch.Tensor, columns: torch.Tensor, centre: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """(S, L, 3) :data:`SEQUENCE_FEATURES` of every play of padded sessions ``track`` (S, L, dt)."""
    x = track[..., columns] - centre
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    dist = 1.0 - x @ x.transpose(1, 2)  # (S, L, L): dist[s, t, j] between plays t and j
    length = track.shape[1]
    earlier = torch.tril(torch.ones(length, length, dtype=torch.bool), diagonal=-1)
    if valid is not None:
        earlier = earlier & valid.unsqueeze(1)
    big = torch.full_like(dist, 2.0)
    d_min = torch.where(earlier, dist, big).min(dim=-1).values
    d_min = torch.where(earlier.any(dim=-1), d_min, torch.zeros_like(d_min))
    near = ((dist < NEAR) & earlier).sum(dim=-1).float() / NEAR_CAP
    prev = torch.zeros_like(d_min)
    if length > 1:
        prev[:, 1:] = torch.diagonal(dist, offset=-1, dim1=1, dim2=2)
    return torch.stack([prev, d_min, near], dim=-1)


# --- the network ----------------------------------------------------------------------------------


class SequentialUserModelNet(nn.Module):
    """GRU over ``[track, labels]`` of the plays so far; MLP trunk over ``[user, h, track, context, s]``."""

    columns: torch.Tensor
    """Indices of the track block the distances use (:func:`similarity_columns`)."""
    centre: torch.Tensor
    """Training mean of those columns (subtracted before the cosine)."""

    def __init__(self, layout: FeatureLayout, gru_hidden: int, trunk: Sequence[int], termination: bool = False) -> None:
        super().__init__()
        self.gru_hidden = gru_hidden
        self.gru = nn.GRU(layout.track_dim + len(HEADS), gru_hidden, batch_first=True)
        layers: list[nn.Module] = []
        width = layout.user_dim + gru_hidden + layout.track_dim + layout.context_dim + len(SEQUENCE_FEATURES)
        for h in trunk:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.Linear(width, len(HEADS))
        self.end = nn.Linear(width + len(HEADS), 1) if termination else None
        self.register_buffer("columns", torch.as_tensor(similarity_columns(layout), dtype=torch.long))
        self.register_buffer("centre", torch.zeros(len(self.columns)))

    def states(self, track: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(S, L, H): the state *before* each play (``h_0 = 0``, then the GRU output after each play)."""
        out, _ = self.gru(torch.cat([track, labels], dim=-1))
        return torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)

    def hidden(
        self, user: torch.Tensor, h: torch.Tensor, track: torch.Tensor, context: torch.Tensor, seq: torch.Tensor
    ) -> torch.Tensor:
        return self.trunk(torch.cat([user, h, track, context, seq], dim=-1))

    def step(self, h: torch.Tensor, track: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, H) state after one more play of ``track`` (B, dt) with outcome ``labels`` (B, 3)."""
        out, _ = self.gru(torch.cat([track, labels], dim=-1).unsqueeze(1), h.unsqueeze(0))
        return out[:, 0]


# --- the trained model ----------------------------------------------------------------------------


@dataclass
class SequentialUserModel:
    """A trained GRU user model; answers in numpy like :class:`~spotrec.rl.user_model.LearnedUserModel`."""

    net: SequentialUserModelNet
    layout: FeatureLayout
    cfg: RlConfig
    version: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    kind: str = "gru"

    @property
    def has_termination(self) -> bool:
        return self.net.end is not None

    @torch.no_grad()
    def predict_sessions(self, data: SessionData) -> tuple[np.ndarray, np.ndarray | None]:
        """Teacher-forced (S, L, 3) head probabilities and (S, L) P(end | the logged outcome)."""
        self.net.eval()
        t = _tensors(data)
        h = self.net.states(t["track"], t["labels"])
        seq = sequence_features(t["track"], self.net.columns, self.net.centre, t["valid"])
        n = t["track"].shape[1]
        hid = self.net.hidden(t["user"].unsqueeze(1).expand(-1, n, -1), h, t["track"], t["context"], seq)
        probs = torch.sigmoid(self.net.heads(hid)).numpy().astype(np.float64)
        end = None
        if self.net.end is not None:
            end = torch.sigmoid(self.net.end(torch.cat([hid, t["labels"]], dim=-1)).squeeze(-1)).numpy()
        return probs, end

    def predict_rows(self, data: UserModelData, batch_sessions: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """(n, 3) probabilities and (n,) P(end | logged outcome) (None without the head) for every row of
        ``data``, in its row order, each given its session so far."""
        sessions = SessionData.from_rows(data)
        out = np.zeros((len(data), len(HEADS)))
        ends = np.zeros(len(data)) if self.has_termination else None
        for i in range(0, len(sessions), batch_sessions):
            part = _slice(sessions, slice(i, i + batch_sessions))
            probs, end = self.predict_sessions(part)
            assert part.order is not None
            rows = part.order[part.valid]
            out[rows] = probs[part.valid]
            if ends is not None and end is not None:
                ends[rows] = end[part.valid]
        return out, ends

    def predict(self, data: UserModelData) -> np.ndarray:
        """(n, 3) probabilities for every row of ``data`` (in its row order), each given its session so far."""
        return self.predict_rows(data)[0]

    @torch.no_grad()
    def initial_state(self) -> np.ndarray:
        return np.zeros(self.net.gru_hidden, np.float32)

    @torch.no_grad()
    def advance(self, h: np.ndarray, track: np.ndarray, outcome: int) -> np.ndarray:
        """The state after playing ``track`` with outcome index ``outcome`` (complete, listen, skip)."""
        self.net.eval()
        out = self.net.step(
            torch.as_tensor(h, dtype=torch.float32).unsqueeze(0),
            torch.tensor(np.asarray(track, dtype=np.float32)).unsqueeze(0),
            torch.as_tensor(OUTCOME_LABELS[outcome]).unsqueeze(0),
        )
        return out[0].numpy()

    def candidate_sequence_features(self, played: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(n, 3) :data:`SEQUENCE_FEATURES` of ``candidates`` (n, dt) after the ``played`` (k, dt) tracks."""
        return candidate_sequence_features(played, candidates, self.net.columns.numpy(), self.net.centre.numpy())

    @torch.no_grad()
    def probabilities(
        self, user: np.ndarray, h: np.ndarray, track: np.ndarray, context: np.ndarray, seq: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(n, 3) head probabilities and, with the termination head, (n, 3) P(end | complete, listen, skip)."""
        self.net.eval()
        track_t = torch.tensor(np.atleast_2d(np.asarray(track, dtype=np.float32)))
        n = track_t.shape[0]

        def rows(a: np.ndarray) -> torch.Tensor:
            return torch.tensor(np.atleast_2d(np.asarray(a, dtype=np.float32))).expand(n, -1)

        hid = self.net.hidden(rows(user), rows(h), track_t, rows(context), torch.tensor(np.asarray(seq, np.float32)))
        probs = torch.sigmoid(self.net.heads(hid)).numpy().astype(np.float64)
        if self.net.end is None:
            return probs, None
        ends = [
            torch.sigmoid(self.net.end(torch.cat([hid, torch.as_tensor(o).expand(n, -1)], dim=-1)).squeeze(-1))
            for o in OUTCOME_LABELS
        ]
        return probs, torch.stack(ends, dim=-1).numpy().astype(np.float64)


def _tensors(data: SessionData) -> dict[str, torch.Tensor]:
    out = {
        "user": torch.as_tensor(data.user),
        "track": torch.as_tensor(data.track),
        "context": torch.as_tensor(data.context),
        "labels": torch.as_tensor(data.labels),
        "valid": torch.as_tensor(data.valid),
    }
    if data.ended is not None:
        out["ended"] = torch.as_tensor(data.ended)
    return out


def _slice(data: SessionData, idx: slice | np.ndarray) -> SessionData:
    """Sessions ``idx``, trimmed to their longest play."""
    valid = data.valid[idx]
    length = max(int(valid.sum(axis=1).max()) if len(valid) else 0, 1)
    return SessionData(
        user=data.user[idx],
        track=data.track[idx][:, :length],
        context=data.context[idx][:, :length],
        labels=data.labels[idx][:, :length],
        valid=valid[:, :length],
        ended=None if data.ended is None else data.ended[idx][:, :length],
        order=None if data.order is None else data.order[idx][:, :length],
    )


def _loss(net: SequentialUserModelNet, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """Masked mean BCE of the three heads (and the termination head, weighted as one more head)."""
    h = net.states(t["track"], t["labels"])
    seq = sequence_features(t["track"], net.columns, net.centre, t["valid"])
    n = t["track"].shape[1]
    hid = net.hidden(t["user"].unsqueeze(1).expand(-1, n, -1), h, t["track"], t["context"], seq)
    valid = t["valid"]
    bce = nn.functional.binary_cross_entropy_with_logits
    loss = bce(net.heads(hid)[valid], t["labels"][valid])
    if net.end is None:
        return loss
    if "ended" not in t:
        raise ValueError("rl.termination: learned needs the label_ended column in the training rows")
    known = valid & ~torch.isnan(t["ended"])  # organic sessions beside an exploration log have no end label
    if not bool(known.any()):
        return loss
    end = bce(net.end(torch.cat([hid, t["labels"]], dim=-1)).squeeze(-1)[known], t["ended"][known])
    return (len(HEADS) * loss + end) / (len(HEADS) + 1)


@torch.no_grad()
def _mean_loss(net: SequentialUserModelNet, data: SessionData, batch: int) -> float:
    net.eval()
    total, weight = 0.0, 0
    for i in range(0, len(data), batch):
        part = _slice(data, slice(i, i + batch))
        w = int(part.valid.sum())
        total += float(_loss(net, _tensors(part))) * w
        weight += w
    return total / max(weight, 1)


def train_sequential_user_model(
    train: UserModelData, validation: UserModelData, layout: FeatureLayout, cfg: RlConfig
) -> SequentialUserModel:
    """Fit the GRU model on whole sessions with Adam; keep the epoch with the best validation loss.

    Batches hold ``cfg.user_model_batch_size // 8`` sessions (a session has several plays, so a batch has
    about as many plays as the MLP's). Early stopping and seeding as :func:`~spotrec.rl.user_model.train_user_model`.
    """
    tr = SessionData.from_rows(train, cfg.max_position)
    va = SessionData.from_rows(validation, cfg.max_position)
    if len(tr) == 0 or len(va) == 0:
        raise ValueError(f"sequential user model needs train and validation sessions; got {len(tr)} and {len(va)}")
    torch.manual_seed(cfg.seed)
    net = SequentialUserModelNet(
        layout, cfg.user_model_gru_hidden, cfg.user_model_hidden, termination=cfg.termination == "learned"
    )
    cols = net.columns.numpy()
    net.centre.copy_(torch.as_tensor(tr.track[tr.valid][:, cols].mean(axis=0)))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.user_model_lr, weight_decay=cfg.user_model_weight_decay)
    batch = max(cfg.user_model_batch_size // 8, 1)
    gen = np.random.default_rng(cfg.seed)
    best_loss, best_state, best_epoch, stale = float("inf"), copy.deepcopy(net.state_dict()), 0, 0
    history: list[dict[str, float]] = []
    # Sessions sorted by length and batched in runs of similar length keep the padding small.
    by_length = np.argsort(tr.valid.sum(axis=1), kind="stable")
    for epoch in range(1, cfg.user_model_max_epochs + 1):
        started = time.perf_counter()
        net.train()
        starts = gen.permutation(np.arange(0, len(tr), batch))
        total, weight = 0.0, 0
        for start in starts:
            part = _slice(tr, by_length[start : start + batch])
            loss = _loss(net, _tensors(part))
            opt.zero_grad()
            loss.backward()
            opt.step()
            w = int(part.valid.sum())
            total += loss.item() * w
            weight += w
        train_loss = total / max(weight, 1)
        val_loss = _mean_loss(net, va, batch * 4)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        if val_loss < best_loss - 1e-5:
            best_loss, best_state, best_epoch, stale = val_loss, copy.deepcopy(net.state_dict()), epoch, 0
        else:
            stale += 1
        log.info(
            "user_model(gru) epoch=%d losses/train=%.4f losses/val=%.4f best_epoch=%d (%.1fs)",
            epoch,
            train_loss,
            val_loss,
            best_epoch,
            time.perf_counter() - started,
        )
        if stale >= cfg.user_model_patience:
            break
    net.load_state_dict(best_state)
    model = SequentialUserModel(net=net, layout=layout, cfg=cfg, history=history)
    model.version = model_version(net, layout, cfg, prefix="umgru")
    return model


def sequential_payload(model: SequentialUserModel) -> dict[str, Any]:
    return {
        "kind": "user_model_gru",
        "version": model.version,
        "layout": model.layout.to_dict(),
        "config": model.cfg.to_dict(),
        "state_dict": model.net.state_dict(),
        "history": model.history,
    }


def save_sequential_user_model(model: SequentialUserModel, directory: str | Path) -> Path:
    """Write ``<directory>/<version>.pt`` and point ``<directory>/LATEST`` at it; return the path."""
    return save_checkpoint(sequential_payload(model), model.version, directory, "user_model(gru)")


def load_sequential_user_model(path: str | Path) -> SequentialUserModel:
    """Load a checkpoint file, or the ``LATEST`` one of a checkpoint directory."""
    return sequential_from_payload(load_checkpoint(path))


def sequential_from_payload(payload: dict[str, Any]) -> SequentialUserModel:
    layout = FeatureLayout.from_dict(payload["layout"])
    cfg = RlConfig.from_dict(payload["config"])
    net = SequentialUserModelNet(
        layout, cfg.user_model_gru_hidden, cfg.user_model_hidden, termination=cfg.termination == "learned"
    )
    net.load_state_dict(payload["state_dict"])
    net.eval()
    return SequentialUserModel(net=net, layout=layout, cfg=cfg, version=payload["version"], history=payload["history"])


# --- as the simulator's response model ------------------------------------------------------------


class SequentialResponse:
    """The GRU user model as a sequential :class:`~spotrec.rl.env.ResponseModel` (the learned simulator).

    The env hands it the session so far (:class:`~spotrec.rl.env.History`); the GRU state is stepped once
    per new play and cached per session, so a step costs one GRU cell and one trunk pass over the candidates.
    With the termination head (``rl.termination: learned``) its P(end | outcome) ends sessions; otherwise
    the env's consecutive-skip rule does.
    """

    sequential = True

    def __init__(self, model: SequentialUserModel) -> None:
        self.model = model
        self._cache: tuple[SessionSpec, tuple[int, ...], tuple[int, ...], np.ndarray] | None = None

    def state(self, session: SessionSpec, history: History) -> np.ndarray:
        """The GRU state after ``history``: stepped on from the cached state when the cache holds a prefix of
        this history for this session, else from the start."""
        n = len(history.played)
        if len(history.outcomes) != n:
            raise ValueError("the sequential user model needs the outcome of every played track")
        done, h = 0, self.model.initial_state()
        if self._cache is not None and self._cache[0] is session:
            _, played, outcomes, cached = self._cache
            k = len(played)
            if k <= n and history.played[:k] == played and history.outcomes[:k] == outcomes:
                done, h = k, cached
        for k in range(done, n):
            h = self.model.advance(h, session.track_features[history.played[k]], history.outcomes[k])
        self._cache = (session, history.played, history.outcomes, h)
        return h

    def probabilities(
        self,
        session: SessionSpec,
        candidates: np.ndarray,
        position: int,
        consecutive_skips: int,
        history: History | None = None,
    ) -> ResponseProbs:
        from spotrec.rl.env import History, ResponseProbs, context_vector

        history = history or History()
        h = self.state(session, history)
        track = session.track_features[candidates]
        seq = self.model.candidate_sequence_features(session.track_features[list(history.played)], track)
        ctx = context_vector(position, consecutive_skips, self.model.cfg)
        p, ends = self.model.probabilities(session.user_features, h, track, ctx, seq)
        quit_after = ends if self.model.cfg.termination == "learned" else None
        return ResponseProbs(p_complete=p[:, 0], p_skip=p[:, 1], p_listen=p[:, 2], p_quit_after=quit_after)


# --- comparison with the MLP ----------------------------------------------------------------------


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int) -> float:
    """Mean |observed rate - mean predicted| over equal-width probability bins, weighted by rows."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        sel = idx == b
        total += sel.sum() * abs(y[sel].mean() - p[sel].mean())
    return float(total / max(len(p), 1))


def compare_user_models(
    predictions: dict[str, np.ndarray],
    test: UserModelData,
    bins: int,
    end_predictions: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """AUC, log-loss and expected calibration error per head for each predictor on the same held-out rows.

    Args:
        predictions: name -> (n, 3) probabilities in :data:`HEADS` order for ``test``'s rows.
        test: held-out rows (whole sessions).
        bins: probability bins of the calibration error.
        end_predictions: name -> (n,) P(the session ends after this play | its logged outcome), compared on
            ``test.ended`` as the head ``ended``.

    Returns:
        head, predictor, metric (auc | log_loss | ece), value; scikit-learn's ``roc_auc_score`` and
        ``log_loss`` (NaN AUC when a head has one class only).
    """
    from sklearn.metrics import log_loss as sk_log_loss
    from sklearn.metrics import roc_auc_score

    def scores(head: str, y: np.ndarray, name: str, p: np.ndarray) -> list[dict[str, Any]]:
        p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
        two = len(np.unique(y)) == 2
        return [
            {"head": head, "predictor": name, "metric": "auc", "value": float(roc_auc_score(y, p)) if two else np.nan},
            {"head": head, "predictor": name, "metric": "log_loss", "value": float(sk_log_loss(y, p, labels=[0, 1]))},
            {"head": head, "predictor": name, "metric": "ece", "value": expected_calibration_error(y, p, bins)},
        ]

    rows: list[dict[str, Any]] = []
    for j, head in enumerate(HEADS):
        for name, probs in predictions.items():
            rows += scores(head, test.labels[:, j], name, probs[:, j])
    if end_predictions and test.ended is not None:
        known = ~np.isnan(test.ended)  # scored where the end is labelled
        for name, p_end in end_predictions.items():
            if known.any():
                rows += scores("ended", test.ended[known], name, np.asarray(p_end)[known])
    return pd.DataFrame(rows, columns=["head", "predictor", "metric", "value"])


def comparison_text(table: pd.DataFrame) -> str:
    """:func:`compare_user_models` output as one line per head with every predictor's metrics."""
    wide = table.pivot_table(index="head", columns=["predictor", "metric"], values="value", sort=False)
    return wide.to_string(float_format=lambda v: f"{v:.4f}")


def mlp_end_probabilities(model: Any, data: UserModelData) -> np.ndarray | None:
    """(n,) the MLP's P(end | the logged outcome) per row, or None without a termination head."""
    if not model.has_termination:
        return None
    net = model.net
    net.eval()
    with torch.no_grad():
        args = [torch.as_tensor(a, dtype=torch.float32) for a in (data.user, data.track, data.context, data.labels)]
        return torch.sigmoid(net.end_logits(*args)).numpy().astype(np.float64)


def gru_end_probabilities(model: SequentialUserModel, data: UserModelData) -> np.ndarray | None:
    """(n,) the GRU's P(end | the logged outcome) per row (row order of ``data``), or None without the head."""
    return model.predict_rows(data)[1]
