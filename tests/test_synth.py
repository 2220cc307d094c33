"""The synthetic world: determinism, planted structure, response model, injected faults, ground truth."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import GenerateConfig
from spotrec.synth.catalogue import TRACK_DDL, build_catalogue
from spotrec.synth.listeners import EVENT_DDL, FAULT_KINDS, PLAYLIST_DDL
from spotrec.synth.response import ResponseModel
from spotrec.synth.truth import load_ground_truth
from spotrec.synth.world import GenerateResult, generate_world

# Python workers must have pandas/pyarrow (mapInPandas): use this interpreter unless told otherwise.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

TINY = GenerateConfig(
    users=60,
    artists=24,
    albums_per_artist=2,
    tracks_per_album=5,
    taste_groups=4,
    taste_dim=8,
    weeks=2,
    sessions_per_user_week=3.0,
    session_length_mean=8.0,
    playlists_per_user=1.5,
    bad_row_fraction=0.02,
    partitions=2,
    seed=11,
)


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    """The tiny world, generated once for the module's read-only checks."""
    root = tmp_path_factory.mktemp("synth")
    result = generate_world(spark, TINY, str(root / "raw"), str(root / "artifacts"))
    return result, root


@pytest.fixture(scope="module")
def frames(spark, world):
    result, _ = world
    events = spark.read.parquet(result.events_path).toPandas()
    truth = load_ground_truth(result.ground_truth_path)
    return events, truth


def _valid(events: pd.DataFrame) -> pd.DataFrame:
    """Events that are not injected faults (duplicates kept once)."""
    ok = events[C.USER_ID].notna() & events[C.TRACK_ID].notna() & (events[C.MS_PLAYED] >= 0)
    ok &= events[C.TS].dt.year < 2099
    return events[ok].drop_duplicates()


# -- response model --------------------------------------------------------------------------------------
AFFINITIES = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])


def test_response_probabilities_are_consistent_and_monotone_in_affinity() -> None:
    p = ResponseModel().probabilities(AFFINITIES, popularity=0.5, position=3, prev_consecutive_skips=1)
    for name, values in p.items():
        assert ((values >= 0) & (values <= 1)).all(), name
    np.testing.assert_allclose(p["p_skip"] + p["p_partial"] + p["p_complete"], 1.0)
    assert (p["p_listen_gt_x"] >= p["p_complete"]).all()  # complete => listened > X
    assert (p["p_save"] <= p["p_complete"]).all()  # saves happen on completed plays
    assert (np.diff(p["p_skip"]) < 0).all()
    assert (np.diff(p["p_quit"]) < 0).all()
    for name in ("p_complete", "p_listen_gt_x", "p_save"):
        assert (np.diff(p[name]) > 0).all(), name


def test_response_probabilities_match_hand_computed_values() -> None:
    flat = ResponseModel(
        skip_bias=0.0,
        skip_affinity_weight=0.0,
        skip_popularity_weight=0.0,
        position_fatigue=0.0,
        consecutive_skip_weight=0.0,
        complete_bias=0.0,
        complete_affinity_weight=0.0,
        save_bias=0.0,
        save_affinity_weight=0.0,
        quit_bias=0.0,
        quit_skip_weight=math.log(3.0),
        quit_position_weight=0.0,
        listen_threshold_s=60.0,
    )
    p = flat.probabilities(0.3, 0.7, 5, 0, duration_ms=90_000)
    assert p["p_skip"] == pytest.approx(0.5)
    assert p["p_complete"] == pytest.approx(0.25)
    assert p["p_partial"] == pytest.approx(0.25)
    # partial plays are U[30 s, 90 s): P(> 60 s) = 1/2; skips never pass 60 s; completes always do.
    assert p["p_listen_gt_x"] == pytest.approx(0.25 * 0.5 + 0.25)
    assert p["p_save"] == pytest.approx(0.125)
    # quit after a skip: σ(ln 3) = 3/4; after a play: σ(0) = 1/2.
    assert p["p_quit"] == pytest.approx(0.5 * 0.75 + 0.5 * 0.5)


def test_skip_streaks_and_position_raise_skips_and_quits() -> None:
    m = ResponseModel()
    streak = m.probabilities(0.2, 0.5, 2, np.array([0, 1, 2, 3]))
    assert (np.diff(streak["p_skip"]) > 0).all() and (np.diff(streak["p_quit"]) > 0).all()
    later = m.probabilities(0.2, 0.5, np.array([0, 5, 20]), 0)
    assert (np.diff(later["p_skip"]) > 0).all()


