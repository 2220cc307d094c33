"""Annoy retrieval: exact neighbours on a tiny set, and recommendations without recently played tracks."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from annoy import AnnoyIndex
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from spotrec.features.documents import recent_tracks
from spotrec.rnn.ann import (
    VoyagerSearcher,
    build_annoy_index,
    build_index,
    build_voyager_index,
    exact_neighbours,
    exclusion_tokens,
    query_index,
    recommend,
    ship_file,
)

# Five songs on a half circle: cos to (1, 0) is 1, .707, 0, -.707, -1.
SONGS = np.array([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0]], dtype=np.float32)
D1, D2 = math.sqrt(2 - 2 * math.cos(math.pi / 4)), math.sqrt(2.0)  # Annoy angular distance sqrt(2 - 2 cos)


def test_annoy_returns_the_exact_neighbours_on_a_tiny_set(tmp_path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 6)).astype(np.float32)
    path = build_annoy_index(vectors, str(tmp_path / "tiny.ann"), "angular", n_trees=20, seed=1)
    index = AnnoyIndex(6, "angular")
    index.load(path)
    truth = exact_neighbours(vectors, vectors, k=5)
    for i in range(40):
        assert index.get_nns_by_vector(vectors[i].tolist(), 5, search_k=-1) == truth[i].tolist()
    assert truth[:, 0].tolist() == list(range(40))  # every vector is its own nearest neighbour
    index.unload()


def test_exact_neighbours_known_answers() -> None:
    q = np.array([[1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    assert exact_neighbours(SONGS, q, 3).tolist() == [[0, 1, 2], [4, 3, 2]]
    assert exact_neighbours(SONGS, np.array([[2.0, 0.0]]), 2, metric="euclidean").tolist() == [[0, 1]]
    assert exact_neighbours(SONGS, np.array([[0.0, 1.0]]), 1, metric="dot").tolist() in ([[1]], [[2]], [[3]])


def test_query_index_asks_for_more_when_exclusions_fill_the_top(tmp_path) -> None:
    path = build_annoy_index(SONGS, str(tmp_path / "half.ann"), n_trees=5)
    index = AnnoyIndex(2, "angular")
    index.load(path)
    items, distances = query_index(index, np.array([1.0, 0.0]), k=2, search_k=-1, exclude={0, 1, 2})
    assert items == [3, 4]
    np.testing.assert_allclose(distances, [math.sqrt(2 + math.sqrt(2)), 2.0], rtol=1e-5)
    assert query_index(index, np.array([1.0, 0.0]), k=9, search_k=-1, exclude={4})[0] == [0, 1, 2, 3]
    index.unload()


def test_a_fixed_search_k_still_fills_the_list_past_many_exclusions(tmp_path) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(2000, 8)).astype(np.float32)
    path = build_annoy_index(vectors, str(tmp_path / "many.ann"), n_trees=10, seed=1)
    index = AnnoyIndex(8, "angular")
    index.load(path)
    query = vectors[0]
    excluded = set(exact_neighbours(vectors, query[None, :], k=500)[0].tolist())  # the 500 nearest were heard
    # search_k=20 alone inspects far fewer than 510 candidates; the budget grows with the request.
    items, _ = query_index(index, query, k=10, search_k=20, exclude=excluded)
    assert len(items) == 10 and not set(items) & excluded
    index.unload()


def test_recommendations_exclude_recently_played_tracks_exact_rows(spark, tmp_path) -> None:
    vocab = spark.createDataFrame([(f"t{i}", i) for i in range(5)] + [], "track_id string, token int")
    path = build_annoy_index(SONGS, str(tmp_path / "songs.ann"), "angular", n_trees=5, seed=3)
    tastes = spark.createDataFrame(
        [("u1", [1.0, 0.0]), ("u2", [-1.0, 0.0]), ("u3", [0.0, 1.0])], "user_id string, vector array<float>"
    )
    t = dt.datetime(2026, 3, 1)
    events = spark.createDataFrame(
        [
            ("u1", "t0", t),  # recent: excluded
            ("u2", "t9", t),  # not in the vocabulary: nothing to exclude
            ("u3", "t2", t - dt.timedelta(days=40)),  # too old to count as recent
            ("u3", "t1", t - dt.timedelta(days=2)),  # recent: excluded
        ],
        "user_id string, track_id string, ts timestamp",
    )
    excl = exclusion_tokens(recent_tracks(events, days=28), vocab)
    recs = recommend(tastes, excl, vocab, path, 2, "angular", top_k=2, search_k=-1, model_version="v1")
    expected = spark.createDataFrame(
        [
            ("u1", 1, "t1", D1, "v1"),
            ("u1", 2, "t2", D2, "v1"),
            ("u2", 1, "t4", 0.0, "v1"),
            ("u2", 2, "t3", D1, "v1"),
            ("u3", 1, "t2", 0.0, "v1"),
            ("u3", 2, "t3", D1, "v1"),
        ],
        "user_id string, rank int, track_id string, distance double, model_version string",
    )
    assert_approx_df_equality(recs, expected, 1e-4, ignore_row_order=True, ignore_nullable=True)


def test_ship_file_names_follow_content(spark, tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.bin").write_bytes(b"one")
    (b / "x.bin").write_bytes(b"two")
    name_a, name_b = ship_file(spark, str(a / "x.bin")), ship_file(spark, str(b / "x.bin"))
    assert name_a != name_b and name_a.endswith("-x.bin")
    (b / "y").mkdir()
    (b / "y" / "x.bin").write_bytes(b"one")
    assert ship_file(spark, str(b / "y" / "x.bin")) == name_a  # same contents from another folder: accepted


@pytest.mark.parametrize("metric", ["angular", "dot"])
def test_voyager_returns_the_exact_neighbours_on_a_planted_set(tmp_path, metric) -> None:
    # Four planted directions, ten noisy members each, with norms 1-3 (so dot and angular rank differently).
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8, dtype=np.float32) * 3
    vectors = np.vstack([c + rng.normal(scale=0.3, size=(10, 8)) for c in centres]).astype(np.float32)
    vectors *= rng.uniform(1, 3, size=(40, 1)).astype(np.float32)
    path = build_voyager_index(vectors, str(tmp_path / f"planted-{metric}.voy"), metric, seed=1)
    index = VoyagerSearcher(path)
    truth = exact_neighbours(vectors, vectors, k=5, metric=metric)
    for i in range(40):
        items, distances = index.get_nns_by_vector(vectors[i].tolist(), 5, search_k=100)
        assert items == truth[i].tolist()
        assert all(it // 10 == i // 10 for it in items[:3])  # the top hits are the query's planted group
        assert distances == sorted(distances)
    items, _ = query_index(index, vectors[0], k=3, search_k=100, exclude={int(truth[0, 0])})
    assert items == truth[0, 1:4].tolist()  # the excluded best hit is skipped, the list still has three


def test_voyager_distances_and_backend_choice(tmp_path) -> None:
    path = build_index(SONGS, str(tmp_path / "songs.ann"), "angular", n_trees=5, backend="voyager")
    assert path.endswith("songs.voy")
    items, distances = VoyagerSearcher(path).get_nns_by_vector([1.0, 0.0], 3)
    assert items == [0, 1, 2]
    np.testing.assert_allclose(distances, [0.0, 1 - math.cos(math.pi / 4), 1.0], atol=1e-5)  # 1 - cosine
    with pytest.raises(ValueError, match="voyager supports"):
        build_index(SONGS, str(tmp_path / "e.ann"), "euclidean", n_trees=5, backend="voyager")


def test_recommend_serves_a_voyager_index_on_executors(spark, tmp_path) -> None:
    vocab = spark.createDataFrame([(f"t{i}", i) for i in range(5)], "track_id string, token int")
    path = build_voyager_index(SONGS, str(tmp_path / "songs.voy"), "angular")
    tastes = spark.createDataFrame([("u1", [1.0, 0.0]), ("u2", [-1.0, 0.0])], "user_id string, vector array<float>")
    recs = recommend(tastes, None, vocab, path, 2, "angular", top_k=2, search_k=10, model_version="v1")
    got = sorted((r.user_id, r.rank, r.track_id) for r in recs.collect())
    assert got == [("u1", 1, "t0"), ("u1", 2, "t1"), ("u2", 1, "t4"), ("u2", 2, "t3")]


def _silver_events(spark, plays):
    """silver.listen_events rows from (user, track, ts, session) tuples, other columns filled plausibly."""
    from spotrec.tables import SILVER_EVENTS, conform

    rows = [(f"e{i}", u, t, ts, 180_000, s, i, "test", "f", "r", ts.date()) for i, (u, t, ts, s) in enumerate(plays)]
    df = spark.createDataFrame(
        rows,
        "event_id string, user_id string, track_id string, ts timestamp, ms_played long, session_id string, "
        "session_position int, source string, source_file string, ingest_run_id string, event_date date",
    )
    for f in SILVER_EVENTS.schema.fields:
        if f.name not in df.columns:
            df = df.withColumn(f.name, F.lit(None).cast(f.dataType))
    return conform(df, SILVER_EVENTS)


@pytest.mark.slow  # a whole step end to end: in make test, not make test-fast
def test_serve_rnn_end_to_end_on_tiny_silver_tables(spark, storage, tmp_path) -> None:
    import torch

    from spotrec.config import RnnConfig
    from spotrec.steps.rnn import serve_rnn
    from spotrec.tables import RNN_RECOMMENDATIONS, SILVER_EVENTS, TRACK_EMBEDDINGS, USER_TASTE_VECTORS

    torch.set_num_threads(1)
    start = dt.datetime(2026, 2, 1, 8)
    plays = []
    for u in range(12):
        for j in range(6):  # user u walks t(u), t(u+1), ... in one session
            plays.append((f"u{u:02d}", f"t{(u + j) % 10}", start + dt.timedelta(days=u % 3, minutes=4 * j), "s1"))
    storage.overwrite(SILVER_EVENTS, _silver_events(spark, plays))
    cfg = RnnConfig(
        vector_size=8,
        window=2,
        w2v_epochs=2,
        w2v_batch_size=32,
        sequence_length=3,
        hidden_size=8,
        rnn_epochs=2,
        batch_size=16,
        n_trees=5,
        top_k=3,
        use_playlists=False,
        validation_fraction=0.25,
    )
    run = serve_rnn(spark, storage, cfg, str(tmp_path / "artifacts"), model_version="v-e2e")
    assert run.vocabulary_size == 10 and run.train_windows > 0

    emb = storage.read(TRACK_EMBEDDINGS)
    assert emb.count() == 10 and {r[0] for r in emb.select("method").distinct().collect()} == {"cbow_ns"}
    tastes = storage.read(USER_TASTE_VECTORS).collect()
    assert len(tastes) == 12 and all(len(r["vector"]) == 8 for r in tastes)

    recs = storage.read(RNN_RECOMMENDATIONS).collect()
    played = {(u, t) for u, t, _, _ in plays}
    by_user: dict[str, list[int]] = {}
    for r in recs:
        assert (r["user_id"], r["track_id"]) not in played  # everything played is recent here: never recommended
        assert r["model_version"] == "v-e2e"
        by_user.setdefault(r["user_id"], []).append(r["rank"])
    assert len(by_user) == 12 and all(sorted(v) == [1, 2, 3] for v in by_user.values())


def test_the_rnn_section_sets_voyagers_graph_and_query_budget(tmp_path) -> None:
    from voyager import Index

    from spotrec.config import RnnConfig
    from spotrec.rnn.model import build_cfg_index

    cfg = RnnConfig(ann_backend="voyager", voyager_m=8, voyager_ef_construction=40, voyager_ef=30, search_k=2000)
    assert cfg.search_budget == 30  # Voyager's ef, not Annoy's node count
    assert RnnConfig(search_k=700).search_budget == 700
    path = build_cfg_index(SONGS, str(tmp_path / "songs.ann"), "angular", cfg)
    index = Index.load(path)
    assert (index.M, index.ef_construction) == (8, 40)
