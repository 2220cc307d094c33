"""The sequential (GRU) user model on an MSSD session log: skip prediction against two baselines.

    python benchmarks/mssd_eval.py ../shared/data/mssd-sample/log_sample.csv          # smoke (201 rows)
    python benchmarks/mssd_eval.py /data/mssd/training_set/log_0_*.csv --features /data/mssd/tf/tf_*.csv

The log is read by the pipeline's own reader (:func:`spotrec.sources.mssd.read_mssd_log`: ``skipped`` =
``skip_2``, one pseudo-user per session), sessions are split 70 / 15 / 15 by a seeded hash of the session
id, and on the held-out sessions the skip head is scored (AUC and log-loss from scikit-learn, accuracy at
0.5, the challenge's per-play accuracy) for:

* ``majority``: the training skip rate for every play (accuracy of the majority class);
* ``previous_track``: the previous play's skip flag in the session (the training rate for the first play),
  the strong MSSD baseline: skips come in runs;
* ``mlp``: the MLP user model (candidate, position, skip run);
* ``gru``: the sequential user model (:mod:`spotrec.rl.sequential`), which also reads the session so far.

MSSD has no play durations, so ``completed`` = not skipped and ``listened`` = not skipped; only the skip
head is reported. Track block: the track's training play count (log, scaled) and smoothed training skip
rate, plus with ``--features`` the five audio features, duration and the 8-dim acoustic vector. The user
block is a constant (MSSD sessions are anonymous). The console shows sizes, seconds and the table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from spotrec import columns as C
from spotrec.config import RlConfig, SparkConfig
from spotrec.rl.features import FeatureLayout
from spotrec.rl.sequential import train_sequential_user_model
from spotrec.rl.user_model import SKIPPED, UserModelData, train_user_model
from spotrec.sources.mssd import read_mssd_log, read_mssd_track_features
from spotrec.spark import get_spark

AUDIO = ("acousticness", "danceability", "energy", "valence", "tempo")


def load(paths: list[str], features: str | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(plays: session_id, position, track_id, skipped) and optional track features, on the driver."""
    spark = get_spark(
        SparkConfig(master="local[2]", shuffle_partitions=4, conf={"spark.ui.showConsoleProgress": "false"})
    )
    spark.sparkContext.setLogLevel("ERROR")
    log = read_mssd_log(spark, ",".join(paths))
    plays = log.where(log[C.SESSION_ID].isNotNull()).select(
        C.SESSION_ID,
        log[C.SESSION_POSITION].cast("int").alias(C.POSITION),
        C.TRACK_ID,
        log[C.SKIPPED].cast("boolean").alias(C.SKIPPED),  # the reader's frame is text, as read
    )
    pdf: pd.DataFrame = plays.toPandas()
    tracks = None
    if features:
        tf = read_mssd_track_features(spark, features, with_acoustic_vector=True)
        tracks = tf.select(C.TRACK_ID, C.DURATION_MS, *AUDIO, "acoustic_vector").toPandas()
    return pdf, tracks


def rows(
    plays: pd.DataFrame, tracks: pd.DataFrame | None, train_mask: np.ndarray
) -> tuple[UserModelData, FeatureLayout]:
    """All plays as user-model rows; per-track statistics come from the training sessions only."""
    skipped = plays[C.SKIPPED].astype(float).to_numpy()
    base = float(skipped[train_mask].mean())
    stats = (
        pd.DataFrame({"t": plays[C.TRACK_ID][train_mask], "s": skipped[train_mask]})
        .groupby("t")["s"]
        .agg(["sum", "count"])
    )
    n = plays[C.TRACK_ID].map(stats["count"]).fillna(0).to_numpy()
    s = plays[C.TRACK_ID].map(stats["sum"]).fillna(0).to_numpy()
    # A play's own label must not be in its track's rate: leave it out for training rows.
    own = np.where(train_mask, 1.0, 0.0)
    n_wo, s_wo = n - own, s - own * skipped
    rate = (s_wo + 5 * base) / (n_wo + 5)
    cols = [np.log1p(n_wo) / np.log1p(max(n.max(), 1)), rate]
    names = ["t_plays", "t_skip_rate"]
    if tracks is not None:
        feats = plays[[C.TRACK_ID]].merge(tracks, on=C.TRACK_ID, how="left")
        for f in AUDIO:
            v = feats[f].astype(float)
            cols.append(((v / 200.0) if f == "tempo" else v).fillna(0.5).to_numpy())
            names.append(f"t_{f}")
        cols.append((feats[C.DURATION_MS].astype(float) / 600_000.0).fillna(0.35).to_numpy())
        names.append("t_duration")
        vec = np.stack(
            [np.zeros(8) if not isinstance(x, list | np.ndarray) else np.asarray(x) for x in feats["acoustic_vector"]]
        )
        cols += list(vec.T)
        names += [f"t_acoustic{i}" for i in range(8)]
    track = np.column_stack(cols).astype(np.float32)
    # Skip run before each play, within its session.
    order = plays.sort_values([C.SESSION_ID, C.POSITION]).index.to_numpy()
    run = np.zeros(len(plays))
    prev_session, r = None, 0
    for i in order:
        sess = plays.at[i, C.SESSION_ID]
        if sess != prev_session:
            prev_session, r = sess, 0
        run[i] = r
        r = r + 1 if skipped[i] else 0
    context = np.column_stack([np.minimum(plays[C.POSITION].to_numpy() / 20.0, 1.0), np.minimum(run, 5) / 5]).astype(
        np.float32
    )
    labels = np.column_stack([1 - skipped, skipped, 1 - skipped]).astype(np.float32)
    layout = FeatureLayout(user=("u_bias",), track=tuple(names), context=("c_position", "c_consecutive_skips"))
    data = UserModelData(
        user=np.ones((len(plays), 1), np.float32),
        track=track,
        context=context,
        labels=labels,
        track_ids=plays[C.TRACK_ID].to_numpy(),
        session_keys=plays[C.SESSION_ID].to_numpy(),
        positions=plays[C.POSITION].to_numpy(),
    )
    return data, layout


