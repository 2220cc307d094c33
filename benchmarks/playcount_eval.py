"""Discover Weekly models on anyone's play counts: ALS vs co-occurrence vs popularity on a file you give.

    python benchmarks/playcount_eval.py --source play_counts:hetrec=../shared/data/lastfm-hetrec-2k
    python benchmarks/playcount_eval.py --source play_counts:generic_play_counts=/data/train_triplets.txt
    python benchmarks/playcount_eval.py --source play_counts:generic_play_counts=plays.csv \\
        --option delimiter=';' --option header=false --map user_id=2 --map track_id=0 --map play_count=1

The input is read exactly as ``spotrec ingest --source KIND:FORMAT=PATH`` reads it: the same spec
(:func:`spotrec.steps.ingest.parse_source`; ``FORMAT=PATH`` alone is taken as play counts here), the same
choice of files from a folder or zip (:func:`spotrec.sources.files.select_inputs`) and the same reader
(:func:`spotrec.sources.read_play_counts`: ``hetrec``, or ``generic_play_counts`` for any ``user, item,
count`` CSV / TSV with or without header, which is the Echo Nest Taste Profile triplets' shape). Reader
options are ``--option KEY=VALUE`` (``delimiter``, ``header``, ``user_prefix``, ``item_prefix``; ``\\t``
or ``tab`` is a tab, ``true`` / ``false`` are booleans) and the column mapping is ``--map FIELD=REF``
(FIELD one of ``user_id``, ``track_id``, ``play_count``; REF a header name or a 0-based position).

Counts become confidence with ``log1p`` (:func:`spotrec.features.interactions.interactions_from_counts`)
as the pipeline's play-count path does. Play counts have no timestamps, so the split is
:func:`spotrec.evaluation.split.holdout_split`: per user a pseudo-random 20% of their items are held
out (at least one stays in train); the held-out items are the relevant ones, and every model excludes
what the user played in train. Compared in one process, on the same split, with one metric
implementation (:func:`spotrec.evaluation.harness.evaluate`): most-popular unheard, item co-occurrence,
Spark implicit ALS over a rank / regParam / alpha grid for each ``--solvers`` value (``mllib``, ``cg``),
and, when installed, the ``implicit`` library's ALS given MLlib's confidence ``1 + alpha * r`` (see
``benchmarks/als_bench.py``). Prints the data's size, then a table per seed and the mean over seeds.
A missing file or one the reader rejects ends the script with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import itertools
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import SourceSpec, SparkConfig, WeeklyConfig
from spotrec.errors import SpotrecError
from spotrec.evaluation.baselines import CooccurrenceRecommender, PopularityRecommender
from spotrec.evaluation.harness import evaluate, format_cell, markdown_table
from spotrec.evaluation.split import holdout_split
from spotrec.features.interactions import extend_index, interactions_from_counts, with_indexes
from spotrec.sources import PLAY_COUNT_READERS, read_play_counts
from spotrec.sources.files import select_inputs
from spotrec.spark import get_spark
from spotrec.steps.ingest import parse_source

PROG = "playcount_eval"
METRICS = ("ndcg", "map", "precision", "recall", "hit_rate", "coverage")
"""Metric keys of the table, in column order (names of :mod:`spotrec.evaluation.metrics`)."""


class UsageError(SpotrecError):
    """A bad command line or an input that cannot be scored: one line and exit code 2."""


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def build_parser(
    prog: str = PROG, description: str | None = None, *, source_required: bool = True
) -> argparse.ArgumentParser:
    """The command line; ``hetrec_eval.py`` reuses it with its own name and ``--source`` optional."""
    parser = argparse.ArgumentParser(prog=prog, description=description or (__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--source",
        required=source_required,
        help="KIND:FORMAT=PATH as for `spotrec ingest --source` (kind play_counts; formats: "
        f"{', '.join(sorted(PLAY_COUNT_READERS))}); PATH a file, folder, glob or zip",
    )
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="reader option (repeatable)")
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=REF",
        help="column mapping for generic_play_counts: user_id / track_id / play_count = header name or position",
    )
    parser.add_argument("--transform", default="log1p", choices=["log1p", "raw"], help="count -> confidence")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of each user's items held out")
    parser.add_argument("--seeds", default="42", help="comma-separated holdout seeds")
    parser.add_argument("--k", type=int, default=10, help="metric cut-off")
    parser.add_argument("--ranks", default="8,32,64")
    parser.add_argument("--regs", default="0.05,0.2")
    parser.add_argument("--alphas", default="1,10")
    parser.add_argument("--implicit-regs", default="0.5,2,8", help="implicit's lambda values ('' = skip implicit)")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--solvers", default="mllib,cg", help="weekly.solver values to evaluate (comma-separated)")
    parser.add_argument("--checkpoint-dir", default=os.path.join(tempfile.gettempdir(), "spotrec-playcount-ckpt"))
    return parser


def _option_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    if text in ("\\t", "tab"):
        return "\t"
    return text


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r} must look like KEY=VALUE")
        out[key.strip()] = val
    return out


def source_spec(text: str, options: Sequence[str] = (), mapping: Sequence[str] = ()) -> SourceSpec:
    """The ``--source`` spec with its reader options, checked to name a play-count reader."""
    spec = parse_source(text)
    if spec.kind == "events" and ":" not in text.split("=", 1)[0]:
        spec = spec.model_copy(update={"kind": "play_counts"})  # FORMAT=PATH: play counts is all this scores
    if spec.kind != "play_counts":
        raise UsageError(f"--source {text!r}: this benchmark scores play counts; use play_counts:FORMAT=PATH")
    if spec.format not in PLAY_COUNT_READERS:
        raise UsageError(
            f"--source {text!r}: no play-count reader is called {spec.format!r}; "
            f"known formats: {', '.join(sorted(PLAY_COUNT_READERS))}"
        )
    opts: dict[str, Any] = {k: _option_value(v) for k, v in _pairs(options, "--option").items()}
    if mapping:
        opts["mapping"] = _pairs(mapping, "--map")
    return spec.model_copy(update={"options": opts})


def check_exists(path: str) -> None:
    """Fail before Spark starts when a local path (file, folder or glob) matches nothing."""
    if "://" in path or path.startswith("dbfs:"):
        return  # cluster paths: the reader reports them
    if glob.has_magic(path):
        if not glob.glob(path):
            raise UsageError(f"no file matches {path}")
    elif not os.path.exists(path):
        raise UsageError(f"no such file or folder: {path}")


def read_counts(spark: SparkSession, spec: SourceSpec, work_dir: str) -> DataFrame:
    """PLAY_COUNTS rows from the spec, through the ingest step's file choice and reader."""
    inputs = select_inputs(spec.format, spec.path, work_dir=work_dir)
    if inputs.skipped:
        print(f"{spec.format} {spec.path}: {inputs.summary()}")
    return read_play_counts(spark, spec.format, inputs.paths, **spec.options)  # type: ignore[arg-type]


