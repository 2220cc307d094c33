"""`spotrec <step>`: one command per pipeline step (:mod:`spotrec.steps`), and `spotrec pipeline` for all of them.

This module only parses arguments, loads and validates the whole config, builds the session and dispatches
to ``spotrec.steps.<step>.run``. A step that fails prints one line saying what to fix and exits non-zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from spotrec.config import Config, load_config
from spotrec.errors import SpotrecError
from spotrec.logs import FORMATS, configure_logging, log_context
from spotrec.steps import DEPRECATED_STEPS, PIPELINE, STEPS, StepContext, canonical_step, run_step

__all__ = ["PIPELINE", "STEPS", "build_parser", "main"]

log = logging.getLogger("spotrec")


def build_parser() -> argparse.ArgumentParser:
    def add_common(p: argparse.ArgumentParser, default: object) -> None:
        # Accepted before or after the step name (jobs/<step>.py pass them after it).
        p.add_argument("--config", "-c", default=default, help="YAML config file (see conf/demo.yaml)")
        p.add_argument(
            "--set",
            action="append",
            default=default,
            metavar="KEY=VALUE",
            help="override a config value, e.g. weekly.rank=64",
        )
        p.add_argument(
            "--log-level",
            default=default,
            help="DEBUG, INFO, ... (default: logging.level when the config sets it, else WARNING: the steps' "
            "own lines and tables only)",
        )
        p.add_argument(
            "--verbose",
            "-v",
            action="store_true",
            default=default,
            help="everything: DEBUG records, Spark's INFO log and stage progress bars, MLflow's messages",
        )
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
    sub = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    steps = {name: sub.add_parser(name, parents=[common], help=text) for name, text in STEPS.items()}
    for old in DEPRECATED_STEPS:  # same flags as the new name; no help line (deprecated)
        steps[old] = sub.add_parser(old, parents=[common])
    steps["ingest"].add_argument(
        "--source",
        dest="sources",
        action="append",
        help="FORMAT=PATH or KIND:FORMAT=PATH (kinds: events, tracks, playlists, play_counts); "
        "default: ingest.sources from the config, else the synthetic world",
    )
    for name in ("weekly", "als"):
        steps[name].add_argument("--week", help="playlist week (a Monday, YYYY-MM-DD); default: after the newest play")
        steps[name].add_argument(
            "--tune", action="store_true", help="grid-search rank/regParam/alpha first (weekly.tune_*)"
        )
    steps["pipeline"].add_argument(
        "--skip", action="append", default=[], choices=[*PIPELINE, *DEPRECATED_STEPS], help="skip a step"
    )
    maint = steps["maintenance"]
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


COMMON_OPTIONS = ("step", "config", "set", "log_level", "log_format", "verbose")


def console_level(args: argparse.Namespace, cfg: Config) -> str:
    """``--verbose``: DEBUG; else ``--log-level``; else ``logging.level`` when the config sets it; else WARNING,
    so the console shows each step's progress and result lines (``ctx.say``) and nothing routine."""
    if getattr(args, "verbose", False):
        return "DEBUG"
    if args.log_level:
        return str(args.log_level)
    return cfg.logging.level if "level" in cfg.logging.model_fields_set else "WARNING"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Configured twice: from the flags first (so config errors are logged in the asked-for format), then
    # with the config's logging section filling in what the flags left unset.
    log_format = args.log_format or "text"
    try:
        configure_logging(args.log_level or "INFO", log_format)
        step = canonical_step(args.step)
        cfg = load_config(args.config, args.set or [])
        log_format = args.log_format or cfg.logging.format
        configure_logging(console_level(args, cfg), log_format)
    except (SpotrecError, ValueError) as exc:
        print(f"spotrec {args.step}: error: {exc}", file=sys.stderr)
        return 2
    options = {k: v for k, v in vars(args).items() if k not in COMMON_OPTIONS}
    with log_context(step=step):
        try:
            _run(step, cfg, options, verbose=bool(getattr(args, "verbose", False)))
            return 0
        except SpotrecError as exc:
            if log_format == "json":
                log.error("spotrec %s: error: %s", step, exc)
            else:
                print(f"spotrec {step}: error: {exc}", file=sys.stderr)
            return 2


def _run(step: str, cfg: Config, options: dict[str, Any], *, verbose: bool = False) -> None:
    """Run ``step`` with a session and storage built from ``cfg``."""
    from spotrec.spark import get_spark
    from spotrec.storage import Storage

    spark = get_spark(cfg.spark, verbose=verbose)
    spark.sparkContext.setCheckpointDir(cfg.storage.checkpoint_dir)
    run_step(step, StepContext(spark=spark, storage=Storage(spark, cfg.storage), cfg=cfg, options=options))


if __name__ == "__main__":
    raise SystemExit(main())
