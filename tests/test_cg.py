"""Conjugate-gradient implicit ALS: the kernel against exact solves, the objective against a dense sum, the
checkerboard, MLlib's objective reached, both shipping paths equal, determinism, and the solver factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality
from pydantic import ValidationError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec.config import WeeklyConfig
from spotrec.tables import TRACK_FACTORS, USER_FACTORS, conform
from spotrec.weekly.als import AlsRecommender, make_recommender
from spotrec.weekly.cg import CgRecommender, _pack, block_of, cg_rows, cg_solve, implicit_objective, initial_factors
from tests.test_als import checkerboard

CFG = WeeklyConfig(
    rank=4, reg_param=0.1, alpha=10.0, max_iter=6, num_blocks=2, checkpoint_interval=3, seed=7, solver="cg"
)


def _dense(frame: DataFrame, key: str, size: int, rank: int) -> np.ndarray:
    pdf = frame.toPandas()
    out = np.zeros((size, rank))
    out[pdf[key].to_numpy()] = np.stack(pdf["features"].to_numpy())
    return out


def _factors(model: AlsRecommender | CgRecommender, users: int, items: int) -> tuple[np.ndarray, np.ndarray]:
    rank = model.cfg.rank
    if isinstance(model, AlsRecommender):
        u = model.model.userFactors.withColumnRenamed("id", "user_idx")
        i = model.model.itemFactors.withColumnRenamed("id", "track_idx")
    else:
        u, i = model.user_factors_frame(), model.track_factors_frame()
    return _dense(u, "user_idx", users, rank), _dense(i, "track_idx", items, rank)


@pytest.mark.parametrize("solve", [cg_solve, cg_rows], ids=["numpy", "numba"])
def test_cg_steps_converge_to_the_exact_normal_equation_solution(solve: Callable[..., np.ndarray]) -> None:
    """k CG steps solve a k-dimensional SPD system exactly: compare with numpy's dense solve per row."""
    rng = np.random.default_rng(0)
    k, m = 5, 9
    other = rng.normal(size=(m, k)).astype(np.float32)
    gram = other.astype(np.float64).T @ other
    indptr = np.array([0, 3, 4, 8])
    nbrs = np.array([0, 2, 5, 7, 1, 3, 4, 8])
    ratings = np.array([1.0, 2.0, 0.5, 3.0, 1.0, -1.0, 0.25, 4.0], dtype=np.float32)
    reg, alpha = 0.3, 2.0
    got = solve(indptr, nbrs, ratings, np.zeros((3, k), np.float32), other, gram, reg, alpha, 3 * k)
    for row in range(3):
        sl = slice(indptr[row], indptr[row + 1])
        y = other[nbrs[sl]].astype(np.float64)
        r = ratings[sl].astype(np.float64)
        c1 = alpha * np.abs(r)
        a = gram + (y.T * c1) @ y + reg * np.sum(r > 0) * np.eye(k)  # MLlib: lambda x (positive ratings)
        b = y.T @ np.where(r > 0, 1.0 + c1, 0.0)
        np.testing.assert_allclose(got[row], np.linalg.solve(a, b), rtol=1e-3, atol=1e-4)


def test_compiled_kernel_takes_the_same_steps_as_the_numpy_reference() -> None:
    """3 warm-started steps (not converged, so every step counts), rows with and without ratings, negative
    ratings: the compiled kernel (float64 accumulators) agrees with the float32 numpy reference."""
    rng = np.random.default_rng(4)
    n, m, k = 60, 40, 8
    counts = rng.integers(0, 12, n)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    nbrs = np.concatenate([np.sort(rng.choice(m, c, replace=False)) for c in counts]).astype(np.int32)
    ratings = np.log1p(rng.integers(1, 9, len(nbrs))).astype(np.float32)
    ratings[::7] *= -1  # negative ratings: confidence from |r|, preference 0
    other = (0.3 * rng.normal(size=(m, k))).astype(np.float32)
    gram = other.astype(np.float64).T @ other
    x0 = (0.3 * rng.normal(size=(n, k))).astype(np.float32)
    args = (indptr, nbrs, ratings, x0, other, gram, 0.2, 10.0, 3)
    reference, compiled = cg_solve(*args), cg_rows(*args)
    assert not np.allclose(reference, x0, atol=1e-2)
    np.testing.assert_allclose(compiled, reference, rtol=1e-4, atol=1e-5)


def test_objective_equals_the_dense_sum() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    u, i = np.array([0, 0, 2]), np.array([1, 3, 0])
    r = np.array([2.0, 1.0, -0.5])
    alpha, reg = 3.0, 0.2
    c, p = np.ones((3, 4)), np.zeros((3, 4))
    c[u, i] = 1 + alpha * np.abs(r)
    p[u, i] = r > 0
    n_u, n_i = np.array([2, 0, 0]), np.array([0, 1, 0, 1])  # positive ratings only (ALS-WR, as MLlib)
    expected = np.sum(c * (p - x @ y.T) ** 2) + reg * (n_u @ np.sum(x**2, 1) + n_i @ np.sum(y**2, 1))
    assert implicit_objective(u, i, r, x, y, alpha, reg) == pytest.approx(expected, rel=1e-12)


