"""The learned user model (world model): how a listener responds to a track at a point of a session.

``f(user context, track features, session context) -> P(complete), P(skip), P(listen > X)``: one MLP trunk
with three sigmoid heads, trained jointly with binary cross-entropy (with ``rl.termination: learned``, a
fourth head gives P(the session ends after this play | its outcome)). It is the simulator's engine
(:mod:`spotrec.rl.env`) and the greedy baseline's scorer, so it is judged on held-out sessions
against two baselines (the global rate, the track's historical rate) by AUC, log-loss and calibration,
and, on the synthetic world, against the true probabilities.

Training runs on the driver (the data is a few float arrays per row); inference on executors loads the
checkpoint file written by :func:`save_user_model`.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from spotrec import columns as C
from spotrec.config import RlConfig
from spotrec.rl.features import (
    CONTEXT_FEATURES,
    LABEL_ENDED,
    LABELS,
    TRACK_FEATURES,
    USER_FEATURES,
    FeatureLayout,
)

log = logging.getLogger(__name__)

HEADS = ("completed", "skipped", "listened")
"""Output order of the three heads (matches :data:`spotrec.rl.features.LABELS`)."""
COMPLETED, SKIPPED, LISTENED = range(3)
OUTCOME_LABELS = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=np.float32)
"""The three head labels of each simulator outcome (complete, listen, skip): the termination head's input."""
EPS = 1e-7


@dataclass
class UserModelData:
    """Float arrays of one split: user context, track features, session context and the 3 labels."""

    user: np.ndarray
    track: np.ndarray
    context: np.ndarray
    labels: np.ndarray
    """(n, 3) in :data:`HEADS` order."""
    track_ids: np.ndarray | None = None
    """Track ids per row (for the track-rate baseline)."""
    ended: np.ndarray | None = None
    """(n,) 1 on a session's last play (the termination head's label), when the rows have it."""
    session_keys: np.ndarray | None = None
    """(n,) the session of each row (what the sequential user model groups by), when the rows have it."""
    positions: np.ndarray | None = None
    """(n,) 1-based position of each row in its session, when the rows have it."""

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_pandas(cls, pdf: pd.DataFrame) -> UserModelData:
        """From packed rows (:func:`spotrec.rl.features.pack_features`) collected to pandas."""

        def stack(col: str) -> np.ndarray:
            return np.stack(pdf[col].to_numpy()).astype(np.float32) if len(pdf) else np.zeros((0, 0), np.float32)

        return cls(
            user=stack(USER_FEATURES),
            track=stack(TRACK_FEATURES),
            context=stack(CONTEXT_FEATURES),
            labels=pdf[list(LABELS)].to_numpy(dtype=np.float32),
            track_ids=pdf[C.TRACK_ID].to_numpy() if C.TRACK_ID in pdf else None,
            ended=pdf[LABEL_ENDED].to_numpy(dtype=np.float32) if LABEL_ENDED in pdf else None,
            session_keys=(
                (pdf[C.USER_ID].astype(str) + "\x1f" + pdf[C.SESSION_ID].astype(str)).to_numpy()
                if C.SESSION_ID in pdf and C.USER_ID in pdf
                else None
            ),
            positions=pdf[C.POSITION].to_numpy() if C.POSITION in pdf else None,
        )