def subset(data: UserModelData, keep: np.ndarray) -> UserModelData:
    return UserModelData(
        user=data.user[keep],
        track=data.track[keep],
        context=data.context[keep],
        labels=data.labels[keep],
        track_ids=None if data.track_ids is None else data.track_ids[keep],
        session_keys=None if data.session_keys is None else data.session_keys[keep],
        positions=None if data.positions is None else data.positions[keep],
    )


def previous_track(plays: pd.DataFrame, base: float) -> np.ndarray:
    """Each play's previous skip flag in its session (``base`` for the first play)."""
    ordered = plays.sort_values([C.SESSION_ID, C.POSITION])
    prev = ordered.groupby(C.SESSION_ID)[C.SKIPPED].shift(1).astype(float).fillna(base)
    return prev.reindex(plays.index).to_numpy()


def score(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    p = np.clip(p, 1e-4, 1 - 1e-4)
    two = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if two else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "accuracy": float(np.mean((p > 0.5) == (y == 1))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", help="MSSD session-log CSV files (or folders / globs)")
    parser.add_argument("--features", help="MSSD track-features CSV files (tf_*.csv), comma-separated or a glob")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--gru-hidden", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    plays, tracks = load(args.logs, args.features)
    plays = plays.dropna(subset=[C.SKIPPED, C.POSITION]).reset_index(drop=True)
    sessions = plays[C.SESSION_ID].unique()
    u = pd.Series(np.random.default_rng(args.seed).random(len(sessions)), index=sessions)
    share = plays[C.SESSION_ID].map(u).to_numpy()
    train_m, val_m, test_m = share < 0.7, (share >= 0.7) & (share < 0.85), share >= 0.85
    print(
        f"{len(plays):,} plays in {len(sessions):,} sessions (train {train_m.sum():,} / validation {val_m.sum():,} / "
        f"test {test_m.sum():,} plays); read in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    if not (train_m.any() and val_m.any() and test_m.any()):
        raise SystemExit("too few sessions for a 70/15/15 split")
    data, layout = rows(plays, tracks, train_m)
    train, validation, test = (subset(data, m) for m in (train_m, val_m, test_m))
    cfg = RlConfig(
        user_model_max_epochs=args.epochs,
        user_model_gru_hidden=args.gru_hidden,
        max_position=20,
        seed=args.seed,
    )
    y = test.labels[:, SKIPPED]
    base = float(train.labels[:, SKIPPED].mean())
    results = {
        "majority": score(y, np.full(len(y), base)),
        "previous_track": score(y, previous_track(plays, base)[test_m]),
    }
    seconds = {"majority": 0.0, "previous_track": 0.0}
    t = time.perf_counter()
    mlp = train_user_model(train, validation, layout, cfg)
    seconds["mlp"] = time.perf_counter() - t
    results["mlp"] = score(y, mlp.predict(test)[:, SKIPPED])
    t = time.perf_counter()
    gru = train_sequential_user_model(train, validation, layout, cfg)
    seconds["gru"] = time.perf_counter() - t
    results["gru"] = score(y, gru.predict(test)[:, SKIPPED])
    table = pd.DataFrame(results).T
    table["train_s"] = pd.Series(seconds)
    print(f"skip_2 on {len(y):,} held-out plays (skip rate {y.mean():.3f}):")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