def test_sampled_outcomes_follow_the_probabilities() -> None:
    m = ResponseModel(listen_threshold_s=45.0)
    n = 200_000
    aff = np.where(np.arange(n) % 2 == 0, 0.8, -0.2)
    dur = np.full(n, 180_000)
    s = m.sample(np.random.default_rng(5), aff, 0.4, 2, 1, dur)
    for a in (0.8, -0.2):
        sel = aff == a
        p = m.probabilities(a, 0.4, 2, 1, 180_000)
        assert s["skipped"][sel].mean() == pytest.approx(float(p["p_skip"]), abs=0.006)
        assert s["completed"][sel].mean() == pytest.approx(float(p["p_complete"]), abs=0.006)
        assert s["listened_gt_x"][sel].mean() == pytest.approx(float(p["p_listen_gt_x"]), abs=0.006)
        assert s["saved"][sel].mean() == pytest.approx(float(p["p_save"]), abs=0.003)
        assert s["quit"][sel].mean() == pytest.approx(float(p["p_quit"]), abs=0.004)
    ms, skipped, completed = s["ms_played"], s["skipped"], s["completed"]
    assert ((ms[skipped] >= 1000) & (ms[skipped] < 30_000)).all()
    assert (ms[completed] == 180_000).all()
    partial = ~skipped & ~completed
    assert ((ms[partial] >= 30_000) & (ms[partial] < 180_000)).all()
    again = m.sample(np.random.default_rng(5), aff, 0.4, 2, 1, dur)
    assert all(np.array_equal(s[k], again[k]) for k in s)


def test_response_model_json_round_trip(tmp_path: Path) -> None:
    m = ResponseModel(skip_bias=1.25, max_consecutive_skips=3)
    m.save(tmp_path / "rm.json")
    assert ResponseModel.load(tmp_path / "rm.json") == m
    with pytest.raises(ValueError, match="unknown ResponseModel parameter"):
        ResponseModel.from_dict({"skip_bias": 0.0, "typo": 1})


# -- catalogue (driver) ----------------------------------------------------------------------------------
def test_catalogue_features_follow_the_artist_group_and_durations_are_about_3_5_minutes() -> None:
    cat, tracks = build_catalogue(GenerateConfig(seed=3))
    assert tracks[C.TRACK_ID].is_unique and len(tracks) == 300 * 3 * 8
    feats = tracks[["acousticness", "danceability", "energy", "valence"]]
    assert ((feats >= 0) & (feats <= 1)).all().all()
    group = pd.Series(cat.track_group)
    for col in [*feats.columns, "tempo"]:
        x = tracks[col]
        r2 = 1 - x.groupby(group).transform(lambda v: v - v.mean()).var() / x.var()
        assert r2 > 0.4, col  # the taste group explains most of each feature's variance
    assert 190_000 < tracks[C.DURATION_MS].median() < 230_000
    norms = np.linalg.norm(cat.track_vectors, axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-9)
    # tracks are closest to their own group's direction
    assert ((cat.track_vectors @ cat.centroids.T).argmax(axis=1) == cat.track_group).mean() > 0.95


# -- the generated world ---------------------------------------------------------------------------------
def _part_tables(path: str) -> list[pd.DataFrame]:
    return [pq.read_table(p).to_pandas() for p in sorted(Path(path).glob("part-*.parquet"))]


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, np.ndarray)).any():
            df[col] = df[col].map(tuple)
    return df.sort_values(list(df.columns), na_position="first", ignore_index=True)


def _counts(result: GenerateResult) -> dict[str, object]:
    return {k: v for k, v in asdict(result).items() if not k.endswith("_path")}


def test_same_config_same_content_whatever_the_partitioning(spark, world, tmp_path: Path) -> None:
    result, root = world
    again = generate_world(spark, TINY, str(tmp_path / "a" / "raw"), str(tmp_path / "a" / "art"))
    other = generate_world(
        spark, TINY.model_copy(update={"partitions": 3}), str(tmp_path / "b" / "raw"), str(tmp_path / "b" / "art")
    )
    assert _counts(again) == _counts(result) == _counts(other)
    for sub in ("raw/events", "raw/tracks", "raw/playlists", "artifacts/ground_truth/users"):
        first = _part_tables(str(root / sub))
        rerun = _part_tables(str(tmp_path / "a" / sub.replace("artifacts", "art")))
        assert len(first) == len(rerun) and all(x.equals(y) for x, y in zip(first, rerun)), sub  # same files
        repart = _part_tables(str(tmp_path / "b" / sub.replace("artifacts", "art")))
        pd.testing.assert_frame_equal(_sorted(pd.concat(first)), _sorted(pd.concat(repart)), obj=sub)
    assert len(_part_tables(str(tmp_path / "b" / "raw/events"))) == 3


