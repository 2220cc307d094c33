"""Yes.com next-song prediction: the taste RNN vs word2vec and popularity baselines (Chen et al. 2012 data).

    python benchmarks/yes_eval.py --yes ../shared/data/yes-playlists/yes_small
    python benchmarks/yes_eval.py --yes <folder> --set rnn_epochs=5 --set rnn_loss=l2

Protocol: playlists with at least two songs are eligible; a seeded random 10% of them lose their last song,
which becomes the target, and the up-to-``sequence_length`` songs before it are the history. Everything
else (all other playlists, and the held-out playlists minus their last song) trains the song vectors
(CBOW-NS) and the RNN (windows of ``n`` with left padding, so short radio playlists contribute). All songs
are candidates, the history's own songs excepted. Ranking is exact, on the driver
(:func:`spotrec.rnn.evaluate.evaluate_next_track`), and hit@k / MRR are
:func:`spotrec.evaluation.metrics.next_track_metrics_arrays`: the queries are playlist prefixes, not users
of a split, so the Spark harness has nothing to add here. Prints our methods beside the published figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.columns import TOKENS, TRACKS
from spotrec.config import RnnConfig
from spotrec.features.documents import build_vocabulary, encode_documents, rnn_windows, validation_split, write_parquet
from spotrec.rnn.cbow import train_cbow
from spotrec.rnn.evaluate import evaluate_next_track
from spotrec.rnn.taste_rnn import load_checkpoint
from spotrec.rnn.training import train_taste_rnn
from spotrec.sources import read_playlists
from spotrec.sources.yes import YES

PUBLISHED_YES_SMALL = {
    "GRU, full softmax (published)": {"hit@50": 0.296, "hit@100": 0.428},
    "BiLSTM + attention (published)": {"hit@50": 0.314, "hit@100": 0.443},
}
"""Published next-song figures on yes_small (3,168 songs) that our numbers are set beside."""

DEFAULTS = {"vector_size": 64, "sequence_length": 5, "w2v_epochs": 10, "rnn_epochs": 30, "hidden_size": 128}
"""RnnConfig values of the published runs (``--set`` overrides them)."""


def yes_playlist_songs(spark: SparkSession, path: str) -> list[list[str]]:
    """Songs per playlist of a Yes.com playlist file (``spotrec.sources.yes.read_yes_playlists``), in order.

    Playlists come back ordered by playlist id (``yes:<file stem>:<line number>``, as strings), so the seeded
    hold-out draws the same playlists every run.
    """
    frame = read_playlists(spark, YES, path).playlists
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
    """Hold out the last song of a random ``holdout_fraction`` of ``folder/train.txt``'s playlists; predict it.

    Returns:
        ``metrics`` (method -> hit@10 / hit@50 / hit@100 / mrr) and ``facts`` (playlists, songs, queries,
        epochs, ...).
    """
    playlists = yes_playlist_songs(spark, os.path.join(folder, "train.txt"))
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--yes", required=True, help="folder with the Yes.com train.txt")
    parser.add_argument("--set", action="append", default=[], help="RnnConfig override key=value")
    parser.add_argument("--work-dir", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import yaml

    from spotrec.spark import get_spark

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    cfg = RnnConfig(**{**DEFAULTS, **overrides})
    spark = get_spark()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="spotrec-yes-")
    print(format_yes_report(evaluate_yes(spark, args.yes, cfg, work_dir)))


if __name__ == "__main__":
    main()