def test_initial_factors_depend_on_the_id_only() -> None:
    a = initial_factors(np.array([3, 1, 7]), 6, seed=5, side=0)
    b = initial_factors(np.array([7, 3]), 6, seed=5, side=0)
    np.testing.assert_array_equal(a[[2, 0]], b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert not np.allclose(a, initial_factors(np.array([3, 1, 7]), 6, seed=6, side=0))


@pytest.fixture(scope="module")
def board(spark: SparkSession) -> Iterator[tuple[DataFrame, DataFrame, CgRecommender]]:
    train, held_out = checkerboard(spark)
    yield train, held_out, CgRecommender(CFG).fit(train)


def test_held_out_item_comes_back_first(board: tuple[DataFrame, DataFrame, CgRecommender]) -> None:
    train, held_out, model = board
    recs = model.recommend(train.select("user_id").distinct(), 1, exclude=train)
    got = recs.select("user_id", "track_id", "rank")
    expected = held_out.select("user_id", "track_id", F.lit(1).alias("rank"))
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_factor_frames_follow_the_table_schemas(board: tuple[DataFrame, DataFrame, CgRecommender]) -> None:
    _, _, model = board
    users = conform(model.user_factors(), USER_FACTORS).collect()
    tracks = conform(model.track_factors(), TRACK_FACTORS).collect()
    assert sorted((r.user_idx, r.user_id) for r in users) == [(u, f"u{u:02d}") for u in range(12)]
    assert {len(r.features) for r in users + tracks} == {CFG.rank}
    assert {r.model_version for r in users + tracks} == {model.model_version}
    assert model.model_version.startswith("als-cg-r4-l0.1-a10-")
    assert model.shipped == ["broadcast"] * (2 * CFG.max_iter)


def test_same_seed_same_factors(board: tuple[DataFrame, DataFrame, CgRecommender]) -> None:
    train, _, first = board
    again = CgRecommender(CFG).fit(train.orderBy(F.rand(1)).repartition(3))
    for a, b in zip(_factors(first, 12, 12), _factors(again, 12, 12), strict=True):
        np.testing.assert_array_equal(a, b)


def test_pack_builds_both_sides_csr_in_their_blocks_whatever_the_input_order(spark: SparkSession) -> None:
    rows = [(0, 1, 2.0), (0, 0, 1.0), (2, 1, 0.5), (1, 0, 3.0)]
    frame = spark.createDataFrame(rows, "user_idx int, track_idx int, confidence float")
    want = {
        0: {0: [(0, 1.0), (1, 2.0)], 1: [(0, 3.0)], 2: [(1, 0.5)]},  # users: (track, rating)
        1: {0: [(0, 1.0), (1, 3.0)], 1: [(0, 2.0), (2, 0.5)]},  # tracks: (user, rating)
    }
    for ordered in (frame, frame.orderBy(F.rand(3)).repartition(3)):
        packed = _pack(ordered, 2)
        got: dict[int, dict[int, list[tuple[int, float]]]] = {0: {}, 1: {}}
        for part, chunks in enumerate(packed.glom().collect()):
            for side, block, _, ids, indptr, indices, data in chunks:
                assert part == 2 * side + block
                assert list(block_of(ids, 2)) == [block] * len(ids)
                for row, rid in enumerate(ids):
                    span = slice(indptr[row], indptr[row + 1])
                    got[side][int(rid)] = [(int(n), float(v)) for n, v in zip(indices[span], data[span], strict=True)]
        packed.unpersist()
        assert got == want


def _small_matrix(spark: SparkSession) -> tuple[DataFrame, pd.DataFrame]:
    """40 users x 24 tracks, two taste groups with noise, ratings log1p(plays) in (0.7, 2.4)."""
    rng = np.random.default_rng(3)
    rows = []
    for u in range(40):
        for i in range(24):
            same = (u % 2) == (i % 2)
            if rng.random() < (0.45 if same else 0.08):
                rows.append((f"u{u}", f"t{i}", u, i, float(np.log1p(rng.integers(1, 10)))))
    pdf = pd.DataFrame(rows, columns=["user_id", "track_id", "user_idx", "track_idx", "confidence"])
    return spark.createDataFrame(pdf), pdf


@pytest.mark.slow  # a whole step end to end: in make test, not make test-fast
def test_cg_reaches_mllibs_objective_and_both_shipping_paths_agree(spark: SparkSession) -> None:
    train, pdf = _small_matrix(spark)
    cfg = CFG.model_copy(update={"rank": 6, "max_iter": 10, "reg_param": 0.05})
    u, i, r = (pdf[c].to_numpy() for c in ("user_idx", "track_idx", "confidence"))

    def objective(model: AlsRecommender | CgRecommender) -> float:
        return implicit_objective(u, i, r, *_factors(model, 40, 24), cfg.alpha, cfg.reg_param)

    mllib = objective(AlsRecommender(cfg.model_copy(update={"solver": "mllib"})).fit(train))
    broadcast = CgRecommender(cfg).fit(train)
    start = implicit_objective(
        u, i, r, initial_factors(np.arange(40), 6, cfg.seed, 0), np.zeros((24, 6)), cfg.alpha, cfg.reg_param
    )
    assert objective(broadcast) <= 1.01 * mllib < 0.5 * start
    short = cfg.model_copy(update={"max_iter": 3})
    joined = CgRecommender(short.model_copy(update={"cg_broadcast_mb": 0.0})).fit(train)
    assert joined.shipped == ["join"] * 6
    for a, b in zip(_factors(CgRecommender(short).fit(train), 40, 24), _factors(joined, 40, 24), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_factory_builds_the_configured_solver() -> None:
    assert isinstance(make_recommender(CFG.model_copy(update={"solver": "mllib"})), AlsRecommender)
    cg = make_recommender(CFG, "/tmp/ck", block_size=8, input_version="v3")
    assert isinstance(cg, CgRecommender)
    assert (cg.checkpoint_dir, cg.block_size, cg.input_version) == ("/tmp/ck", 8, "v3")
    assert WeeklyConfig().solver == "cg"
    with pytest.raises(ValidationError, match="solver"):
        WeeklyConfig(solver="cholesky")  # type: ignore[arg-type]


def test_unfitted_model_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        CgRecommender(CFG).user_factors()