def _grid(args: argparse.Namespace) -> list[WeeklyConfig]:
    return [
        WeeklyConfig(solver=s, rank=r, reg_param=lam, alpha=a, max_iter=args.iters, num_blocks=4, seed=7)
        for s, r, lam, a in itertools.product(
            [s for s in args.solvers.split(",") if s], _ints(args.ranks), _floats(args.regs), _floats(args.alphas)
        )
    ]


def score(spark: SparkSession, spec: SourceSpec, args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Read, split and score every model for every seed; prints the size and per-seed lines as it goes.

    Returns:
        Model name -> one row per seed (the metrics plus ``fit_s`` and ``total_s``).
    """
    from spotrec.weekly.als import make_recommender

    # A zip is unpacked once per content under the temp folder (as the ingest step does off-cluster), and
    # kept: the cached frames below may be recomputed from the files later.
    counts = read_counts(spark, spec, os.path.join(tempfile.gettempdir(), "spotrec-ingest"))
    interactions = interactions_from_counts(counts, transform=args.transform)
    users = extend_index(None, interactions.select(C.USER_ID), C.USER_ID, C.USER_IDX).cache()
    items = extend_index(None, interactions.select(C.TRACK_ID), C.TRACK_ID, C.TRACK_IDX).cache()
    indexed = with_indexes(interactions, users, items).cache()
    n_users, n_items, n_pairs = users.count(), items.count(), indexed.count()
    if n_pairs == 0:
        raise UsageError(
            f"{spec.format} read no play counts from {spec.path} (no line with a user, an item and a count)"
        )
    density = n_pairs / (n_users * n_items)
    print(
        f"{spec.format} {spec.path}: {n_users:,} users, {n_items:,} items, {n_pairs:,} non-zeros "
        f"(user, item) counts, density {density:.4%}"
    )
    grid = _grid(args)
    implicit_regs = _floats(args.implicit_regs)
    has_implicit = bool(implicit_regs) and importlib.util.find_spec("implicit") is not None
    if implicit_regs and not has_implicit:
        print("implicit is not installed: its rows are left out (pip install implicit)")
    k = args.k
    table: dict[str, list[dict[str, float]]] = {}

    def add(name: str, row: dict[str, float]) -> None:
        table.setdefault(name, []).append(row)
        print(f"  {name:<30} ndcg@{k} {row['ndcg']:.4f}  map@{k} {row['map']:.4f}  fit {row['fit_s']:.1f} s")

    for seed in _ints(args.seeds):
        train, test = holdout_split(indexed, fraction=args.fraction, seed=seed)
        train = train.cache()
        relevant = test.select(C.USER_ID, C.TRACK_ID).cache()
        print(f"\nseed {seed}: {train.count():,} train pairs, {relevant.count():,} held out")
        models: list[Any] = [PopularityRecommender(), CooccurrenceRecommender()]
        for cfg in grid:
            als = make_recommender(cfg, args.checkpoint_dir)
            als.name = f"spark {cfg.solver} r{cfg.rank} l{cfg.reg_param:g} a{cfg.alpha:g}"
            models.append(als)
        for model in models:
            (result,) = evaluate([model], train, relevant, k=k, n=k)
            fit_s = result.fit_seconds
            add(result.model, {**result.metrics, "fit_s": fit_s, "total_s": fit_s + result.eval_seconds})
        if has_implicit and grid:
            _score_implicit(spark, args, grid, implicit_regs, train, test, n_users, n_items, add)
        train.unpersist()
        relevant.unpersist()
    indexed.unpersist()
    users.unpersist()
    items.unpersist()
    return table


def _score_implicit(
    spark: SparkSession,
    args: argparse.Namespace,
    grid: list[WeeklyConfig],
    regs: list[float],
    train: DataFrame,
    test: DataFrame,
    n_users: int,
    n_items: int,
    add: Callable[[str, dict[str, float]], None],
) -> None:
    """``implicit`` on the same train / held-out pairs (string ids rebuilt from the indexes)."""
    from threadpoolctl import threadpool_limits  # installed with implicit

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from als_bench import World, run_implicit, with_ids

    pdf = train.select(C.USER_IDX, C.TRACK_IDX, F.col(C.CONFIDENCE).alias("rating")).toPandas()
    test_pdf = test.select(C.USER_IDX, C.TRACK_IDX).toPandas()
    world = World(pdf, test_pdf, n_users, n_items)
    relevant_idx = with_ids(test.select(C.USER_IDX, C.TRACK_IDX)).select(C.USER_ID, C.TRACK_ID).cache()
    first = grid[0]
    for cfg, lam in itertools.product(
        [c for c in grid if c.reg_param == first.reg_param and c.solver == first.solver], regs
    ):
        with threadpool_limits(1, "blas"):  # implicit threads over users itself (and warns otherwise)
            row = run_implicit(spark, world, cfg, lam, relevant_idx, args.k)
        fit_s = float(row["fit_s"])
        add(
            f"implicit r{cfg.rank} l{lam:g} a{cfg.alpha:g}",
            {**row, "coverage": float("nan"), "fit_s": fit_s, "total_s": fit_s + float(row["topn_s"])},
        )
    relevant_idx.unpersist()


def format_report(table: dict[str, list[dict[str, float]]], k: int) -> str:
    """The mean over seeds of every model's row, as a markdown table."""
    header = ["model", "fit s", "total s"] + [
        {"ndcg": f"NDCG@{k}", "map": f"MAP@{k}", "hit_rate": f"hit@{k}", "coverage": "coverage"}.get(m, f"{m}@{k}")
        for m in METRICS
    ]
    rows = []
    for name, seeds in table.items():

        def mean(key: str, seeds: list[dict[str, float]] = seeds) -> float:
            return sum(float(r.get(key, float("nan"))) for r in seeds) / len(seeds)

        rows.append([name, f"{mean('fit_s'):.1f}", f"{mean('total_s'):.1f}", *(format_cell(mean(m)) for m in METRICS)])
    return markdown_table(header, rows)


def main(
    argv: Sequence[str] | None = None,
    *,
    spark: SparkSession | None = None,
    prog: str = PROG,
    parser: argparse.ArgumentParser | None = None,
) -> int:
    """Run the benchmark; returns the exit code (2 with one line on stderr for a bad input).

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
        spark: a session to use (tests); default: a local one built here.
        prog: the name in error lines.
        parser: a parser from :func:`build_parser` with other defaults (``hetrec_eval.py``).
    """
    args = (parser or build_parser(prog)).parse_args(argv)
    try:
        spec = source_spec(args.source, args.option, args.map)
        check_exists(spec.path)
        if spark is None:
            quiet = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
            spark = get_spark(SparkConfig(master="local[*]", shuffle_partitions=4, conf=quiet))
            spark.sparkContext.setLogLevel("ERROR")
        table = score(spark, spec, args)
    except (SpotrecError, AnalysisException, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{prog}: error: {first}", file=sys.stderr)
        return 2
    print(
        f"\nMean over seeds {args.seeds} (k = {args.k}; relevant = held-out items the user never played in train; "
        "fit s: fit alone, total s: fit + recommend + metrics)"
    )
    print(format_report(table, args.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