def test_raw_files_have_the_canonical_schemas(spark, world) -> None:
    result, _ = world
    from pyspark.sql.types import _parse_datatype_string

    for path, ddl in (
        (result.events_path, EVENT_DDL),
        (result.tracks_path, TRACK_DDL),
        (result.playlists_path, PLAYLIST_DDL),
    ):
        got = spark.read.parquet(path).schema
        want = _parse_datatype_string(ddl)
        assert [(f.name, f.dataType) for f in got.fields] == [(f.name, f.dataType) for f in want.fields]
    assert result.tracks == 24 * 2 * 5 and result.users == 60


def test_events_are_internally_consistent(frames) -> None:
    events, _ = frames
    ev = _valid(events)
    assert len(ev) > 1000
    assert set(ev[C.CONTEXT_TYPE]) == {"playlist", "album", "radio", "search", C.EXPLORATION_CONTEXT}
    assert (ev[C.MS_PLAYED] <= ev[C.TRACK_DURATION_MS]).all()
    assert (ev.loc[ev[C.SKIPPED], C.MS_PLAYED] < 30_000).all()
    assert ((ev[C.REASON_END] == "trackdone") == (ev[C.MS_PLAYED] == ev[C.TRACK_DURATION_MS])).all()
    # positions are 0..n-1 within each session (bad rows keep theirs), and time moves forward in a session
    for _, s in events.drop_duplicates().groupby(C.SESSION_ID):
        assert sorted(s[C.SESSION_POSITION]) == list(range(len(s)))
    for _, s in ev.groupby(C.SESSION_ID):
        assert s.sort_values(C.SESSION_POSITION)[C.TS].is_monotonic_increasing
    # a user saves a track at most once
    saves = ev[ev[C.SAVED]]
    assert 0 < len(saves) == len(saves[[C.USER_ID, C.TRACK_ID]].drop_duplicates())
    assert ev[C.TS].min() >= pd.Timestamp("2026-09-07")  # Spark hands UTC times over as naive
    assert ev[C.TS].max() < pd.Timestamp("2026-09-22")


def test_playlists_are_ordered_and_built_from_the_owners_taste(spark, world, frames) -> None:
    result, _ = world
    _, truth = frames
    pl = spark.read.parquet(result.playlists_path).toPandas()
    assert result.playlists == pl[C.PLAYLIST_ID].nunique() > 30 and result.playlist_tracks == len(pl)
    for _, p in pl.groupby(C.PLAYLIST_ID):
        assert sorted(p[C.POSITION]) == list(range(len(p))) and p[C.TRACK_ID].is_unique
        assert p[C.USER_ID].nunique() == 1
    owner_group = pl[C.USER_ID].map(truth.users.set_index(C.USER_ID)["taste_group"]).to_numpy()
    track_group = pl[C.TRACK_ID].map(truth.tracks.set_index(C.TRACK_ID)["taste_group"]).to_numpy()
    assert (owner_group == track_group).mean() > 0.6
    users = truth.users[C.USER_ID].to_numpy()
    random_owner = np.random.default_rng(0).choice(users, len(pl))
    owner_aff = truth.affinity(pl[C.USER_ID], pl[C.TRACK_ID]).mean()
    assert owner_aff > truth.affinity(random_owner, pl[C.TRACK_ID]).mean() + 0.15


def test_plays_concentrate_on_the_users_taste_group(frames) -> None:
    events, truth = frames
    ev = _valid(events)
    user_group = truth.users.set_index(C.USER_ID)["taste_group"]
    track_group = truth.tracks.set_index(C.TRACK_ID)["taste_group"]
    same = ev[C.USER_ID].map(user_group).to_numpy() == ev[C.TRACK_ID].map(track_group).to_numpy()
    chance = 1 / TINY.taste_groups
    assert same.mean() > chance + 0.3, same.mean()