class UserModelNet(nn.Module):
    """MLP trunk over ``[user, track, context]`` with three logit heads (complete, skip, listen > X).

    With ``termination`` a fourth head (created after the others, so a model without it is unchanged)
    gives the logit of "the listener ends the session after this play" from the trunk and the play's
    outcome (its three labels): P(end | state, track, outcome), what the simulator needs per outcome.
    """

    def __init__(self, layout: FeatureLayout, hidden: Sequence[int], termination: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = layout.user_dim + layout.track_dim + layout.context_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.Linear(width, len(HEADS))
        self.end = nn.Linear(width + len(HEADS), 1) if termination else None

    def forward(self, user: torch.Tensor, track: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Logits, shape (n, 3)."""
        return self.heads(self.trunk(torch.cat([user, track, context], dim=-1)))

    def end_logits(
        self, user: torch.Tensor, track: torch.Tensor, context: torch.Tensor, outcome: torch.Tensor
    ) -> torch.Tensor:
        """Termination logits, shape (n,), given each play's (n, 3) outcome labels."""
        if self.end is None:
            raise ValueError("this user model has no termination head (rl.termination: learned trains one)")
        hidden = self.trunk(torch.cat([user, track, context], dim=-1))
        return self.end(torch.cat([hidden, outcome], dim=-1)).squeeze(-1)


class UserModelEnsemble(nn.Module):
    """Several :class:`UserModelNet` trained alike from different seeds; answers with their mean probability.

    One MLP's fit varies with its seed (on the long-term world the held-out AUC of the completion head moved
    from 0.822 to 0.800 between two seeds), and the simulator, the greedy baseline and the agent's reward
    prior all inherit that draw. The mean probability damps it, and can only lower the log-loss against
    any labels (log-loss is convex in the probability), so the ensemble is never worse on that score than
    its average member. It returns the logit of the mean, so callers keep using logits.
    """

    def __init__(self, members: Sequence[UserModelNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @property
    def end(self) -> nn.Module | None:
        """The first member's termination head (all members have one, or none does)."""
        first: UserModelNet = self.members[0]  # type: ignore[assignment]
        return first.end

    def forward(self, user: torch.Tensor, track: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Logits of the members' mean probabilities, shape (n, 3)."""
        return _mean_logit([m(user, track, context) for m in self.members])

    def end_logits(
        self, user: torch.Tensor, track: torch.Tensor, context: torch.Tensor, outcome: torch.Tensor
    ) -> torch.Tensor:
        """Logits of the members' mean termination probabilities, shape (n,)."""
        return _mean_logit([m.end_logits(user, track, context, outcome) for m in self.members])  # type: ignore[operator]


def _mean_logit(logits: list[torch.Tensor]) -> torch.Tensor:
    """The logit of the mean of the members' probabilities."""
    return torch.logit(torch.stack([torch.sigmoid(x) for x in logits]).mean(dim=0), eps=EPS)


UserNet = UserModelNet | UserModelEnsemble
"""What a :class:`LearnedUserModel` runs: one MLP or an ensemble of them (``rl.user_model_ensemble``)."""


def new_user_model_net(layout: FeatureLayout, cfg: RlConfig) -> UserNet:
    """An untrained net of the shape ``cfg`` asks for (a checkpoint's state dict loads into it)."""
    if cfg.user_model_ensemble == 1:
        return _member_net(layout, cfg)
    return UserModelEnsemble([_member_net(layout, cfg) for _ in range(cfg.user_model_ensemble)])


def _member_net(layout: FeatureLayout, cfg: RlConfig) -> UserModelNet:
    """One untrained MLP of the configured shape."""
    return UserModelNet(layout, cfg.user_model_hidden, termination=cfg.termination == "learned")


@dataclass
class LearnedUserModel:
    """A trained user model with its feature layout and version; answers in numpy."""

    net: UserNet
    layout: FeatureLayout
    cfg: RlConfig
    version: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per-epoch training log (epoch, train_loss, val_loss)."""

    @torch.no_grad()
    def probabilities(self, user: np.ndarray, track: np.ndarray, context: np.ndarray) -> np.ndarray:
        """P(complete), P(skip), P(listen > X) per row, shape (n, 3).

        ``user`` and ``context`` may be single vectors; they are broadcast over the ``n`` tracks.
        """
        # np.array copies: inputs may be read-only views of Arrow buffers, which torch refuses to wrap.
        track_t = torch.from_numpy(np.array(np.atleast_2d(track), dtype=np.float32))
        n = track_t.shape[0]
        user_t = torch.from_numpy(np.array(np.atleast_2d(user), dtype=np.float32)).expand(n, -1)
        ctx_t = torch.from_numpy(np.array(np.atleast_2d(context), dtype=np.float32)).expand(n, -1)
        self.net.eval()
        return torch.sigmoid(self.net(user_t, track_t, ctx_t)).numpy().astype(np.float64)

    @property
    def has_termination(self) -> bool:
        return self.net.end is not None

    @torch.no_grad()
    def end_probabilities(self, user: np.ndarray, track: np.ndarray, context: np.ndarray) -> np.ndarray:
        """(n, 3) P(the listener ends the session after this play | outcome complete, listen, skip)."""
        track_t = torch.from_numpy(np.array(np.atleast_2d(track), dtype=np.float32))
        n = track_t.shape[0]
        user_t = torch.from_numpy(np.array(np.atleast_2d(user), dtype=np.float32)).expand(n, -1)
        ctx_t = torch.from_numpy(np.array(np.atleast_2d(context), dtype=np.float32)).expand(n, -1)
        self.net.eval()
        out = [
            torch.sigmoid(self.net.end_logits(user_t, track_t, ctx_t, torch.from_numpy(o).expand(n, -1)))
            for o in OUTCOME_LABELS
        ]
        return torch.stack(out, dim=-1).numpy().astype(np.float64)

    def predict(self, data: UserModelData, batch_size: int = 65_536) -> np.ndarray:
        """Probabilities for every row of ``data``, shape (n, 3)."""
        out = [
            self.probabilities(
                data.user[i : i + batch_size], data.track[i : i + batch_size], data.context[i : i + batch_size]
            )
            for i in range(0, len(data), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(HEADS)))


def _tensors(data: UserModelData) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(a, dtype=torch.float32) for a in (data.user, data.track, data.context, data.labels))


def _loss(
    net: UserNet,
    user: torch.Tensor,
    track: torch.Tensor,
    ctx: torch.Tensor,
    labels: torch.Tensor,
    ended: torch.Tensor | None,
) -> torch.Tensor:
    """Mean BCE over the three heads, or over all four (each head weighted alike) with the termination head."""
    loss = nn.functional.binary_cross_entropy_with_logits(net(user, track, ctx), labels)
    if net.end is None or ended is None:
        return loss
    known = ~torch.isnan(ended)  # rows without an end label (organic sessions beside an exploration log)
    if not bool(known.any()):
        return loss
    logits = net.end_logits(user[known], track[known], ctx[known], labels[known])
    end = nn.functional.binary_cross_entropy_with_logits(logits, ended[known])
    return (len(HEADS) * loss + end) / (len(HEADS) + 1)


def _ended(data: UserModelData, net: UserNet) -> torch.Tensor | None:
    if net.end is None:
        return None
    if data.ended is None:
        raise ValueError("rl.termination: learned needs the label_ended column in the training rows")
    return torch.as_tensor(data.ended, dtype=torch.float32)


@torch.no_grad()
def _mean_loss(net: UserNet, data: UserModelData) -> float:
    user, track, ctx, labels = _tensors(data)
    net.eval()
    return float(_loss(net, user, track, ctx, labels, _ended(data, net)))


def train_user_model(
    train: UserModelData, validation: UserModelData, layout: FeatureLayout, cfg: RlConfig
) -> LearnedUserModel:
    """Fit the three heads jointly (mean BCE) with Adam; keep the epoch with the best validation loss.

    Stops early after ``cfg.user_model_patience`` epochs without improvement. Seeded by ``cfg.seed``. With
    ``cfg.user_model_ensemble`` > 1, fits that many members alike from seeds ``seed, seed + 1, ...`` and
    returns their :class:`UserModelEnsemble` (the history rows carry each one's ``member`` index).
    """
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(f"user model needs train and validation rows; got {len(train)} and {len(validation)}")
    fits = [_fit_member(train, validation, layout, cfg, cfg.seed + i) for i in range(cfg.user_model_ensemble)]
    net: UserNet = fits[0][0] if len(fits) == 1 else UserModelEnsemble([member for member, _ in fits])
    history = [
        {**row, "member": float(i)} if len(fits) > 1 else row for i, (_, rows) in enumerate(fits) for row in rows
    ]
    if len(fits) > 1:
        log.info("user_model ensemble of %d: val loss %.4f", len(fits), _mean_loss(net, validation))
    model = LearnedUserModel(net=net, layout=layout, cfg=cfg, history=history)
    model.version = model_version(net, layout, cfg, prefix="um")
    return model


def _fit_member(
    train: UserModelData, validation: UserModelData, layout: FeatureLayout, cfg: RlConfig, seed: int
) -> tuple[UserModelNet, list[dict[str, float]]]:
    """One MLP fitted from ``seed`` with early stopping: its best epoch's weights and the per-epoch log."""
    torch.manual_seed(seed)
    net = _member_net(layout, cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.user_model_lr, weight_decay=cfg.user_model_weight_decay)
    user, track, ctx, labels = _tensors(train)
    ended = _ended(train, net)
    gen = torch.Generator().manual_seed(seed)
    best_loss, best_state, best_epoch, stale = float("inf"), copy.deepcopy(net.state_dict()), 0, 0
    history: list[dict[str, float]] = []
    for epoch in range(1, cfg.user_model_max_epochs + 1):
        started = time.perf_counter()
        net.train()
        order = torch.randperm(len(train), generator=gen)
        total = 0.0
        for start in range(0, len(train), cfg.user_model_batch_size):
            idx = order[start : start + cfg.user_model_batch_size]
            loss = _loss(net, user[idx], track[idx], ctx[idx], labels[idx], None if ended is None else ended[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        train_loss = total / len(train)
        val_loss = _mean_loss(net, validation)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        improved = val_loss < best_loss - 1e-5
        if improved:
            best_loss, best_state, best_epoch, stale = val_loss, copy.deepcopy(net.state_dict()), epoch, 0
        else:
            stale += 1
        log.info(
            "user_model epoch=%d losses/train=%.4f losses/val=%.4f best_epoch=%d (%.1fs)",
            epoch,
            train_loss,
            val_loss,
            best_epoch,
            time.perf_counter() - started,
        )
        if stale >= cfg.user_model_patience:
            log.info("user_model early stop at epoch %d; keeping epoch %d", epoch, best_epoch)
            break
    net.load_state_dict(best_state)
    return net, history


# --- versioned checkpoints ------------------------------------------------------------------------


def model_version(net: nn.Module, layout: FeatureLayout, cfg: RlConfig, prefix: str) -> str:
    """A content hash of weights, layout and config: the same training run always gets the same version."""
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, buf)
    h = hashlib.sha1(buf.getvalue())
    h.update(repr((layout.to_dict(), sorted(cfg.to_dict().items()))).encode())
    return f"{prefix}-{h.hexdigest()[:12]}"


def user_model_payload(model: LearnedUserModel) -> dict[str, Any]:
    """What a checkpoint holds (also embedded in the agent's checkpoint, so one file ships to executors)."""
    return {
        "kind": "user_model",
        "version": model.version,
        "layout": model.layout.to_dict(),
        "config": model.cfg.to_dict(),
        "state_dict": model.net.state_dict(),
        "history": model.history,
    }


def user_model_from_payload(payload: dict[str, Any]) -> LearnedUserModel:
    layout = FeatureLayout.from_dict(payload["layout"])
    cfg = RlConfig.from_dict(payload["config"])
    net = new_user_model_net(layout, cfg)
    net.load_state_dict(payload["state_dict"])
    net.eval()
    return LearnedUserModel(net=net, layout=layout, cfg=cfg, version=payload["version"], history=payload["history"])


def save_checkpoint(payload: dict[str, Any], version: str, directory: str | Path, what: str) -> Path:
    """Write ``<directory>/<version>.pt`` and point ``<directory>/LATEST`` at it; return the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{version}.pt"
    torch.save(payload, path)
    (directory / "LATEST").write_text(version + "\n")
    log.info("%s checkpoint %s", what, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload of a checkpoint file, or of the ``LATEST`` one of a checkpoint directory."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{(path / 'LATEST').read_text().strip()}.pt"
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return payload


def save_user_model(model: LearnedUserModel, directory: str | Path) -> Path:
    """Write ``<directory>/<version>.pt`` and point ``<directory>/LATEST`` at it; return the path."""
    return save_checkpoint(user_model_payload(model), model.version, directory, "user_model")


def load_user_model(path: str | Path) -> LearnedUserModel:
    """Load a checkpoint file, or the ``LATEST`` one of a checkpoint directory."""
    return user_model_from_payload(load_checkpoint(path))


# --- evaluation -----------------------------------------------------------------------------------


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half; NaN with one class only."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(scores, dtype=np.float64)).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities (clipped to [1e-7, 1 - 1e-7])."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def track_rate_baseline(train: UserModelData, rows: UserModelData, prior_strength: float) -> np.ndarray:
    """Each row's track's historical rate of each label in ``train``, shrunk toward the global rate.

    ``(label sum + m * global) / (plays + m)``; tracks unseen in training get the global rate.
    """
    if train.track_ids is None or rows.track_ids is None:
        raise ValueError("the track-rate baseline needs track ids in both frames")
    global_rate = train.labels.mean(axis=0)
    sums = pd.DataFrame(train.labels, columns=list(HEADS)).groupby(train.track_ids).agg(["sum", "count"])
    out = np.tile(global_rate, (len(rows), 1)).astype(np.float64)
    for j, head in enumerate(HEADS):
        rate = (sums[(head, "sum")] + prior_strength * global_rate[j]) / (sums[(head, "count")] + prior_strength)
        mapped = pd.Series(rows.track_ids).map(rate).to_numpy(dtype=np.float64)
        out[:, j] = np.where(np.isnan(mapped), global_rate[j], mapped)
    return out


def calibration_table(
    labels: np.ndarray, probs: np.ndarray, bins: int, true_probs: np.ndarray | None = None
) -> pd.DataFrame:
    """Equal-width bins of predicted probability: count, mean predicted, observed rate, mean true probability.

    A calibrated model has mean predicted close to observed (and, on the synthetic world, to true) per bin.
    Empty bins are left out.
    """
    p = np.asarray(probs, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    frame = pd.DataFrame({"bin": idx, "pred": p, "observed": np.asarray(labels, dtype=np.float64)})
    if true_probs is not None:
        frame["true"] = np.asarray(true_probs, dtype=np.float64)
    agg = {"count": ("pred", "size"), "mean_pred": ("pred", "mean"), "observed": ("observed", "mean")}
    if true_probs is not None:
        agg["true"] = ("true", "mean")
    return frame.groupby("bin").agg(**agg).reset_index()  # type: ignore[call-overload]


def evaluate_user_model(
    model: LearnedUserModel,
    train: UserModelData,
    test: UserModelData,
    true_probs: np.ndarray | None = None,
) -> pd.DataFrame:
    """AUC and log-loss per head for the model and both baselines, plus the model's calibration table.

    Args:
        model: the trained user model.
        train: the rows the baselines learn their rates from.
        test: held-out rows (other sessions).
        true_probs: optional (n_test, 3) ground-truth probabilities (synthetic world); adds the log-loss of
            the truth itself (the floor any model can reach) and a ``calib_true`` column per bin.

    Returns:
        Long frame: head, predictor (user_model | global_rate | track_rate | truth), metric
        (auc | log_loss | n | calib_count | calib_mean_pred | calib_observed | calib_true), bin (or None), value.
    """
    predictors = {
        "user_model": model.predict(test),
        "global_rate": np.tile(train.labels.mean(axis=0), (len(test), 1)),
    }
    if train.track_ids is not None and test.track_ids is not None:
        predictors["track_rate"] = track_rate_baseline(train, test, model.cfg.history_prior_strength)
    if true_probs is not None:
        predictors["truth"] = np.asarray(true_probs, dtype=np.float64)
    rows: list[dict[str, Any]] = []
    for j, head in enumerate(HEADS):
        y = test.labels[:, j]
        for name, probs in predictors.items():
            rows.append({"head": head, "predictor": name, "metric": "auc", "bin": None, "value": auc(y, probs[:, j])})
            rows.append(
                {"head": head, "predictor": name, "metric": "log_loss", "bin": None, "value": log_loss(y, probs[:, j])}
            )
        rows.append({"head": head, "predictor": "user_model", "metric": "n", "bin": None, "value": float(len(y))})
        table = calibration_table(
            y,
            predictors["user_model"][:, j],
            model.cfg.calibration_bins,
            None if true_probs is None else true_probs[:, j],
        )
        for rec in table.to_dict("records"):
            for col in ("count", "mean_pred", "observed", "true"):
                if col in rec:
                    rows.append(
                        {
                            "head": head,
                            "predictor": "user_model",
                            "metric": f"calib_{col}",
                            "bin": int(rec["bin"]),
                            "value": float(rec[col]),
                        }
                    )
    return pd.DataFrame(rows, columns=["head", "predictor", "metric", "bin", "value"])
