"""Generate the synthetic listening world: catalogue, listening events, user playlists and ground truth.

The catalogue (artists, albums, tracks: :mod:`spotrec.synth.catalogue`) is small and built on the driver
with numpy, then broadcast. All per-user output (events, playlists, the users' hidden tastes:
:mod:`spotrec.synth.listeners`) is produced on executors with ``mapInPandas`` over ``spark.range(users)``:
every user's draws come from their own generators seeded with ``(seed, stream, user)``, so the content never
depends on how users are split into partitions, and driver memory does not grow with the number of users or
events.

Raw outputs (Parquet folders under ``raw_dir``, read later by ingest): ``events/``, ``tracks/``,
``playlists/``. Ground truth (under ``{artifacts_dir}/ground_truth/``): ``users/`` and ``tracks/``
Parquet, ``response_model.json`` and ``injected_faults.json``; load it with
:func:`spotrec.synth.truth.load_ground_truth`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import GenerateConfig
from spotrec.synth.catalogue import GT_TRACK_DDL, TRACK_DDL, Catalogue, build_catalogue, ground_truth_tracks
from spotrec.synth.listeners import (
    EVENT_DDL,
    FAULT_COL,
    FAULT_KINDS,
    GT_USER_DDL,
    PLAYLIST_DDL,
    events_frame,
    user_events,
    user_id,
    user_playlists,
    user_profile,
)
from spotrec.synth.response import ResponseModel

log = logging.getLogger(__name__)


USER_CHUNK = 256
"""Users per yielded pandas frame: bounds executor memory whatever Arrow's batch size is."""


def _chunks(batches: Iterator[pd.DataFrame]) -> Iterator[np.ndarray]:
    for batch in batches:
        ids = batch["id"].to_numpy()
        for start in range(0, len(ids), USER_CHUNK):
            yield ids[start : start + USER_CHUNK]


def _events_fn(cat_bc, cfg: GenerateConfig, model: ResponseModel):  # type: ignore[no-untyped-def]
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        cat: Catalogue = cat_bc.value
        for users in _chunks(batches):
            parts = []
            for u in users:
                prof = user_profile(int(u), cat, cfg)
                parts.append(user_events(prof, user_playlists(prof, cat, cfg), cat, cfg, model))
            yield events_frame(parts)

    return run


def _playlists_fn(cat_bc, cfg: GenerateConfig):  # type: ignore[no-untyped-def]
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        cat: Catalogue = cat_bc.value
        for users in _chunks(batches):
            cols: dict[str, list] = {
                C.PLAYLIST_ID: [],
                C.PLAYLIST_NAME: [],
                C.USER_ID: [],
                C.POSITION: [],
                C.TRACK_ID: [],
            }
            for u in users:
                prof = user_profile(int(u), cat, cfg)
                uid = user_id(int(u), cfg.users)
                for pl in user_playlists(prof, cat, cfg):
                    k = len(pl.tracks)
                    cols[C.PLAYLIST_ID] += [pl.playlist_id] * k
                    cols[C.PLAYLIST_NAME] += [pl.name] * k
                    cols[C.USER_ID] += [uid] * k
                    cols[C.POSITION] += list(range(k))
                    cols[C.TRACK_ID] += list(cat.track_ids[pl.tracks])
            frame = pd.DataFrame(cols)
            frame[C.POSITION] = frame[C.POSITION].astype(np.int32)
            yield frame

    return run


def _users_fn(cat_bc, cfg: GenerateConfig):  # type: ignore[no-untyped-def]
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        cat: Catalogue = cat_bc.value
        for users in _chunks(batches):
            profs = [user_profile(int(u), cat, cfg) for u in users]
            yield pd.DataFrame(
                {
                    C.USER_ID: [user_id(p.user, cfg.users) for p in profs],
                    "taste_group": np.array([p.group for p in profs], dtype=np.int32),
                    "taste_vector": [p.vector.astype(np.float32) for p in profs],
                    "activity": [p.activity for p in profs],
                }
            )

    return run