def test_popularity_is_zipf_like(frames) -> None:
    events, truth = frames
    plays = _valid(events)[C.TRACK_ID].value_counts().reindex(truth.tracks[C.TRACK_ID], fill_value=0)
    top = plays.sort_values(ascending=False).iloc[: len(plays) // 10]
    assert top.sum() / plays.sum() > 0.5
    # and the hidden popularity drives it: the most popular decile is played far more than the least
    pop = truth.tracks.set_index(C.TRACK_ID)["popularity"]
    assert plays[pop > 0.9].mean() > 5 * plays[pop < 0.1].mean()


def test_low_affinity_tracks_are_skipped_more(frames) -> None:
    events, truth = frames
    ev = _valid(events)
    aff = truth.affinity(ev[C.USER_ID], ev[C.TRACK_ID])
    low, high = aff < np.quantile(aff, 1 / 3), aff > np.quantile(aff, 2 / 3)
    skipped = ev[C.SKIPPED].to_numpy()
    assert skipped[low].mean() > 2 * skipped[high].mean() + 0.05


def test_injected_faults_match_the_files(spark, world) -> None:
    result, _ = world
    ev = spark.read.parquet(result.events_path)
    found = ev.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col(C.USER_ID).isNull().cast("int")).alias("missing_user_id"),
        F.sum(F.col(C.TRACK_ID).isNull().cast("int")).alias("missing_track_id"),
        F.sum((F.col(C.MS_PLAYED) < 0).cast("int")).alias("negative_ms_played"),
        F.sum((F.year(C.TS) >= 2099).cast("int")).alias("future_ts"),
    ).first()
    assert found is not None
    distinct = ev.distinct().count()
    in_files = {k: int(found[k]) for k in FAULT_KINDS if k != "duplicate"} | {"duplicate": found["rows"] - distinct}
    assert in_files == result.faults
    assert all(v > 0 for v in result.faults.values()), result.faults
    assert sum(result.faults.values()) == pytest.approx(TINY.bad_row_fraction * result.events, rel=0.5)
    assert result.events == found["rows"]
    saved = json.loads(Path(result.ground_truth_path, "injected_faults.json").read_text())
    assert saved == result.faults == load_ground_truth(result.ground_truth_path).injected_faults


def test_ground_truth_loads(frames, tmp_path: Path) -> None:
    _, truth = frames
    assert len(truth.users) == TINY.users and len(truth.tracks) == 24 * 2 * 5
    np.testing.assert_allclose(np.linalg.norm(truth.user_vectors(), axis=1), 1.0, rtol=1e-5)
    assert truth.response_model == ResponseModel()
    m = truth.affinity_matrix(truth.users[C.USER_ID][:3], truth.tracks[C.TRACK_ID][:4])
    assert m.shape == (3, 4)
    np.testing.assert_allclose(
        m[1, 2], truth.affinity([truth.users[C.USER_ID][1]], [truth.tracks[C.TRACK_ID][2]])[0], rtol=1e-9
    )
    with pytest.raises(KeyError, match="not in the ground truth"):
        truth.affinity(["nobody"], [truth.tracks[C.TRACK_ID][0]])
    with pytest.raises(FileNotFoundError, match="spotrec generate"):
        load_ground_truth(tmp_path / "nothing")


# -- long-term listener (coherence, artist fatigue, patience) -----------------------------------------------
LONG_TERM = {"coherence_weight": 2.0, "artist_fatigue_weight": 0.4, "patience_weight": 1.5}
CONTROL_FINGERPRINT = (1137, 141, 60796)
"""(plays, skips, total ms mod 1000003) of the 30-user tiny world, measured with the code before the
long-term listener existed: the control world must stay exactly today's world."""


def test_long_term_effects_off_by_default_leave_every_draw_unchanged() -> None:
    plain = ResponseModel()
    assert ResponseModel.for_world(GenerateConfig()) == plain and not plain.long_term
    args = (AFFINITIES, 0.4, 3, 1, 180_000.0)
    history = {"distance": 1.5, "artist_repeats": 2.0, "satisfaction": -0.7}
    want, got = plain.probabilities(*args), plain.probabilities(*args, **history)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    a = plain.sample(np.random.default_rng(3), *args)
    b = plain.sample(np.random.default_rng(3), *args, **history)
    for key in ("skipped", "completed", "saved", "quit", "ms_played"):
        np.testing.assert_array_equal(a[key], b[key])


