"""Discover Weekly playlists, similar tracks, taste clusters and the whole weekly step."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spotrec.config import Config, WeeklyConfig
from spotrec.steps.weekly import run_weekly, save_discover_weekly, week_condition
from spotrec.storage import Storage
from spotrec.tables import (
    DISCOVER_WEEKLY,
    INTERACTIONS,
    MODEL_METRICS,
    SIMILAR_TRACKS,
    TASTE_CLUSTERS,
    TRACK_FACTORS,
    TRACKS,
    USER_FACTORS,
    USER_TASTE_PROFILE,
)
from spotrec.weekly.discover_weekly import discover_weekly, fill_discover_weekly, similar_tracks
from spotrec.weekly.taste import (
    adjusted_rand_index,
    cluster_purity_vs_truth,
    purity,
    taste_clusters,
    user_taste_profile,
)

W1 = datetime.date(2026, 9, 7)
W2 = datetime.date(2026, 9, 14)
DW = "week date, user_id string, rank int, track_id string, artist_id string, score double, model_version string"
CANDIDATES = "user_id string, track_id string, rank int, score double"


def test_discover_weekly_caps_artists_and_reranks(spark: SparkSession) -> None:
    # u1's candidates in rank order: a1, a2, a3 (artist A), b1 (B), x9 (not in the catalogue -> own artist).
    # Cap 2 per artist drops a3; n = 3 keeps a1, a2, b1 re-ranked 1..3. u2 has fewer candidates than n.
    candidates = spark.createDataFrame(
        [
            ("u1", "a1", 1, 0.9),
            ("u1", "a2", 2, 0.8),
            ("u1", "a3", 3, 0.7),
            ("u1", "b1", 4, 0.6),
            ("u1", "x9", 5, 0.5),
            ("u2", "x9", 1, 0.4),
            ("u2", "a3", 2, 0.3),
        ],
        CANDIDATES,
    )
    tracks = spark.createDataFrame(
        [("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B")], "track_id string, artist_id string"
    )
    got = discover_weekly(candidates, tracks, week="2026-09-07", model_version="m1", n=3, max_per_artist=2)
    expected = spark.createDataFrame(
        [
            (W1, "u1", 1, "a1", "A", 0.9, "m1"),
            (W1, "u1", 2, "a2", "A", 0.8, "m1"),
            (W1, "u1", 3, "b1", "B", 0.6, "m1"),
            (W1, "u2", 1, "x9", None, 0.4, "m1"),
            (W1, "u2", 2, "a3", "A", 0.3, "m1"),
        ],
        DW,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_discover_weekly_refetches_for_users_short_after_the_artist_cap(spark: SparkSession) -> None:
    # u1's 14 best unheard tracks are all by artist A, then one each by B and C; u2's are all by distinct
    # artists. n=3: 12 candidates leave u1 with 2 (the cap), so u1 alone is fetched again, with 48.
    ranked = [("u1", f"a{i}", i, 1.0 - i / 100) for i in range(1, 15)]
    ranked += [("u1", "b1", 15, 0.5), ("u1", "c1", 16, 0.4)]
    ranked += [("u2", f"x{i}", i, 1.0 - i / 100) for i in range(1, 15)]
    all_candidates = spark.createDataFrame(ranked, "user_id string, track_id string, rank int, score double")
    artists = [(f"a{i}", "A") for i in range(1, 15)] + [("b1", "B"), ("c1", "C")]
    artists += [(f"x{i}", f"X{i}") for i in range(1, 15)]
    tracks = spark.createDataFrame(artists, "track_id string, artist_id string")
    calls: list[tuple[list[str], int]] = []

    def fetch(users, k):
        calls.append((sorted(r[0] for r in users.collect()), k))
        return all_candidates.join(users, "user_id").where(F.col("rank") <= k)

    users = spark.createDataFrame([("u1",), ("u2",)], "user_id string")
    lists = fill_discover_weekly(fetch, users, tracks, week="2026-11-02", model_version="m", n=3, max_per_artist=2)
    got = sorted((r["user_id"], r["rank"], r["track_id"]) for r in lists.collect())
    assert got == [
        ("u1", 1, "a1"),
        ("u1", 2, "a2"),
        ("u1", 3, "b1"),
        ("u2", 1, "x1"),
        ("u2", 2, "x2"),
        ("u2", 3, "x3"),
    ]
    assert calls == [(["u1", "u2"], 12), (["u1"], 48)]


def test_rerunning_a_week_replaces_that_week_only(spark: SparkSession, storage: Storage) -> None:
    def week(day: datetime.date, track: str, version: str):  # type: ignore[no-untyped-def]
        return spark.createDataFrame([(day, "u1", 1, track, "A", 1.0, version)], DW)

    save_discover_weekly(storage, week(W1, "t1", "v1"), W1)
    save_discover_weekly(storage, week(W2, "t2", "v1"), "2026-09-14")
    save_discover_weekly(storage, week(W1, "t3", "v2"), "2026-09-07")  # rerun of week 1
    expected = spark.createDataFrame([(W1, "u1", 1, "t3", "A", 1.0, "v2"), (W2, "u1", 1, "t2", "A", 1.0, "v1")], DW)
    assert_df_equality(storage.read(DISCOVER_WEEKLY), expected, ignore_row_order=True, ignore_nullable=True)


def test_week_condition_accepts_only_dates() -> None:
    assert week_condition("2026-09-07") == "week = '2026-09-07'"
    with pytest.raises(ValueError):
        week_condition("2026-09-07' OR '1'='1")


def test_similar_tracks_maps_ids(spark: SparkSession) -> None:
    factors = spark.createDataFrame(
        [(0, "t0", [1.0, 0.0], "m"), (1, "t1", [2.0, 0.0], "m"), (2, "t2", [0.0, 3.0], "m")],
        "track_idx int, track_id string, features array<float>, model_version string",
    )
    expected = spark.createDataFrame(
        [("t0", 1, "t1", 1.0, "m"), ("t1", 1, "t0", 1.0, "m"), ("t2", 1, "t0", 0.0, "m")],
        "track_id string, rank int, similar_track_id string, score double, model_version string",
    )
    assert_df_equality(similar_tracks(factors, 1), expected, ignore_row_order=True, ignore_nullable=True)


# -- taste clusters -------------------------------------------------------------------------------------


def test_adjusted_rand_index_and_purity_known_values() -> None:
    # [0,0,1,2] vs [0,0,1,1]: pair counts index = C(2,2) = 1, rows a = 1, columns b = C(2,2) + C(2,2) = 2,
    # expected = a*b / C(4,2) = 1/3, max = (a+b)/2 = 3/2 -> ARI = (1 - 1/3) / (3/2 - 1/3) = 4/7.
    assert adjusted_rand_index([0, 0, 1, 2], [0, 0, 1, 1]) == pytest.approx(4 / 7)
    # [0,0,1,1] vs [0,0,0,1]: index = 1, a = 2, b = 3, expected = 1, max = 2.5 -> ARI = 0.
    assert adjusted_rand_index([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(0.0)
    assert adjusted_rand_index(["x", "x", "y"], [5, 5, 2]) == 1.0  # same partition, other names
    # clusters {0,0} (majority 2 of 2) and {1,2} (majority 1 of 2): purity 3/4.
    assert purity([0, 0, 1, 2], [0, 0, 1, 1]) == 0.75


def test_k_means_recovers_two_planted_clusters(spark: SparkSession) -> None:
    # Two taste directions; lengths vary 100x within each group so unnormalised k-means would split by length.
    rows = []
    for i, length in enumerate([0.1, 0.5, 1.0, 3.0, 10.0]):
        rows.append((f"a{i}", [length, 0.05 * i * length, 0.0], "m"))
        rows.append((f"b{i}", [0.0, 0.05 * i * length, length], "m"))
    factors = spark.createDataFrame(rows, "track_id string, features array<float>, model_version string")
    clusters = taste_clusters(factors, 2, seed=1)
    got = clusters.collect()
    groups: dict[int, set[str]] = {}
    for r in got:
        groups.setdefault(r.cluster, set()).add(r.track_id)
    assert sorted(groups.values(), key=sorted) == [{f"a{i}" for i in range(5)}, {f"b{i}" for i in range(5)}]
    assert max(r.distance for r in got) < 0.15
    truth = pd.DataFrame({"track_id": [r[0] for r in rows], "taste_group": [r[0][0] for r in rows]})
    assert cluster_purity_vs_truth(clusters, truth) == {
        "tracks": 10.0,
        "clusters": 2.0,
        "groups": 2.0,
        "purity": 1.0,
        "ari": 1.0,
    }


def test_user_taste_profile_shares(spark: SparkSession) -> None:
    clusters = spark.createDataFrame(
        [("t1", 0, 0.0, "m"), ("t2", 0, 0.0, "m"), ("t3", 1, 0.0, "m")],
        "track_id string, cluster int, distance double, model_version string",
    )
    # u1: cluster 0 gets 3 + 1, cluster 1 gets 4 -> 0.5 / 0.5. u2: t3's negative confidence counts 0 and t4 is
    # unclustered -> all of u2's taste is cluster 0. u3 has only negative confidence -> no rows.
    interactions = spark.createDataFrame(
        [
            ("u1", "t1", 3.0),
            ("u1", "t2", 1.0),
            ("u1", "t3", 4.0),
            ("u2", "t1", 2.0),
            ("u2", "t3", -1.0),
            ("u2", "t4", 5.0),
            ("u3", "t3", -2.0),
        ],
        "user_id string, track_id string, confidence double",
    )
    expected = spark.createDataFrame(
        [("u1", 0, 0.5, "m"), ("u1", 1, 0.5, "m"), ("u2", 0, 1.0, "m")],
        "user_id string, cluster int, share double, model_version string",
    )
    got = user_taste_profile(interactions, clusters)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


# -- the whole step ---------------------------------------------------------------------------------------


@pytest.mark.slow  # a whole step end to end: in make test, not make test-fast
def test_run_discover_writes_six_tables(spark: SparkSession, storage: Storage, config: Config) -> None:
    # Two blocks of 6 users x 6 tracks; user u has heard its block's tracks except track u (checkerboard);
    # artist of track i is "a{i // 2}", so the 1-per-artist cap forbids a track's block neighbour pair.
    rows, held_out = [], {}
    for u in range(12):
        block = range((u // 6) * 6, (u // 6 + 1) * 6)
        held_out[f"u{u:02d}"] = f"t{u:02d}"
        for i in block:
            if i != u:
                rows.append((f"u{u:02d}", f"t{i:02d}", u, i, 1.0, 1, 0, 0, 180000, None))
    storage.overwrite(INTERACTIONS, spark.createDataFrame(rows, INTERACTIONS.schema))
    catalogue = [(f"t{i:02d}", f"T{i}", f"a{i // 2}", f"A{i // 2}", None, None, 180000) for i in range(12)]
    tracks = spark.createDataFrame(
        catalogue,
        "track_id string, track_name string, artist_id string, "
        "artist_name string, album_id string, album_name string, duration_ms long",
    )
    for col in ("acousticness", "danceability", "energy", "valence", "tempo"):
        tracks = tracks.withColumn(col, F.lit(None).cast("double"))
    storage.overwrite(TRACKS, tracks.withColumn("source", F.lit("test")))
    weekly = WeeklyConfig(
        rank=4,
        reg_param=0.1,
        alpha=10.0,
        max_iter=10,
        num_blocks=2,
        seed=7,
        playlist_size=3,
        max_per_artist=1,
        similar_tracks=2,
        taste_clusters=2,
        user_block_size=4,
    )
    cfg = config.model_copy(update={"weekly": weekly})

    # A synthetic world's ground truth beside the tables: two true groups, a third of the tracks in group 1.
    truth_dir = Path(cfg.storage.artifacts_dir) / "ground_truth" / "tracks"
    truth_dir.mkdir(parents=True)
    truth = pd.DataFrame({"track_id": [f"t{i:02d}" for i in range(12)], "taste_group": [i // 6 for i in range(12)]})
    truth.to_parquet(truth_dir / "part-0.parquet")

    summary = run_weekly(spark, storage, cfg, "run-1", "2026-09-07")

    assert summary["run_id"] == "run-1" and summary["week"] == "2026-09-07"
    assert summary["model_version"].startswith("als-cg-r4-")  # the default solver
    assert summary["rows"] == {
        USER_FACTORS.full_name: 12,
        TRACK_FACTORS.full_name: 12,
        DISCOVER_WEEKLY.full_name: 36,
        SIMILAR_TRACKS.full_name: 24,
        TASTE_CLUSTERS.full_name: 12,
        USER_TASTE_PROFILE.full_name: 12,
    }
    playlists = storage.read(DISCOVER_WEEKLY).collect()
    heard = {(r[0], r[1]) for r in rows}
    assert not {(r.user_id, r.track_id) for r in playlists} & heard
    assert {r.user_id: r.track_id for r in playlists if r.rank == 1} == held_out
    for user in held_out:
        artists = [r.artist_id for r in playlists if r.user_id == user]
        assert len(artists) == len(set(artists)) == 3
    # Each block's tracks form one taste cluster, so every user's taste is 100% one cluster.
    clusters = storage.read(TASTE_CLUSTERS)
    assert cluster_purity_vs_truth(clusters, truth)["ari"] == 1.0
    # ... which the step reports against the ground truth and records in ops.model_metrics.
    assert summary["taste_recovery"] == {
        "tracks": 12.0,
        "clusters": 2.0,
        "groups": 2.0,
        "purity": 1.0,
        "ari": 1.0,
        "purity_chance": 0.5,
    }
    recorded = {
        (r.model, r.dataset, r.metric): r.value
        for r in storage.read(MODEL_METRICS).where(F.col("run_id") == "run-1").collect()
    }
    assert recorded == {
        ("als_taste_clusters", "ground-truth", "taste_ari"): 1.0,
        ("als_taste_clusters", "ground-truth", "taste_purity"): 1.0,
        ("als_taste_clusters", "ground-truth", "taste_purity_chance"): 0.5,
    }
    assert {r.share for r in storage.read(USER_TASTE_PROFILE).collect()} == {1.0}
