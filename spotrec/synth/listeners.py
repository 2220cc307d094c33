"""Per-user generation, run on executors: hidden profiles, playlists, listening sessions and injected faults.

Every user's draws come from their own generators seeded with ``(seed, stream, user)``, so a user's content
never depends on how users are split into partitions.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spotrec import columns as C
from spotrec.config import GenerateConfig
from spotrec.synth.catalogue import (
    STREAM_EVENTS,
    STREAM_FAULTS,
    STREAM_PLAYLISTS,
    STREAM_PROFILE,
    Catalogue,
    group_name,
    id_width,
    normalize,
)
from spotrec.synth.response import ResponseModel

FAULT_KINDS: tuple[str, ...] = (
    "missing_user_id",
    "missing_track_id",
    "negative_ms_played",
    "future_ts",
    "duplicate",
)
"""Kinds of deliberately bad raw rows (each chosen with equal chance for a corrupted row)."""

FUTURE_START = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
"""A ``future_ts`` row is moved by a fixed offset that puts the start date on this day."""

CONTEXT_TYPES: tuple[str, ...] = ("playlist", "album", "radio", "search", C.EXPLORATION_CONTEXT)
CONTEXT_PROBS = np.array([0.35, 0.20, 0.25, 0.20, 0.0])
"""Organic context shares; the exploration share (``generate.exploration_share``) is taken out of them."""
SHUFFLE_PROBS = np.array([0.5, 0.1, 0.0, 0.0, 1.0])
"""Chance that a session in each context plays its tracks shuffled."""
EXPLORATION = CONTEXT_TYPES.index(C.EXPLORATION_CONTEXT)
SEARCH_CONTINUE = 0.5
"""After a searched track, the listener plays more of that artist with this chance per track (geometric)."""
FAVOURITE_SEARCH = 0.5
"""Chance that a search session starts with one of the user's favourites."""
MAX_SESSION_TRACKS = 200

# Hour-of-day profile of session starts (UTC): quiet nights, a commute bump, an evening peak.
_HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 2, 4, 7, 9, 7, 6, 6, 7, 6, 6, 7, 8, 10, 11, 12, 12, 10, 7, 4], dtype=float)
HOUR_PROBS = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()

PLAYLIST_SUFFIXES: tuple[str, ...] = ("mix", "favourites", "for the road", "late night", "workout", "chill")

EVENT_DDL = (
    "user_id string, track_id string, ts timestamp, ms_played bigint, track_duration_ms bigint, "
    "context_type string, context_id string, reason_start string, reason_end string, skipped boolean, "
    "shuffle boolean, saved boolean, session_id string, session_position int"
)
"""The raw event files' schema (canonical names, typed; no event_id: ingest derives one)."""
FAULT_COL = "_fault"
"""Extra column of the generated events: the fault kind of a bad row, else None (dropped before writing)."""
PLAYLIST_DDL = "playlist_id string, playlist_name string, user_id string, position int, track_id string"
GT_USER_DDL = "user_id string, taste_group int, taste_vector array<float>, activity double"


def user_id(user: int, users: int) -> str:
    """The string id of user number ``user`` (``u000123``)."""
    return f"u{user:0{id_width(users)}d}"


@dataclass(frozen=True)
class UserProfile:
    """A user's hidden state: taste group and vector, activity level and listening distribution."""

    user: int
    group: int
    vector: np.ndarray
    activity: float
    affinity: np.ndarray
    """Cosine affinity to every track."""
    cdf: np.ndarray
    """Cumulative listening distribution over tracks: ``∝ zipf · exp(taste_strength · affinity)``."""
    favourites: np.ndarray
    """Tracks the user keeps coming back to (most loved first)."""


