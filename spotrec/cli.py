"""`spotrec <step>`: one command per pipeline step, and `spotrec pipeline` for all of them in order.

Every step reads its inputs from tables, writes its outputs to tables and records a row in ops.runs.
A step that fails prints one line saying what to fix and exits non-zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import SparkSession

from spotrec import tables as T
from spotrec.config import Config, SourceSpec, load_config
from spotrec.errors import SpotrecError
from spotrec.logs import FORMATS, configure_logging, log_context
from spotrec.ops import tracked_run
from spotrec.spark import get_spark
from spotrec.tables import Storage

log = logging.getLogger("spotrec")


@dataclass
class Context:
    spark: SparkSession
    storage: Storage
    cfg: Config
    args: argparse.Namespace


def step_generate(ctx: Context) -> None:
    from spotrec.synth.world import generate_world

    s = ctx.cfg.storage
    result = generate_world(ctx.spark, ctx.cfg.generate, s.raw_dir, s.artifacts_dir)
    print(f"[generate] {result}")


def step_ingest(ctx: Context) -> None:
    from spotrec.ingest.job import run_ingest

    sources = [_parse_source(s) for s in (getattr(ctx.args, "source", None) or [])]
    with tracked_run(
        ctx.spark,
        ctx.storage,
        ctx.cfg,
        "ingest",
        inputs=[],
        outputs=[T.BRONZE_EVENTS, T.SILVER_EVENTS, T.QUARANTINE, T.TRACKS, T.PLAYLISTS, T.PLAY_COUNTS],
    ) as run_id:
        run_ingest(ctx.spark, ctx.storage, ctx.cfg, run_id, sources or None)


def step_matrix(ctx: Context) -> None:
    from spotrec.features.matrix import run_matrix

    with tracked_run(
        ctx.spark,
        ctx.storage,
        ctx.cfg,
        "matrix",
        inputs=[T.SILVER_EVENTS, T.PLAY_COUNTS],
        outputs=[T.INTERACTIONS, T.USER_INDEX, T.TRACK_INDEX],
    ):
        run_matrix(ctx.spark, ctx.storage, ctx.cfg)


def playlist_week(storage: Storage) -> str:
    """The Monday after the newest interaction: the week the playlist is for."""
    import datetime as dt

    from pyspark.sql import functions as F

    from spotrec import columns as C

    row = storage.read(T.INTERACTIONS).agg(F.max(C.LAST_PLAYED)).first()
    latest = row[0].date() if row and row[0] else dt.date.today()
    return (latest + dt.timedelta(days=7 - latest.weekday())).isoformat()


def step_evaluate(ctx: Context) -> None:
    from spotrec.evaluation.discover_eval import run_discover_evaluation

    with tracked_run(
        ctx.spark, ctx.storage, ctx.cfg, "evaluate", inputs=[T.SILVER_EVENTS, T.TRACKS], outputs=[T.MODEL_METRICS]
    ) as run_id:
        run_discover_evaluation(ctx.spark, ctx.storage, ctx.cfg, run_id)


def step_als(ctx: Context) -> None:
    import dataclasses

    from spotrec.discover import run_discover
    from spotrec.evaluation.discover_eval import run_als_tuning

    outputs = [
        T.USER_FACTORS,
        T.TRACK_FACTORS,
        T.DISCOVER_WEEKLY,
        T.SIMILAR_TRACKS,
        T.TASTE_CLUSTERS,
        T.USER_TASTE_PROFILE,
        T.MODEL_METRICS,
    ]
    with tracked_run(
        ctx.spark, ctx.storage, ctx.cfg, "als", inputs=[T.INTERACTIONS, T.TRACKS, T.SILVER_EVENTS], outputs=outputs
    ) as run_id:
        if getattr(ctx.args, "tune", False):
            best = run_als_tuning(ctx.spark, ctx.storage, ctx.cfg, run_id)
            ctx.cfg.als = dataclasses.replace(
                ctx.cfg.als, rank=int(best["rank"]), reg_param=best["reg_param"], alpha=best["alpha"]
            )
            print(f"[als] training the final model with {best}")
        week = getattr(ctx.args, "week", None) or playlist_week(ctx.storage)
        summary = run_discover(ctx.spark, ctx.storage, ctx.cfg, run_id, week)
        print(f"[als] model {summary['model_version']}, Discover Weekly for week {summary['week']}")
        for table, rows in summary["rows"].items():
            print(f"[als]   {table}: {rows:,} rows")
        truth = summary["taste_recovery"]
        if truth is not None:
            print(
                f"[als] taste clusters vs the world's true taste groups ({truth['tracks']:,.0f} tracks, "
                f"{truth['clusters']:.0f} clusters, {truth['groups']:.0f} groups): adjusted Rand index "
                f"{truth['ari']:.3f} (chance 0), purity {truth['purity']:.3f} (chance {truth['purity_chance']:.3f})"
            )


def step_discovery(ctx: Context) -> None:
    from spotrec.discovery.job import run_discovery
    from spotrec.discovery.tables import DISCOVERY_TABLES
    from spotrec.discovery.week_eval import run_discovery_evaluation

    with tracked_run(
        ctx.spark,
        ctx.storage,
        ctx.cfg,
        "discovery",
        inputs=[T.SILVER_EVENTS, T.PLAYLISTS],
        outputs=[*DISCOVERY_TABLES, T.MODEL_METRICS],
    ) as run_id:
        # Fit on the training weeks and score the test week beside ALS; serve that same model (or refit).
        evaluated = run_discovery_evaluation(ctx.spark, ctx.storage, ctx.cfg, run_id)
        dcfg = ctx.cfg.discovery
        run = run_discovery(
            ctx.spark,
            ctx.storage,
            dcfg,
            ctx.cfg.storage.artifacts_dir,
            model=None if dcfg.refit_for_serving else evaluated.model,
        )
        print(
            f"[discovery] model {run.model_version}: {run.vocabulary_size:,} songs, {run.train_windows:,} training "
            f"windows; checkpoint {run.checkpoint}; Annoy index {run.index_path}"
        )


def step_playlists(ctx: Context) -> None:
    from spotrec.playlists.evaluate import comparison_table
    from spotrec.playlists.job import RL_PLAYLISTS, USER_MODEL_METRICS, discover_weekly_scores, run_playlists

    with tracked_run(
        ctx.spark,
        ctx.storage,
        ctx.cfg,
        "playlists",
        inputs=[T.SILVER_EVENTS, T.TRACKS, T.USER_FACTORS, T.TRACK_FACTORS, T.DISCOVER_WEEKLY],
        outputs=[USER_MODEL_METRICS, RL_PLAYLISTS, T.MODEL_METRICS],
    ) as run_id:
        r = run_playlists(
            ctx.spark,
            ctx.storage,
            ctx.cfg,
            ctx.cfg.playlists,
            run_id,
            scores=discover_weekly_scores(ctx.storage),
        )
        print(f"[playlists] {r.user_model_version} / {r.policy_version}: {r.playlists_written:,} rows")
        print(comparison_table(r.evaluation))


def step_report(ctx: Context) -> None:
    from spotrec.evaluation.report import write_report

    path = write_report(ctx.spark, ctx.storage, f"{ctx.cfg.storage.artifacts_dir}/report.html")
    print(f"[report] wrote {path}")


def step_maintenance(ctx: Context) -> None:
    from spotrec.maintenance import DEFAULT_RETAIN_HOURS, parse_zorder, run_maintenance, select_tables

    a = ctx.args
    specs = select_tables(getattr(a, "table", None))
    zorder = parse_zorder(getattr(a, "zorder", None) or [])
    retain = getattr(a, "retain_hours", DEFAULT_RETAIN_HOURS)
    vacuum = not getattr(a, "no_vacuum", False)
    # inputs and outputs name the same tables: ops.runs then shows each table's version before and after.
    with tracked_run(ctx.spark, ctx.storage, ctx.cfg, "maintenance", inputs=list(specs), outputs=list(specs)):
        done = run_maintenance(
            ctx.spark,
            ctx.storage,
            retain_hours=retain,
            tables=specs,
            zorder_by=zorder,
            allow_short_retention=getattr(a, "allow_short_retention", False),
            vacuum=vacuum,
        )
    what = f"optimized and vacuumed (retain {retain:g} h)" if vacuum else "optimized"
    print(f"[maintenance] {what} {len(done)} tables: {', '.join(done) or 'none exist yet'}")


STEPS: dict[str, Callable[[Context], None]] = {
    "generate": step_generate,
    "ingest": step_ingest,
    "matrix": step_matrix,
    "evaluate": step_evaluate,
    "als": step_als,
    "discovery": step_discovery,
    "playlists": step_playlists,
    "report": step_report,
    "maintenance": step_maintenance,
}
PIPELINE = ["generate", "ingest", "matrix", "evaluate", "als", "discovery", "playlists", "report"]


def _parse_source(text: str) -> SourceSpec:
    """``KIND:FORMAT=PATH`` or ``FORMAT=PATH`` (kind events)."""
    if "=" not in text:
        raise SpotrecError(f"--source {text!r} must look like FORMAT=PATH or KIND:FORMAT=PATH")
    head, path = text.split("=", 1)
    kind, fmt = head.split(":", 1) if ":" in head else ("events", head)
    return SourceSpec(kind=kind, format=fmt, path=path)


def summarize_tables(storage: Storage) -> str:
    """Rows and Delta version of every table that exists, as an aligned text table."""
    lines = [f"{'table':32} {'rows':>12} {'version':>8}  location"]
    for spec in T.all_tables():
        if not storage.exists(spec):
            continue
        rows = storage.read(spec).count()
        where = storage.table_name(spec) if storage.uses_catalog else storage.path(spec)
        lines.append(f"{spec.full_name:32} {rows:>12,} {storage.version(spec)!s:>8}  {where}")
    return "\n".join(lines)


def step_pipeline(ctx: Context) -> None:
    for name in PIPELINE:
        if name in ctx.args.skip:
            continue
        started = time.time()
        print(f"\n=== spotrec {name} ===", flush=True)
        with log_context(step=name):
            STEPS[name](ctx)
        print(f"=== {name} done in {time.time() - started:.0f}s ===", flush=True)
    print("\nTables written:\n" + summarize_tables(ctx.storage))


def build_parser() -> argparse.ArgumentParser:
    def add_common(p: argparse.ArgumentParser, default: object) -> None:
        # Accepted before or after the step name (jobs/<step>.py pass them after it).
        p.add_argument("--config", "-c", default=default, help="YAML config file (see conf/demo.yaml)")
        p.add_argument(
            "--set",
            action="append",
            default=default,
            metavar="KEY=VALUE",
            help="override a config value, e.g. als.rank=64",
        )
        p.add_argument("--log-level", default=default, help="DEBUG, INFO, ... (default: logging.level, INFO)")
        p.add_argument(
            "--log-format",
            default=default,
            choices=FORMATS,
            help="text (default) or json: one object per line with ts, level, logger, message, run_id, step",
        )

    parser = argparse.ArgumentParser(prog="spotrec", description=__doc__)
    add_common(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    add_common(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("generate", parents=[common], help="write the synthetic listening world to storage.raw_dir")
    ingest = sub.add_parser("ingest", parents=[common], help="raw files -> bronze -> silver + quarantine")
    ingest.add_argument(
        "--source",
        action="append",
        help="FORMAT=PATH or KIND:FORMAT=PATH (kinds: events, tracks, playlists, play_counts); "
        "default: ingest.sources from the config, else the synthetic world",
    )
    sub.add_parser("matrix", parents=[common], help="silver -> gold.interactions (weighted play-count matrix)")
    sub.add_parser("evaluate", parents=[common], help="ALS vs baselines on a last-week split -> ops.model_metrics")
    als = sub.add_parser("als", parents=[common], help="implicit ALS -> factors, Discover Weekly, similar, tastes")
    als.add_argument("--week", help="playlist week (a Monday, YYYY-MM-DD); default: after the newest play")
    als.add_argument("--tune", action="store_true", help="grid-search rank/regParam/alpha first (als.tune_*)")
    sub.add_parser("discovery", parents=[common], help="word2vec song vectors, taste RNN, Annoy recommendations")
    sub.add_parser("playlists", parents=[common], help="user model, simulator, AH-DQN -> gold.rl_playlists")
    sub.add_parser("report", parents=[common], help="write an HTML report with plots beside the tables")
    pipe = sub.add_parser("pipeline", parents=[common], help="run every step in order and summarise the tables")
    pipe.add_argument("--skip", action="append", default=[], choices=PIPELINE, help="skip a step")
    sub.add_parser("tables", parents=[common], help="list the tables that exist with rows and versions")
    maint = sub.add_parser("maintenance", parents=[common], help="OPTIMIZE + VACUUM the tables (weekly, when idle)")
    maint.add_argument(
        "--retain-hours",
        type=float,
        default=168.0,
        help="VACUUM keeps files a version younger than this references (default 168 = Delta's 7 days)",
    )
    maint.add_argument(
        "--allow-short-retention",
        action="store_true",
        help="permit --retain-hours below 168 (only when no job reads or writes the tables meanwhile)",
    )
    maint.add_argument("--no-vacuum", action="store_true", help="OPTIMIZE only")
    maint.add_argument(
        "--zorder",
        action="append",
        metavar="TABLE=COL[,COL]",
        help="Z-order a table instead of plain compaction, e.g. silver.listen_events=user_id (repeatable)",
    )
    maint.add_argument("--table", action="append", metavar="LAYER.NAME", help="only these tables (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Configured twice: from the flags first (so config errors are logged in the asked-for format), then
    # with the config's logging section filling in what the flags left unset.
    log_format = args.log_format or "text"
    try:
        configure_logging(args.log_level or "INFO", log_format)
        cfg = load_config(args.config, args.set or [])
        log_format = args.log_format or cfg.logging.format
        configure_logging(args.log_level or cfg.logging.level, log_format)
    except (SpotrecError, ValueError) as exc:
        print(f"spotrec {args.step}: error: {exc}", file=sys.stderr)
        return 2
    with log_context(step=args.step):
        try:
            return _run(args, cfg)
        except SpotrecError as exc:
            if log_format == "json":
                log.error("spotrec %s: error: %s", args.step, exc)
            else:
                print(f"spotrec {args.step}: error: {exc}", file=sys.stderr)
            return 2


def _run(args: argparse.Namespace, cfg: Config) -> int:
    """Run the step ``args.step`` (or the pipeline / table listing) with a session and storage from ``cfg``."""
    spark = get_spark(cfg.spark)
    spark.sparkContext.setCheckpointDir(cfg.storage.checkpoint_dir)
    ctx = Context(spark=spark, storage=Storage(spark, cfg.storage), cfg=cfg, args=args)
    if args.step == "pipeline":
        step_pipeline(ctx)
    elif args.step == "tables":
        print(summarize_tables(ctx.storage))
    else:
        STEPS[args.step](ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
