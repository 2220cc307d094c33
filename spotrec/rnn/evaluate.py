"""Next-track evaluation of the taste RNN against simple baselines, and the Yes.com playlist experiment.

The task: given a history (the songs before position t), rank all songs; a hit@k is the true song t among
the first k, and MRR averages 1 / its rank (0 when it is outside the ranked list). Baselines use the same
song vectors or none:

- ``last_track``: the neighbours of the last song's vector (item-to-item word2vec);
- ``mean_history``: the neighbours of the mean of the history's vectors (the paper's simplest taste vector);
- ``popularity``: the most frequent songs in training.

Exact ranking is one BLAS product per chunk of queries (the catalogues here are thousands of songs); the
served path uses Annoy (see :mod:`spotrec.rnn.ann`). :func:`recommendation_metrics` scores the served
``gold.rnn_recommendations`` against held-out next tracks in Spark, reusing
:func:`spotrec.evaluation.metrics.ranking_metrics`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.columns import TOKENS, TRACKS
from spotrec.config import RnnConfig
from spotrec.rnn.taste_rnn import (
    TasteRNN,
    load_checkpoint,
    predict_taste,
    retrieval_query,
    retrieval_space,
    train_taste_rnn,
)

log = logging.getLogger(__name__)

PUBLISHED_YES_SMALL = {
    "GRU, full softmax (published)": {"hit@50": 0.296, "hit@100": 0.428},
    "BiLSTM + attention (published)": {"hit@50": 0.314, "hit@100": 0.443},
}
"""Published next-song figures on yes_small (3,168 songs) that our numbers are set beside."""


def next_track_metrics(ranked: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (10, 50, 100)) -> dict[str, float]:
    """hit@k for each ``k`` and MRR of ranked lists against one true next song per query.

    Args:
        ranked: (queries, K) song ids, best first (K >= max(ks) for the hit rates to mean what they say).
        targets: (queries,) the true next songs; a target that is not a valid song (e.g. -1) never hits.

    Returns:
        ``hit@k`` per k and ``mrr`` (reciprocal rank within the K ranked songs, 0 when absent).
    """
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    if len(targets) == 0:
        raise ValueError("no queries to evaluate")
    hits = ranked == targets[:, None]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    out = {f"hit@{k}": float(np.mean((first > 0) & (first <= k))) for k in ks}
    out["mrr"] = float(np.mean(np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)))
    return out


def rank_by_vectors(
    queries: np.ndarray,
    vectors: np.ndarray,
    k: int,
    exclude: Sequence[Sequence[int]] | None = None,
    chunk: int = 2048,
    metric: str = "cosine",
) -> np.ndarray:
    """Exact top-``k`` songs by cosine (or inner product, ``metric="dot"``) to each query, skipping ``exclude``.

    Returns:
        (queries, k) song ids, best first; -1 in slots left empty when fewer than ``k`` songs remain.
    """
    if metric not in ("cosine", "dot"):
        raise ValueError(f"metric must be 'cosine' or 'dot', got {metric!r}")
    cosine = metric == "cosine"
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12) if cosine else vectors
    k = min(k, len(vectors))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        if cosine:
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        scores = q @ unit.T
        if exclude is not None:
            for row, items in enumerate(exclude[start : start + chunk]):
                valid = [i for i in items if 0 <= i < len(vectors)]
                scores[row, valid] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        ranked = np.take_along_axis(part, order, axis=1)
        # Excluded songs only fill the list when fewer than k others exist: mark those slots empty (-1).
        ranked[np.take_along_axis(top_scores, order, axis=1) == -np.inf] = -1
        out[start : start + chunk] = ranked
    return out


def rank_by_popularity(
    counts: np.ndarray, n_queries: int, k: int, exclude: Sequence[Sequence[int]] | None = None
) -> np.ndarray:
    """The ``k`` most frequent songs for every query, skipping each query's ``exclude`` songs."""
    order = np.argsort(-np.asarray(counts), kind="stable")
    if exclude is None:
        return np.tile(order[:k], (n_queries, 1))
    head = order[: k + max((len(e) for e in exclude), default=0)]
    out = np.full((n_queries, min(k, len(order))), -1, dtype=np.int64)  # -1: no song left for this slot
    for row, items in enumerate(exclude):
        banned = set(items)
        kept = [i for i in head if i not in banned][: out.shape[1]]
        out[row, : len(kept)] = kept
    return out


