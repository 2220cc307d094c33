"""Blocked top-N: equal to brute force (ties included), never a heard track; cosine neighbours."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from spotrec.weekly import topn
from spotrec.weekly.topn import SIMILAR_SCHEMA, TOP_N_SCHEMA, block_scores, top_n_select, top_n_similar, top_n_unheard

FACTORS = "idx int, features array<float>"


def test_top_n_select_breaks_ties_at_the_cutoff_by_smaller_id() -> None:
    # Row 0: columns 0..5 score 1, 3, 3, 3, 0, 3 -> top 2 are the two smallest columns scoring 3: 1, 2.
    # Row 1: the best item is masked; -inf items never come back even when n exceeds the finite ones.
    scores = np.array(
        [
            [1.0, 3.0, 3.0, 3.0, 0.0, 3.0],
            [-np.inf, 2.0, -np.inf, -np.inf, -np.inf, -np.inf],
        ],
        dtype=np.float32,
    )
    rows, cols, ranks, vals = top_n_select(scores, 2)
    assert list(zip(rows, cols, ranks, vals)) == [(0, 1, 1, 3.0), (0, 2, 2, 3.0), (1, 1, 1, 2.0)]
    rows, cols, ranks, _ = top_n_select(scores, 10)
    assert list(cols[rows == 0]) == [1, 2, 3, 5, 0, 4]
    assert list(ranks[rows == 0]) == [1, 2, 3, 4, 5, 6]


def _sorted_top(s: np.ndarray, n: int) -> list[tuple]:
    out = []
    for r, row in enumerate(s):
        cols = sorted((c for c in range(len(row)) if np.isfinite(row[c])), key=lambda c: (-row[c], c))
        out += [(r, c, rank, float(row[c])) for rank, c in enumerate(cols[:n], start=1)]
    return out


def test_top_n_select_group_bound_is_exact_with_ties_and_masks() -> None:
    # The group-maximum bound with every group width, on rows of distinct scores (the fast path) and rows
    # full of ties and masked entries (the path for ties at the cut-off): the same rows as a full sort by
    # (score desc, column asc), -inf never returned.
    rng = np.random.default_rng(11)
    for m, n in ((7, 3), (40, 1), (95, 4), (250, 30), (1000, 10)):
        distinct = rng.normal(size=(3, m)).astype(np.float32)
        ties = rng.integers(-3, 4, size=(4, m)).astype(np.float32)
        ties[rng.random(ties.shape) < 0.4] = -np.inf
        ties[0, 1:] = -np.inf  # one finite score: fewer than k finite groups
        for scores in (distinct, ties, np.vstack([distinct, ties])):
            for width in (1, 2, 5, 16, 64):
                got = [(int(r), int(c), int(k), float(v)) for r, c, k, v in zip(*top_n_select(scores, n, width))]
                assert got == _sorted_top(scores, n), (m, n, width)


def test_block_scores_do_not_depend_on_the_block() -> None:
    # A user scores the same alone, at the start or in the middle of a block (one row is padded to two).
    rng = np.random.default_rng(5)
    q = rng.normal(size=(9, 16)).astype(np.float32)
    items_t = np.ascontiguousarray(rng.normal(size=(300, 16)).astype(np.float32).T)
    whole = block_scores(q, items_t)
    assert np.array_equal(block_scores(q[4:5], items_t), whole[4:5])
    assert np.array_equal(block_scores(q[3:7], items_t), whole[3:7])


def _stream_batch(rows: list[tuple[int, list[float] | None, list[int] | None]]) -> pa.RecordBatch:
    users, feats, heard = zip(*rows)
    return pa.RecordBatch.from_arrays(
        [pa.array(users, pa.int32()), pa.array(feats, pa.list_(pa.float32())), pa.array(heard, pa.list_(pa.int32()))],
        names=["user_idx", "features", "_heard"],
    )


@pytest.mark.parametrize("heard_buffer", [1, 1 << 20])
def test_user_stream_cuts_blocks_of_complete_users(monkeypatch: pytest.MonkeyPatch, heard_buffer: int) -> None:
    # A stream sorted by user, split across batches mid-user: u1 (factors after its heard rows, split over
    # two batches), u2 (heard only: dropped), u3 (no heard), u5, u6, u8. Blocks of 2 complete users.
    monkeypatch.setattr(topn, "HEARD_BUFFER", heard_buffer)
    rows = [
        (1, None, [10]), (1, None, [11]),
        (1, [1.0], None), (1, None, [12]), (2, None, [10, 13]),
        (3, [3.0], None), (5, None, [14]), (5, [5.0], None),
        (6, [6.0], None), (6, None, [15]), (8, None, [16]), (8, [8.0], None), (8, None, [17]),
    ]  # fmt: skip
    stream = topn._UserStream(rank=1, block_size=2)
    blocks = []
    for lo, hi in ((0, 2), (2, 5), (5, 8), (8, 10), (10, 13)):
        blocks += list(stream.add(_stream_batch(rows[lo:hi])))
    blocks += list(stream.finish())
    got = [
        (list(users), list(factors[:, 0]), sorted(zip(users[mask_rows].tolist(), tracks.tolist())))
        for factors, users, mask_rows, tracks in blocks
    ]
    assert got == [
        ([1, 3], [1.0, 3.0], [(1, 10), (1, 11), (1, 12)]),
        ([5, 6], [5.0, 6.0], [(5, 14), (6, 15)]),
        ([8], [8.0], [(8, 16), (8, 17)]),
    ]


def test_pack_heard_batches_groups_pairs_per_user_within_the_buffer() -> None:
    # Buffer of 4 pairs: the first two batches (5 pairs) are grouped together, the last one alone; the
    # pair with a null track is dropped. Each list is sorted by track.
    batches = [
        pa.RecordBatch.from_arrays([pa.array([2, 1, 2], pa.int32()), pa.array([7, 5, 3], pa.int32())], ["u", "t"]),
        pa.RecordBatch.from_arrays([pa.array([1, 3, 3], pa.int32()), pa.array([9, None, 4], pa.int32())], ["u", "t"]),
        pa.RecordBatch.from_arrays([pa.array([1], pa.int32()), pa.array([6], pa.int32())], ["u", "t"]),
    ]
    got = [b.to_pydict() for b in topn.pack_heard_batches(iter(batches), buffer=4)]
    assert got == [
        {"user_idx": [1, 2, 3], "_heard": [[5, 9], [3, 7], [4]]},
        {"user_idx": [1], "_heard": [[6]]},
    ]


def test_user_stream_refuses_duplicate_users() -> None:
    stream = topn._UserStream(rank=1, block_size=1)
    with pytest.raises(ValueError, match="duplicate user_idx"):
        list(stream.add(_stream_batch([(1, [1.0], None), (1, [2.0], None), (2, [3.0], None)])))


def test_top_n_unheard_known_answer(spark: SparkSession) -> None:
    # 3 users x 5 tracks. Scores (user . track):
    #   u0 = (1, 0): t0 1, t1 2, t2 2, t3 0, t4 3;  heard t4      -> t1 2, t2 2 (tie: smaller id first)
    #   u1 = (0, 1): t0 0, t1 1, t2 1, t3 3, t4 -1; heard t3, t1  -> t2 1, t0 0
    #   u2 = (1, 1): t0 1, t1 3, t2 3, t3 3, t4 2;  heard t2      -> t1 3, t3 3 (t2 tied but heard)
    uf = spark.createDataFrame(
        [(0, [1.0, 0.0]), (1, [0.0, 1.0]), (2, [1.0, 1.0])], "user_idx int, features array<float>"
    )
    tf = spark.createDataFrame(
        [(0, [1.0, 0.0]), (1, [2.0, 1.0]), (2, [2.0, 1.0]), (3, [0.0, 3.0]), (4, [3.0, -1.0])],
        "track_idx int, features array<float>",
    )
    heard = spark.createDataFrame([(0, 4), (1, 3), (1, 1), (2, 2), (9, 0)], "user_idx int, track_idx int")
    expected = spark.createDataFrame(
        [(0, 1, 1, 2.0), (0, 2, 2, 2.0), (1, 2, 1, 1.0), (1, 0, 2, 0.0), (2, 1, 1, 3.0), (2, 3, 2, 3.0)], TOP_N_SCHEMA
    )
    assert_df_equality(top_n_unheard(uf, tf, heard, 2), expected, ignore_row_order=True, ignore_nullable=True)


def _brute_force(users: dict[int, list[int]], tracks: dict[int, list[int]], heard: set, n: int) -> list[tuple]:
    rows = []
    for u, uf in users.items():
        scored = [(-sum(a * b for a, b in zip(uf, tf)), t) for t, tf in tracks.items() if (u, t) not in heard]
        for rank, (neg, t) in enumerate(sorted(scored)[:n], start=1):
            rows.append((u, t, rank, float(-neg)))
    return rows


def test_top_n_unheard_equals_brute_force_and_skips_heard(spark: SparkSession) -> None:
    # Small integer factors: every dot product is exact in floating point, and many scores tie, so the
    # comparison checks the track_idx tie-break as well as the ranking.
    rng = np.random.default_rng(3)
    users = {u: [int(x) for x in rng.integers(-2, 3, size=3)] for u in range(7)}
    tracks = {t: [int(x) for x in rng.integers(-2, 3, size=3)] for t in range(100, 112)}
    heard = {(u, t) for u in users for t in tracks if rng.random() < 0.3}
    heard = {(u, t) for u, t in heard if u != 6} | {(6, t) for t in tracks if t != 105}  # all but one
    uf = spark.createDataFrame([(u, [float(x) for x in f]) for u, f in users.items()], FACTORS)
    tf = spark.createDataFrame([(t, [float(x) for x in f]) for t, f in tracks.items()], FACTORS)
    heard_df = spark.createDataFrame(sorted(heard), "user_idx int, track_idx int")
    got = top_n_unheard(
        uf.withColumnRenamed("idx", "user_idx"), tf.withColumnRenamed("idx", "track_idx"), heard_df, 4, 3
    )
    expected = spark.createDataFrame(_brute_force(users, tracks, heard, 4), TOP_N_SCHEMA)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    rows = got.collect()
    assert not {(r.user_idx, r.track_idx) for r in rows} & heard
    assert [(r.track_idx, r.rank) for r in rows if r.user_idx == 6] == [(105, 1)]


def test_top_n_unheard_without_exclusions(spark: SparkSession) -> None:
    # u0 = (1, 0): scores t1 = 2, t2 = 1, t3 = 2 -> t1 (tie with t3, smaller id), t3.
    uf = spark.createDataFrame([(0, [1.0, 0.0])], "user_idx int, features array<float>")
    tf = spark.createDataFrame(
        [(1, [2.0, 0.0]), (2, [1.0, 5.0]), (3, [2.0, -1.0])], "track_idx int, features array<float>"
    )
    expected = spark.createDataFrame([(0, 1, 1, 2.0), (0, 3, 2, 2.0)], TOP_N_SCHEMA)
    assert_df_equality(top_n_unheard(uf, tf, None, 2), expected, ignore_row_order=True, ignore_nullable=True)


def test_top_n_similar_is_cosine_and_excludes_self(spark: SparkSession) -> None:
    # t0 and t1 point the same way (cosine 1); t2 is orthogonal to both (cosine 0, tie -> smaller id).
    tf = spark.createDataFrame(
        [(0, [1.0, 0.0]), (1, [2.0, 0.0]), (2, [0.0, 3.0])], "track_idx int, features array<float>"
    )
    expected = spark.createDataFrame([(0, 1, 1, 1.0), (1, 0, 1, 1.0), (2, 0, 1, 0.0)], SIMILAR_SCHEMA)
    assert_df_equality(top_n_similar(tf, 1), expected, ignore_row_order=True, ignore_nullable=True)