def _top_k_sample(rng: np.random.Generator, logits: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct indices drawn one after another with weights ``exp(logits)`` (no replacement), in order.

    Draws with replacement from the CDF and keeps first occurrences, which is exactly sequential sampling
    without replacement, and much cheaper than a Gumbel key per catalogue track when ``k`` is small.
    """
    weights = np.exp(logits - np.max(logits))
    k = min(k, int(np.count_nonzero(weights)))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    draws = np.empty(0, dtype=np.int64)
    for _ in range(20):
        draws = np.concatenate([draws, _draw(rng, cdf, 2 * k + 8)])
        uniq, first = np.unique(draws, return_index=True)
        if len(uniq) >= k:
            return draws[np.sort(first)[:k]]
    # A very steep distribution: finish the remaining slots with Gumbel keys over the unseen tracks.
    got = draws[np.sort(first)]
    keys = np.where(np.isin(np.arange(len(logits)), got), -np.inf, logits + rng.gumbel(size=len(logits)))
    rest = np.argsort(-keys, kind="stable")[: k - len(got)]
    return np.concatenate([got, rest])


def user_profile(user: int, cat: Catalogue, cfg: GenerateConfig) -> UserProfile:
    """The hidden profile of user number ``user`` (deterministic in ``cfg.seed`` and ``user``).

    The group is drawn in proportion to the groups' popularity (genres with the hits have more fans); the
    taste vector is the group direction plus a weaker secondary group and noise, so each user is *mostly*
    in one group. Activity is log-normal (a few heavy listeners).
    """
    rng = np.random.default_rng([cfg.seed, STREAM_PROFILE, user])
    g, d = cfg.taste_groups, cat.centroids.shape[1]
    group = int(rng.choice(g, p=cat.group_share))
    secondary = int(rng.integers(0, g))
    noise = rng.normal(size=d) / math.sqrt(d)
    vector = normalize(cat.centroids[group] + 0.35 * cat.centroids[secondary] + 0.5 * noise)
    activity = float(rng.lognormal(0.0, 0.5))
    affinity = cat.track_vectors @ vector
    logits = cat.log_zipf + cfg.taste_strength * affinity
    p = np.exp(logits - logits.max())
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    favourites = _top_k_sample(rng, logits, 3 + int(rng.poisson(5)))
    return UserProfile(user, group, vector, activity, affinity, cdf, favourites)


def _draw(rng: np.random.Generator, cdf: np.ndarray, size: int | None = None) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


@dataclass(frozen=True)
class Playlist:
    playlist_id: str
    name: str
    tracks: np.ndarray


def user_playlists(prof: UserProfile, cat: Catalogue, cfg: GenerateConfig) -> list[Playlist]:
    """The user's own playlists, each themed on a taste group (mostly their own) and ordered as curated.

    Tracks are drawn without replacement with weight ``zipf · exp(taste_strength · cos(theme, track))``
    where the theme mixes the user's vector with the theme group's direction; the draw order is the
    playlist order (most characteristic tracks first).
    """
    rng = np.random.default_rng([cfg.seed, STREAM_PLAYLISTS, prof.user])
    uid = user_id(prof.user, cfg.users)
    out = []
    for k in range(int(rng.poisson(cfg.playlists_per_user))):
        theme = prof.group if rng.random() < 0.7 else int(rng.integers(0, cfg.taste_groups))
        theme_vec = normalize(0.5 * prof.vector + cat.centroids[theme])
        length = int(rng.integers(10, 41))
        logits = cat.log_zipf + cfg.taste_strength * (cat.track_vectors @ theme_vec)
        tracks = _top_k_sample(rng, logits, length)
        name = f"{group_name(theme)} {PLAYLIST_SUFFIXES[int(rng.integers(0, len(PLAYLIST_SUFFIXES)))]}"
        out.append(Playlist(f"pl{uid[1:]}-{k:02d}", name, tracks))
    return out


@dataclass
class _SessionPlan:
    context: int
    context_id: str
    shuffle: bool
    tracks: np.ndarray


def _plan_session(
    rng: np.random.Generator,
    context: int,
    length: int,
    prof: UserProfile,
    playlists: list[Playlist],
    cat: Catalogue,
    cfg: GenerateConfig,
) -> _SessionPlan:
    """Which tracks a session would play if the listener never quit early."""
    shuffle = bool(rng.random() < SHUFFLE_PROBS[context])
    kind = CONTEXT_TYPES[context]
    if kind == C.EXPLORATION_CONTEXT:  # the exploration log: a candidate pool in random order
        served = rng.permutation(_exploration_pool(rng, prof, cat, cfg.exploration_pool))[: cfg.exploration_tracks]
        return _SessionPlan(context, exploration_context_id(len(served)), True, served)
    if kind == "playlist":
        pl = playlists[int(rng.integers(0, len(playlists)))]
        seq = rng.permutation(pl.tracks) if shuffle else pl.tracks
        return _SessionPlan(context, pl.playlist_id, shuffle, seq[:length])
    if kind == "album":
        album = int(_draw(rng, prof.cdf)) // cat.tracks_per_album
        seq = cat.album_tracks(album)
        seq = rng.permutation(seq) if shuffle else seq
        return _SessionPlan(context, str(cat.album_ids[album]), shuffle, seq[:length])
    if kind == "radio":
        seed_track = int(_draw(rng, prof.cdf))
        logits = cat.log_zipf + cfg.taste_strength * (cat.track_vectors @ cat.track_vectors[seed_track])
        logits[seed_track] = -np.inf
        others = _top_k_sample(rng, logits, min(length - 1, cat.n_tracks - 1))
        seq = np.concatenate([[seed_track], others])
        context_id = f"radio:{cat.track_ids[seed_track]}"
    else:  # search: a track (often a favourite), then possibly more by the same artist
        use_fav = rng.random() < FAVOURITE_SEARCH and len(prof.favourites) > 0
        first = int(prof.favourites[rng.integers(0, len(prof.favourites))]) if use_fav else int(_draw(rng, prof.cdf))
        artist = cat.artist_of(first)
        others = cat.artist_tracks(artist)
        others = others[others != first]
        others = others[np.argsort(-cat.popularity[others], kind="stable")]
        seq = np.concatenate([[first], others[: int(rng.geometric(1.0 - SEARCH_CONTINUE)) - 1]])
        context_id = f"search:{cat.artist_ids[artist]}"
    # Radio and search slots sometimes replay a favourite (users return to what they love).
    replace = rng.random(len(seq)) < cfg.repeat_probability
    replace[0] = False
    if replace.any() and len(prof.favourites) > 0:
        seq = seq.copy()
        seq[replace] = prof.favourites[rng.integers(0, len(prof.favourites), size=int(replace.sum()))]
    return _SessionPlan(context, context_id, False, seq)


def exploration_context_id(served: int) -> str:
    """``context_id`` of an exploration session that served ``served`` tracks: the log says how many were
    served, so a session that stopped earlier ended because the listener left (what the termination head
    learns), and one that played them all says nothing about leaving."""
    return f"{C.EXPLORATION_CONTEXT}:{served}"


def _exploration_pool(rng: np.random.Generator, prof: UserProfile, cat: Catalogue, size: int) -> np.ndarray:
    """Distinct candidates as ``spotrec rl`` draws a pool: half from the user's taste (standing in for the
    recommender's picks), the rest uniformly from the catalogue."""
    size = min(size, cat.n_tracks)
    own = np.unique(_draw(rng, prof.cdf, size))[: size // 2]
    rest = np.setdiff1d(rng.permutation(cat.n_tracks)[: 2 * size], own)[: size - len(own)]
    if len(own) + len(rest) < size:  # a tiny catalogue: fill from the rest of it
        rest = np.setdiff1d(np.arange(cat.n_tracks), own)[: size - len(own)]
    return np.concatenate([own, rest])


def _start_epoch_ms(cfg: GenerateConfig) -> int:
    day = dt.date.fromisoformat(cfg.start_date)
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def user_events(
    prof: UserProfile,
    playlists: list[Playlist],
    cat: Catalogue,
    cfg: GenerateConfig,
    model: ResponseModel,
) -> dict[str, np.ndarray]:
    """All listening events of one user, in time order, plus the injected bad rows.

    Sessions are spread over the weeks (Poisson count scaled by activity, a day-of-week and hour-of-day
    profile), each planned in a context, then played slot by slot: the response model decides skip /
    partial / complete, the play length, saves and whether the listener quits (with its long-term effects
    on, from the session so far too: the previous track, earlier plays of the artist, the satisfaction).
    The sessions of a user are played in lockstep (one vectorised draw per position).

    Returns:
        ``EVENT_DDL`` columns (``ts`` in epoch ms) plus ``_fault`` (the fault kind of a bad row, else None).
    """
    rng = np.random.default_rng([cfg.seed, STREAM_EVENTS, prof.user])
    uid = user_id(prof.user, cfg.users)
    n_per_week = rng.poisson(cfg.sessions_per_user_week * prof.activity, size=cfg.weeks)
    n = int(n_per_week.sum())
    if n == 0:
        return _empty_events()
    week = np.repeat(np.arange(cfg.weeks), n_per_week)
    start_s = (
        week * 7 * 86_400
        + rng.integers(0, 7, size=n) * 86_400
        + rng.choice(24, size=n, p=HOUR_PROBS) * 3_600
        + rng.integers(0, 3_600, size=n)
    )
    start_s = np.sort(start_s)
    probs = CONTEXT_PROBS * (1.0 - cfg.exploration_share)
    probs[EXPLORATION] = cfg.exploration_share
    if not playlists:
        probs[CONTEXT_TYPES.index("radio")] += probs[0]
        probs[0] = 0.0
    contexts = rng.choice(len(CONTEXT_TYPES), size=n, p=probs / probs.sum())
    lengths = np.minimum(rng.geometric(1.0 / max(cfg.session_length_mean, 1.0), size=n), MAX_SESSION_TRACKS)
    plans = [_plan_session(rng, int(c), int(ln), prof, playlists, cat, cfg) for c, ln in zip(contexts, lengths)]

    lens = np.array([len(p.tracks) for p in plans])
    width = int(lens.max())
    grid = np.zeros((n, width), dtype=np.int64)
    for i, p in enumerate(plans):
        grid[i, : len(p.tracks)] = p.tracks
    planned = np.arange(width)[None, :] < lens[:, None]

    played = np.zeros((n, width), dtype=bool)
    ms = np.zeros((n, width), dtype=np.int64)
    skipped = np.zeros((n, width), dtype=bool)
    completed = np.zeros((n, width), dtype=bool)
    saved = np.zeros((n, width), dtype=bool)
    quit_ = np.zeros((n, width), dtype=bool)
    run = np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    satisfaction = np.zeros(n)
    artists = grid // (cat.tracks_per_album * cat.albums_per_artist)
    for j in range(width):
        idx = np.flatnonzero(alive & planned[:, j])
        if len(idx) == 0:
            break
        t = grid[idx, j]
        history: dict[str, np.ndarray] = {}
        if model.long_term:  # the session so far: previous track, same-artist plays, satisfaction
            history["satisfaction"] = satisfaction[idx]
            history["artist_repeats"] = (played[idx, :j] & (artists[idx, :j] == artists[idx, j][:, None])).sum(axis=1)
            if j > 0:
                history["distance"] = 1.0 - np.einsum(
                    "ij,ij->i", cat.track_vectors[grid[idx, j - 1]], cat.track_vectors[t]
                )
        out = model.sample(rng, prof.affinity[t], cat.popularity[t], j, run[idx], cat.duration_ms[t], **history)
        satisfaction[idx] = out["satisfaction"]
        played[idx, j] = True
        ms[idx, j] = out["ms_played"]
        skipped[idx, j] = out["skipped"]
        completed[idx, j] = out["completed"]
        saved[idx, j] = out["saved"]
        quit_[idx, j] = out["quit"]
        run[idx] = np.where(out["skipped"], run[idx] + 1, 0)
        alive[idx] = ~out["quit"]

    gaps = rng.integers(200, 3_000, size=(n, width))
    elapsed = np.cumsum(np.where(played, ms + gaps, 0), axis=1) - np.where(played, gaps, 0)
    ts_ms = _start_epoch_ms(cfg) + start_s[:, None] * 1000 + elapsed

    rows_s, rows_j = np.nonzero(played)  # row-major: session order, then position
    tracks = grid[rows_s, rows_j]
    is_saved = saved[rows_s, rows_j]
    if is_saved.any():  # a track is saved once: keep the first save in time
        saved_at = np.flatnonzero(is_saved)
        _, first = np.unique(tracks[saved_at], return_index=True)
        keep = np.zeros_like(is_saved)
        keep[saved_at[first]] = True
        is_saved = keep
    last_played = np.zeros((n, width), dtype=bool)
    last_played[np.arange(n), played.sum(axis=1) - 1] = True
    is_completed = completed[rows_s, rows_j]
    ends = np.where(
        is_completed,
        "trackdone",
        np.where(last_played[rows_s, rows_j], "endplay", "fwdbtn"),
    )
    prev_end = np.empty(len(rows_s), dtype=object)
    prev_end[1:] = ends[:-1]
    first_start = np.array(["clickrow", "clickrow", "playbtn", "clickrow", "playbtn"], dtype=object)[contexts[rows_s]]
    starts = np.where(rows_j == 0, first_start, prev_end)
    context_ids = np.array([p.context_id for p in plans], dtype=object)
    session_ids = np.array([f"{uid}-s{i:04d}" for i in range(n)], dtype=object)
    shuffles = np.array([p.shuffle for p in plans])

    columns: dict[str, np.ndarray] = {
        C.USER_ID: np.full(len(rows_s), uid, dtype=object),
        C.TRACK_ID: cat.track_ids[tracks],
        C.TS: ts_ms[rows_s, rows_j],
        C.MS_PLAYED: ms[rows_s, rows_j],
        C.TRACK_DURATION_MS: cat.duration_ms[tracks],
        C.CONTEXT_TYPE: np.array(CONTEXT_TYPES, dtype=object)[contexts[rows_s]],
        C.CONTEXT_ID: context_ids[rows_s],
        C.REASON_START: starts.astype(object),
        C.REASON_END: ends.astype(object),
        C.SKIPPED: skipped[rows_s, rows_j],
        C.SHUFFLE: shuffles[rows_s],
        C.SAVED: is_saved,
        C.SESSION_ID: session_ids[rows_s],
        C.SESSION_POSITION: rows_j.astype(np.int32),
    }
    return _inject_faults(columns, prof.user, cfg)


_EVENT_DTYPES: dict[str, type] = {
    C.USER_ID: object,
    C.TRACK_ID: object,
    C.TS: np.int64,
    C.MS_PLAYED: np.int64,
    C.TRACK_DURATION_MS: np.int64,
    C.CONTEXT_TYPE: object,
    C.CONTEXT_ID: object,
    C.REASON_START: object,
    C.REASON_END: object,
    C.SKIPPED: bool,
    C.SHUFFLE: bool,
    C.SAVED: bool,
    C.SESSION_ID: object,
    C.SESSION_POSITION: np.int32,
    FAULT_COL: object,
}


def _empty_events() -> dict[str, np.ndarray]:
    return {name: np.empty(0, dtype=dtype) for name, dtype in _EVENT_DTYPES.items()}


def events_frame(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """Concatenate per-user event columns into one frame (``ts`` as UTC timestamps)."""
    frame = pd.DataFrame(
        {
            name: np.concatenate([p[name] for p in parts]).astype(dtype, copy=False) if parts else np.empty(0, dtype)
            for name, dtype in _EVENT_DTYPES.items()
        }
    )
    frame[C.TS] = pd.to_datetime(frame[C.TS], unit="ms", utc=True)
    return frame


def _inject_faults(columns: dict[str, np.ndarray], user: int, cfg: GenerateConfig) -> dict[str, np.ndarray]:
    """Corrupt a ``bad_row_fraction`` of rows (kind uniform over ``FAULT_KINDS``); mark them in ``_fault``.

    A ``duplicate`` keeps the row and inserts an exact copy right after it (only the copy is marked); the
    other kinds replace a value: a null id, a negated ``ms_played``, or ``ts`` moved to the year 2099.
    """
    rng = np.random.default_rng([cfg.seed, STREAM_FAULTS, user])
    n = len(columns[C.USER_ID])
    bad = rng.random(n) < cfg.bad_row_fraction
    kind = rng.integers(0, len(FAULT_KINDS), size=n)
    fault = np.full(n, None, dtype=object)
    fault[bad] = np.array(FAULT_KINDS, dtype=object)[kind[bad]]
    columns[FAULT_COL] = fault
    if not bad.any():
        return columns
    columns[C.USER_ID][fault == "missing_user_id"] = None
    columns[C.TRACK_ID][fault == "missing_track_id"] = None
    neg = fault == "negative_ms_played"
    columns[C.MS_PLAYED][neg] = -np.maximum(columns[C.MS_PLAYED][neg], 1)
    offset_ms = int(FUTURE_START.timestamp() * 1000) - _start_epoch_ms(cfg)
    columns[C.TS][fault == "future_ts"] += offset_ms
    dup = fault == "duplicate"
    if dup.any():
        repeat = np.where(dup, 2, 1)
        fault[dup] = None  # the original stays a normal row ...
        out = {name: np.repeat(col, repeat) for name, col in columns.items()}
        copy_pos = np.cumsum(repeat)[dup] - 1
        out[FAULT_COL][copy_pos] = "duplicate"  # ... and the copy right after it is the fault
        return out
    return columns