def test_long_term_effects_follow_their_equations() -> None:
    m = ResponseModel(**LONG_TERM)
    assert m.long_term
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    # Coherence: taste distance 1.5 to the previous track adds 2.0 * 1.5 to the skip log-odds.
    p = m.probabilities(0.5, 0.2, 0, 0, distance=1.5)
    assert p["p_skip"] == pytest.approx(sig(0.3 - 3.0 * 0.5 - 0.8 * 0.2 + 2.0 * 1.5))
    # Fatigue: two earlier plays of the artist wear the affinity down to 0.5 - 0.8 = -0.3.
    p = m.probabilities(0.5, 0.2, 0, 0, artist_repeats=2)
    assert p["p_skip"] == pytest.approx(sig(0.3 - 3.0 * -0.3 - 0.8 * 0.2))
    assert p["p_complete"] == pytest.approx((1 - p["p_skip"]) * sig(0.6 + 2.0 * -0.3))
    # Patience: S = 1 before a track of affinity 0.5 -> S' = 0.8 + 0.2 after a play, 0.8 - 0.5 after a skip.
    parts = m._parts(0.5, 0.2, 0, 0, None, satisfaction=1.0)
    assert float(parts["q_after_play"]) == pytest.approx(sig(-3.6 - 1.5 * 1.0))
    assert float(parts["q_after_skip"]) == pytest.approx(sig(-3.6 + 0.7 - 1.5 * 0.3))
    # Sampling carries the state forward with the same update.
    out = m.sample(np.random.default_rng(0), np.full(200, 0.5), 0.2, 0, 0, satisfaction=1.0)
    np.testing.assert_allclose(out["satisfaction"], np.where(out["skipped"], 0.3, 1.0))


def _world_events(**long_term: float) -> pd.DataFrame:
    from spotrec.synth.listeners import events_frame, user_events, user_playlists, user_profile

    cfg = TINY.model_copy(update={"users": 30, "bad_row_fraction": 0.0, **long_term})
    cat, _ = build_catalogue(cfg)
    model = ResponseModel.for_world(cfg)
    parts = []
    for u in range(cfg.users):
        prof = user_profile(u, cat, cfg)
        parts.append(user_events(prof, user_playlists(prof, cat, cfg), cat, cfg, model))
    return events_frame(parts)


def test_the_control_world_is_todays_world_and_long_term_sessions_differ() -> None:
    # Without the exploration log (share 0) the world is the one measured before the log existed.
    control = _world_events(exploration_share=0.0)
    explicit_off = _world_events(
        coherence_weight=0.0, artist_fatigue_weight=0.0, patience_weight=0.0, exploration_share=0.0
    )
    pd.testing.assert_frame_equal(control, explicit_off)
    # Frozen fingerprint of the default tiny world (changes only if the default listener changes).
    assert (len(control), int(control[C.SKIPPED].sum()), int(control[C.MS_PLAYED].sum() % 1_000_003)) == (
        CONTROL_FINGERPRINT
    )
    fatigued = _world_events(artist_fatigue_weight=0.6, exploration_share=0.0)
    assert fatigued[C.SKIPPED].mean() > control[C.SKIPPED].mean() + 0.05


def test_exploration_sessions_are_shuffled_candidate_pools() -> None:
    events = _world_events(exploration_share=0.3, exploration_pool=10, exploration_tracks=6)
    sessions = events.groupby(C.SESSION_ID)[C.CONTEXT_TYPE].first()
    share = float((sessions == C.EXPLORATION_CONTEXT).mean())
    assert 0.2 < share < 0.4  # the configured share of sessions (30 users, a few hundred sessions)
    explore = events[events[C.CONTEXT_TYPE] == C.EXPLORATION_CONTEXT]
    # The log says how many tracks were served (6 of each pool of 10), so a shorter session was a quit.
    assert explore[C.SHUFFLE].all() and (explore[C.CONTEXT_ID] == "exploration:6").all()
    for _, s in explore.groupby(C.SESSION_ID):
        assert len(s) <= 6 and s[C.TRACK_ID].is_unique  # at most exploration_tracks, drawn without replacement
    # Half of each pool comes from the user's taste, half uniformly: exploration plays are skipped more
    # than organic ones, but far less than the catalogue at random would be.
    organic = events[events[C.CONTEXT_TYPE] != C.EXPLORATION_CONTEXT]
    assert explore[C.SKIPPED].mean() > organic[C.SKIPPED].mean()
    # No exploration share, no exploration sessions; the organic sessions' draws are unchanged by the log's
    # existence only at share 0 (the share is taken out of the organic contexts' chances).
    assert C.EXPLORATION_CONTEXT not in set(_world_events(exploration_share=0.0)[C.CONTEXT_TYPE])