@dataclass
class GenerateResult:
    """What :func:`generate_world` wrote."""

    users: int
    artists: int
    albums: int
    tracks: int
    events: int
    """Rows in ``events/``, bad rows included."""
    playlists: int
    playlist_tracks: int
    faults: dict[str, int] = field(default_factory=dict)
    """Injected bad rows per kind (``FAULT_KINDS``)."""
    events_path: str = ""
    tracks_path: str = ""
    playlists_path: str = ""
    ground_truth_path: str = ""

    def __str__(self) -> str:
        bad = ", ".join(f"{k} {v:,}" for k, v in self.faults.items())
        return (
            f"{self.users:,} users, {self.tracks:,} tracks ({self.artists:,} artists, "
            f"{self.albums:,} albums), "
            f"{self.events:,} events (injected faults: {bad}), {self.playlists:,} playlists "
            f"({self.playlist_tracks:,} entries) -> {self.events_path}; ground truth {self.ground_truth_path}"
        )


def _users_frame(spark: SparkSession, cfg: GenerateConfig) -> DataFrame:
    """One row (``id``) per user, range-partitioned: no shuffle, users stay in order within a partition."""
    return spark.range(0, cfg.users, 1, numPartitions=max(1, min(cfg.partitions, cfg.users)))


def generate_world(
    spark: SparkSession,
    cfg: GenerateConfig,
    raw_dir: str,
    artifacts_dir: str,
    model: ResponseModel | None = None,
) -> GenerateResult:
    """Write the synthetic world's raw files and its ground truth; same ``cfg`` -> same content.

    Args:
        spark: the session (events are generated on its executors).
        cfg: sizes, seed and behaviour of the world.
        raw_dir: folder (any Hadoop URI) receiving ``events/``, ``tracks/`` and ``playlists/`` (overwritten).
        artifacts_dir: the ground truth goes to ``{artifacts_dir}/ground_truth/`` (the JSON files need a
            local or mounted path).
        model: the hidden response model (default parameters when None).

    Returns:
        Counts, injected faults and paths.
    """
    if cfg.users < 1 or cfg.weeks < 1:
        raise ValueError("generate: users and weeks must be >= 1")
    model = model or ResponseModel.for_world(cfg)
    raw = raw_dir.rstrip("/")
    gt = f"{artifacts_dir.rstrip('/')}/ground_truth"
    catalogue, tracks = build_catalogue(cfg)
    cat_bc = spark.sparkContext.broadcast(catalogue)
    try:
        spark.createDataFrame(tracks, TRACK_DDL).write.mode("overwrite").parquet(f"{raw}/tracks")
        spark.createDataFrame(ground_truth_tracks(catalogue, tracks), GT_TRACK_DDL).write.mode("overwrite").parquet(
            f"{gt}/tracks"
        )
        users = _users_frame(spark, cfg)
        users.mapInPandas(_users_fn(cat_bc, cfg), GT_USER_DDL).write.mode("overwrite").parquet(f"{gt}/users")
        users.mapInPandas(_playlists_fn(cat_bc, cfg), PLAYLIST_DDL).write.mode("overwrite").parquet(f"{raw}/playlists")

        events = users.mapInPandas(_events_fn(cat_bc, cfg, model), f"{EVENT_DDL}, {FAULT_COL} string")
        events = events.persist(StorageLevel.DISK_ONLY)
        per_kind = {r[0]: int(r[1]) for r in events.groupBy(FAULT_COL).count().collect()}
        events.drop(FAULT_COL).write.mode("overwrite").parquet(f"{raw}/events")
        events.unpersist()
    finally:
        cat_bc.unpersist()

    pl = spark.read.parquet(f"{raw}/playlists").agg(
        F.count(F.lit(1)).alias("rows"), F.countDistinct(C.PLAYLIST_ID).alias("playlists")
    )
    pl_row = pl.first()
    faults = {k: per_kind.get(k, 0) for k in FAULT_KINDS}
    result = GenerateResult(
        users=cfg.users,
        artists=cfg.artists,
        albums=cfg.artists * cfg.albums_per_artist,
        tracks=catalogue.n_tracks,
        events=sum(per_kind.values()),
        playlists=int(pl_row["playlists"]) if pl_row else 0,
        playlist_tracks=int(pl_row["rows"]) if pl_row else 0,
        faults=faults,
        events_path=f"{raw}/events",
        tracks_path=f"{raw}/tracks",
        playlists_path=f"{raw}/playlists",
        ground_truth_path=gt,
    )
    gt_local = Path(gt)
    gt_local.mkdir(parents=True, exist_ok=True)
    model.save(gt_local / "response_model.json")
    (gt_local / "injected_faults.json").write_text(json.dumps(faults, indent=2) + "\n")
    log.info("generated %s", result)
    return result