def evaluate_next_track(
    histories: Sequence[np.ndarray],
    targets: np.ndarray,
    vectors: np.ndarray,
    counts: np.ndarray,
    model: TasteRNN | None = None,
    ks: Sequence[int] = (10, 50, 100),
    exclude_history: bool = True,
) -> dict[str, dict[str, float]]:
    """hit@k and MRR of the RNN (when given) and the three baselines on (history -> next song) queries.

    Args:
        histories: token arrays, oldest first, each non-empty (typically the last ``n`` songs).
        targets: the true next tokens (-1 for a song outside the vocabulary: a miss for every method).
        vectors: song vectors, row = token.
        counts: training frequency per token (the popularity baseline).
        model: the trained taste RNN.
        ks: cut-offs.
        exclude_history: never rank a song of the query's own history (it was just played).

    Returns:
        method -> metric -> value.
    """
    if any(len(h) == 0 for h in histories):
        raise ValueError("every history needs at least one song")
    k = max(ks)
    exclude = [list(h) for h in histories] if exclude_history else None
    results: dict[str, dict[str, float]] = {}
    if model is not None:
        tastes = predict_taste(model, vectors, list(histories))
        items, metric = retrieval_space(model, vectors)  # softmax: [vector, bias] . [taste, 1]
        queries = retrieval_query(model.spec.loss, tastes)
        ranked = rank_by_vectors(queries, items, k, exclude, metric="dot" if metric == "dot" else "cosine")
        results["rnn"] = next_track_metrics(ranked, targets, ks)
    last = np.stack([vectors[h[-1]] for h in histories])
    results["last_track"] = next_track_metrics(rank_by_vectors(last, vectors, k, exclude), targets, ks)
    mean = np.stack([vectors[h].mean(axis=0) for h in histories])
    results["mean_history"] = next_track_metrics(rank_by_vectors(mean, vectors, k, exclude), targets, ks)
    results["popularity"] = next_track_metrics(rank_by_popularity(counts, len(histories), k, exclude), targets, ks)
    return results


def recommendation_metrics(recs: DataFrame, held_out: DataFrame, k: int) -> dict[str, float]:
    """Score served recommendations against each user's held-out next track(s), in Spark.

    Args:
        recs: user_id, track_id, rank (e.g. gold.rnn_recommendations).
        held_out: user_id, track_id: what each user played next.
        k: cut-off.

    Returns:
        ``spotrec.evaluation.metrics.ranking_metrics`` (precision, recall, map, ndcg, hit_rate) plus ``mrr``
        (mean over held-out users of 1 / rank of their first hit within k, 0 without a hit).
    """
    from spotrec.evaluation.metrics import ranking_metrics

    metrics = ranking_metrics(recs, held_out, k)
    users = held_out.select(C.USER_ID).distinct()
    first_hit = (
        recs.where(F.col(C.RANK) <= k)
        .join(held_out.select(C.USER_ID, C.TRACK_ID).distinct(), [C.USER_ID, C.TRACK_ID])
        .groupBy(C.USER_ID)
        .agg(F.min(C.RANK).alias("_first"))
    )
    row = (
        users.join(first_hit, C.USER_ID, "left")
        .agg(F.avg(F.coalesce(1.0 / F.col("_first"), F.lit(0.0))).alias("mrr"))
        .first()
    )
    metrics["mrr"] = float(row["mrr"]) if row is not None and row["mrr"] is not None else 0.0
    return metrics


# -- Yes.com playlists ---------------------------------------------------------------------------


def read_yes_playlists(path: str) -> list[list[str]]:
    """Playlists of a Yes.com ``train.txt``/``test.txt``: two header lines, then space-separated song ids."""
    with open(path) as fh:
        lines = fh.read().splitlines()[2:]
    return [line.split() for line in lines if line.strip()]


def _load_yes(spark: SparkSession, folder: str) -> list[list[str]]:
    """Songs per playlist of ``train.txt``, through ``spotrec.sources.read_playlists`` when it exists.

    Playlists come back ordered by playlist id, so the seeded hold-out draws the same playlists every run.
    """
    train = os.path.join(folder, "train.txt")
    try:
        from spotrec.sources import read_playlists
    except ImportError:  # the reader module is optional here; the format is simple enough to parse
        return read_yes_playlists(train)
    frame = read_playlists(spark, "yes", train).playlists
    rows = frame.groupBy(C.PLAYLIST_ID).agg(F.array_sort(F.collect_list(F.struct(C.POSITION, C.TRACK_ID))).alias("s"))
    by_id = {r[C.PLAYLIST_ID]: [x[C.TRACK_ID] for x in r["s"]] for r in rows.collect()}
    return [by_id[k] for k in sorted(by_id)]


def evaluate_yes(
    spark: SparkSession,
    folder: str,
    cfg: RnnConfig,
    work_dir: str,
    holdout_fraction: float = 0.1,
    min_inputs: int = 1,
) -> dict[str, Any]:
    """Hold out the last song of a random ``holdout_fraction`` of playlists and predict it from the rest.

    Protocol: playlists with at least two songs are eligible; a seeded random 10% of them lose their last song,
    which becomes the target, and the up-to-``n`` songs before it are the history. Everything else (all other
    playlists, and the held-out playlists minus their last song) trains the song vectors (CBOW-NS) and the RNN
    (windows of ``n`` with left padding, so short radio playlists contribute). All songs are candidates, the
    history's own songs excepted.

    Returns:
        method -> metrics, plus the run facts (playlists, songs, queries, epochs).
    """
    from spotrec.features.documents import (
        build_vocabulary,
        encode_documents,
        rnn_windows,
        validation_split,
        write_parquet,
    )
    from spotrec.rnn.cbow import train_cbow

    playlists = _load_yes(spark, folder)
    rng = np.random.default_rng(cfg.seed)
    eligible = [i for i, p in enumerate(playlists) if len(p) >= 2]
    held = set(rng.choice(eligible, size=round(holdout_fraction * len(eligible)), replace=False).tolist())
    docs_rows = [(f"p{i}", p[:-1] if i in held else p) for i, p in enumerate(playlists)]
    docs = spark.createDataFrame(docs_rows, f"{C.USER_ID} string, {TRACKS} array<string>")
    vocab = build_vocabulary(docs, cfg.top_n_tracks, cfg.min_count).cache()
    voc = vocab.orderBy("token").collect()
    token_of = {r[C.TRACK_ID]: r["token"] for r in voc}
    counts = np.array([r["count"] for r in voc], dtype=np.float64)
    encoded = encode_documents(docs, vocab, [C.USER_ID], min_length=1).cache()

    docs_path, train_path, val_path = (os.path.join(work_dir, x) for x in ("docs", "train", "val"))
    write_parquet(encoded.where(F.size(TOKENS) >= 2).select(TOKENS), docs_path, files=4)
    cbow = train_cbow(docs_path, counts, cfg)
    vectors = cbow.vectors

    windows = rnn_windows(encoded, cfg.sequence_length, cfg.window_stride, min_inputs=min_inputs)
    train, val = validation_split(windows, cfg.validation_fraction, cfg.seed)
    write_parquet(train.select("input_tokens", "target_token"), train_path, files=4)
    write_parquet(val.select("input_tokens", "target_token"), val_path, files=1)
    result = train_taste_rnn(train_path, val_path, vectors, cfg, work_dir, "yes-eval")
    model = load_checkpoint(result.checkpoint)

    histories, targets = [], []
    for i in sorted(held):
        prefix = [token_of[t] for t in playlists[i][:-1] if t in token_of][-cfg.sequence_length :]
        if not prefix:
            continue
        histories.append(np.asarray(prefix, dtype=np.int64))
        targets.append(token_of.get(playlists[i][-1], -1))
    metrics = evaluate_next_track(histories, np.asarray(targets), vectors, counts, model, ks=(10, 50, 100))
    return {
        "metrics": metrics,
        "facts": {
            "playlists": len(playlists),
            "songs": len(voc),
            "queries": len(histories),
            "cbow_epochs": cfg.w2v_epochs,
            "cbow_pairs_per_s": round(cbow.pairs_per_second),
            "rnn_best_epoch": result.best_epoch,
            "rnn_epochs_run": len(result.val_losses),
            "sequence_length": cfg.sequence_length,
            "cell": cfg.rnn_cell,
            "loss": cfg.rnn_loss,
        },
    }


def format_yes_report(report: dict[str, Any]) -> str:
    """A plain-text table of our methods beside the published yes_small figures."""
    lines = [f"{'method':34s} {'hit@10':>8s} {'hit@50':>8s} {'hit@100':>8s} {'MRR':>8s}"]
    for name, m in report["metrics"].items():
        lines.append(f"{name:34s} {m['hit@10']:8.3f} {m['hit@50']:8.3f} {m['hit@100']:8.3f} {m['mrr']:8.4f}")
    for name, m in PUBLISHED_YES_SMALL.items():
        lines.append(f"{name:34s} {'':>8s} {m['hit@50']:8.3f} {m['hit@100']:8.3f} {'':>8s}")
    lines.append("facts: " + json.dumps(report["facts"], sort_keys=True))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m spotrec.rnn.evaluate --yes ../shared/data/yes-playlists/yes_small``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--yes", required=True, help="folder with the Yes.com train.txt")
    parser.add_argument("--set", action="append", default=[], help="RnnConfig override key=value")
    parser.add_argument("--work-dir", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import yaml

    from spotrec.spark import get_spark

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    defaults = {"vector_size": 64, "sequence_length": 5, "w2v_epochs": 10, "rnn_epochs": 30, "hidden_size": 128}
    cfg = RnnConfig(**{**defaults, **overrides})
    spark = get_spark()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="spotrec-yes-")
    print(format_yes_report(evaluate_yes(spark, args.yes, cfg, work_dir)))


if __name__ == "__main__":
    main()
