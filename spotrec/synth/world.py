"""Generate the synthetic listening world: catalogue, listening events, user playlists and ground truth.

The catalogue (artists, albums, tracks) is small and built on the driver with numpy, then broadcast. All
per-user output (events, playlists, the users' hidden tastes) is produced on executors with
``mapInPandas`` over ``spark.range(users)``: every user's draws come from their own generators seeded
with ``(seed, stream, user)``, so the content never depends on how users are split into partitions, and
driver memory does not grow with the number of users or events.

Raw outputs (Parquet folders under ``raw_dir``, read later by ingest): ``events/``, ``tracks/``,
``playlists/``. Ground truth (under ``{artifacts_dir}/ground_truth/``): ``users/`` and ``tracks/``
Parquet, ``response_model.json`` and ``injected_faults.json``; load it with
:func:`spotrec.synth.truth.load_ground_truth`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
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
from spotrec.synth.response import ResponseModel

log = logging.getLogger(__name__)

# Independent random streams: np.random.default_rng([seed, stream, user]).
STREAM_CATALOGUE = 0
STREAM_PROFILE = 1
STREAM_EVENTS = 2
STREAM_PLAYLISTS = 3
STREAM_FAULTS = 4

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

CONTEXT_TYPES: tuple[str, ...] = ("playlist", "album", "radio", "search")
CONTEXT_PROBS = np.array([0.35, 0.20, 0.25, 0.20])
SHUFFLE_PROBS = np.array([0.5, 0.1, 0.0, 0.0])
"""Chance that a session in each context plays its tracks shuffled."""
SEARCH_CONTINUE = 0.5
"""After a searched track, the listener plays more of that artist with this chance per track (geometric)."""
FAVOURITE_SEARCH = 0.5
"""Chance that a search session starts with one of the user's favourites."""
MAX_SESSION_TRACKS = 200

# Hour-of-day profile of session starts (UTC): quiet nights, a commute bump, an evening peak.
_HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 2, 4, 7, 9, 7, 6, 6, 7, 6, 6, 7, 8, 10, 11, 12, 12, 10, 7, 4], dtype=float)
HOUR_PROBS = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()

GROUP_NAMES: tuple[str, ...] = (
    "indie rock",
    "hip hop",
    "jazz",
    "classical",
    "electronic",
    "folk",
    "metal",
    "latin",
    "soul",
    "k-pop",
    "reggae",
    "country",
)
PLAYLIST_SUFFIXES: tuple[str, ...] = ("mix", "favourites", "for the road", "late night", "workout", "chill")
_ADJECTIVES: tuple[str, ...] = (
    "Blue", "Silent", "Golden", "Electric", "Broken", "Wild", "Velvet", "Midnight", "Paper", "Crystal",
    "Neon", "Hollow", "Bright", "Lonely", "Burning", "Frozen", "Secret", "Endless", "Little", "Northern",
)  # fmt: skip
_NOUNS: tuple[str, ...] = (
    "Owl", "River", "Heart", "Sky", "Machine", "Garden", "Echo", "Fire", "Road", "Dream",
    "Ocean", "Mirror", "Signal", "Shadow", "Summer", "Wolf", "City", "Light", "Storm", "Letter",
)  # fmt: skip

EVENT_DDL = (
    "user_id string, track_id string, ts timestamp, ms_played bigint, track_duration_ms bigint, "
    "context_type string, context_id string, reason_start string, reason_end string, skipped boolean, "
    "shuffle boolean, saved boolean, session_id string, session_position int"
)
"""The raw event files' schema (canonical names, typed; no event_id: ingest derives one)."""
_FAULT_COL = "_fault"
TRACK_DDL = (
    "track_id string, track_name string, artist_id string, artist_name string, album_id string, "
    "album_name string, duration_ms bigint, acousticness double, danceability double, energy double, "
    "valence double, tempo double"
)
PLAYLIST_DDL = "playlist_id string, playlist_name string, user_id string, position int, track_id string"
GT_USER_DDL = "user_id string, taste_group int, taste_vector array<float>, activity double"
GT_TRACK_DDL = (
    "track_id string, artist_id string, album_id string, taste_group int, taste_vector array<float>, "
    "popularity double, zipf_weight double, duration_ms bigint"
)


def group_name(group: int) -> str:
    """A readable genre-like name for a taste group (used for playlist names)."""
    return GROUP_NAMES[group] if group < len(GROUP_NAMES) else f"genre {group}"


def _id_width(n: int) -> int:
    return max(6, len(str(max(n - 1, 0))))


def user_id(user: int, users: int) -> str:
    """The string id of user number ``user`` (``u000123``)."""
    return f"u{user:0{_id_width(users)}d}"


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


# -----------------------------------------------------------------------------------------------
# Catalogue (driver)
# -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Catalogue:
    """The track catalogue as arrays indexed by track number; albums and artists are contiguous blocks.

    Track ``t`` is on album ``t // tracks_per_album`` by artist ``album // albums_per_artist``.
    """

    track_ids: np.ndarray
    """Object array of ``t000123``-style ids."""
    artist_ids: np.ndarray
    album_ids: np.ndarray
    centroids: np.ndarray
    """(taste_groups, taste_dim) unit vectors: the direction of each taste group."""
    track_vectors: np.ndarray
    """(tracks, taste_dim) unit taste vectors (float64)."""
    track_group: np.ndarray
    """Taste group of each track (its artist's group)."""
    duration_ms: np.ndarray
    popularity: np.ndarray
    """Popularity percentile in [0, 1] (1 = most popular), the response model's input."""
    log_zipf: np.ndarray
    """log of the Zipf base weight ``(rank + 1) ** -s``."""
    group_share: np.ndarray
    """Share of the total Zipf weight held by each taste group: how many listeners the group attracts."""
    tracks_per_album: int
    albums_per_artist: int

    @property
    def n_tracks(self) -> int:
        return len(self.track_ids)

    def artist_of(self, track: int) -> int:
        return track // (self.tracks_per_album * self.albums_per_artist)

    def artist_tracks(self, artist: int) -> np.ndarray:
        size = self.tracks_per_album * self.albums_per_artist
        return np.arange(artist * size, (artist + 1) * size)

    def album_tracks(self, album: int) -> np.ndarray:
        return np.arange(album * self.tracks_per_album, (album + 1) * self.tracks_per_album)


def build_catalogue(cfg: GenerateConfig) -> tuple[Catalogue, pd.DataFrame]:
    """Artists, albums and tracks with hidden taste vectors, Zipf popularity and audio-like features.

    Each artist belongs to one taste group; its vector is the group direction plus artist noise and each
    track's vector is its artist's plus track noise. Audio features are drawn around a per-group profile,
    so they correlate with taste. Durations are log-normal around 3.5 minutes.

    Returns:
        The catalogue arrays (broadcast to executors) and the raw ``tracks`` frame (``TRACK_DDL`` columns).
    """
    if cfg.artists < 1 or cfg.albums_per_artist < 1 or cfg.tracks_per_album < 1 or cfg.taste_groups < 1:
        raise ValueError("generate: artists, albums_per_artist, tracks_per_album and taste_groups must be >= 1")
    rng = np.random.default_rng([cfg.seed, STREAM_CATALOGUE])
    g, d = cfg.taste_groups, cfg.taste_dim
    if d >= g:
        q, _ = np.linalg.qr(rng.normal(size=(d, g)))
        centroids = q.T.copy()
    else:
        centroids = _normalize(rng.normal(size=(g, d)))
    n_albums = cfg.artists * cfg.albums_per_artist
    n_tracks = n_albums * cfg.tracks_per_album
    per_artist = cfg.albums_per_artist * cfg.tracks_per_album

    artist_group = rng.integers(0, g, size=cfg.artists)
    artist_vec = _normalize(centroids[artist_group] + 0.5 * rng.normal(size=(cfg.artists, d)) / math.sqrt(d))
    track_artist = np.repeat(np.arange(cfg.artists), per_artist)
    track_album = np.repeat(np.arange(n_albums), cfg.tracks_per_album)
    track_group = artist_group[track_artist]
    track_vec = _normalize(artist_vec[track_artist] + 0.35 * rng.normal(size=(n_tracks, d)) / math.sqrt(d))

    # Popularity ranks follow the Zipf law globally but cluster by artist (famous artists' tracks are hits).
    fame = rng.normal(size=cfg.artists)[track_artist] + 0.5 * rng.normal(size=n_tracks)
    rank = np.empty(n_tracks, dtype=np.int64)
    rank[np.argsort(-fame, kind="stable")] = np.arange(n_tracks)
    log_zipf = -cfg.zipf_exponent * np.log1p(rank.astype(float))
    popularity = 1.0 - rank / max(n_tracks - 1, 1)
    duration = np.clip(rng.lognormal(math.log(210_000.0), 0.3, size=n_tracks), 60_000, 900_000).astype(np.int64)

    profile = rng.uniform(0.15, 0.85, size=(g, 4))
    features = np.clip(profile[track_group] + rng.normal(0.0, 0.12, size=(n_tracks, 4)), 0.0, 1.0).round(3)
    tempo_mean = rng.uniform(80.0, 150.0, size=g)
    tempo = np.clip(tempo_mean[track_group] + rng.normal(0.0, 12.0, size=n_tracks), 50.0, 210.0).round(1)

    def names(n: int, pattern: str) -> list[str]:
        a, b, c = (rng.integers(0, len(words), size=n) for words in (_ADJECTIVES, _NOUNS, _NOUNS))
        return [pattern.format(adj=_ADJECTIVES[i], noun=_NOUNS[j], noun2=_NOUNS[k]) for i, j, k in zip(a, b, c)]

    artist_names = names(cfg.artists, "The {adj} {noun}")
    album_names = names(n_albums, "{noun} of the {noun2}")
    track_names = names(n_tracks, "{adj} {noun}")

    tw, aw, lw = _id_width(n_tracks), _id_width(cfg.artists), _id_width(n_albums)
    track_ids = np.array([f"t{t:0{tw}d}" for t in range(n_tracks)], dtype=object)
    artist_ids = np.array([f"ar{a:0{aw}d}" for a in range(cfg.artists)], dtype=object)
    album_ids = np.array([f"al{a:0{lw}d}" for a in range(n_albums)], dtype=object)

    catalogue = Catalogue(
        track_ids=track_ids,
        artist_ids=artist_ids,
        album_ids=album_ids,
        centroids=centroids,
        track_vectors=track_vec,
        track_group=track_group.astype(np.int32),
        duration_ms=duration,
        popularity=popularity,
        log_zipf=log_zipf,
        group_share=np.bincount(track_group, weights=np.exp(log_zipf), minlength=g) / np.exp(log_zipf).sum(),
        tracks_per_album=cfg.tracks_per_album,
        albums_per_artist=cfg.albums_per_artist,
    )
    tracks = pd.DataFrame(
        {
            C.TRACK_ID: track_ids,
            C.TRACK_NAME: track_names,
            C.ARTIST_ID: artist_ids[track_artist],
            C.ARTIST_NAME: np.array(artist_names, dtype=object)[track_artist],
            C.ALBUM_ID: album_ids[track_album],
            C.ALBUM_NAME: np.array(album_names, dtype=object)[track_album],
            C.DURATION_MS: duration,
            "acousticness": features[:, 0],
            "danceability": features[:, 1],
            "energy": features[:, 2],
            "valence": features[:, 3],
            "tempo": tempo,
        }
    )
    return catalogue, tracks


def ground_truth_tracks(catalogue: Catalogue, tracks: pd.DataFrame) -> pd.DataFrame:
    """The hidden per-track truth (``GT_TRACK_DDL`` columns)."""
    return pd.DataFrame(
        {
            C.TRACK_ID: catalogue.track_ids,
            C.ARTIST_ID: tracks[C.ARTIST_ID].to_numpy(),
            C.ALBUM_ID: tracks[C.ALBUM_ID].to_numpy(),
            "taste_group": catalogue.track_group,
            "taste_vector": list(catalogue.track_vectors.astype(np.float32)),
            "popularity": catalogue.popularity,
            "zipf_weight": np.exp(catalogue.log_zipf),
            C.DURATION_MS: catalogue.duration_ms,
        }
    )


# -----------------------------------------------------------------------------------------------
# Per-user generation (executors)
# -----------------------------------------------------------------------------------------------
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
    vector = _normalize(cat.centroids[group] + 0.35 * cat.centroids[secondary] + 0.5 * noise)
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
        theme_vec = _normalize(0.5 * prof.vector + cat.centroids[theme])
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
    partial / complete, the play length, saves and whether the listener quits. The sessions of a user are
    played in lockstep (one vectorised draw per position).

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
    probs = CONTEXT_PROBS.copy()
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
    for j in range(width):
        idx = np.flatnonzero(alive & planned[:, j])
        if len(idx) == 0:
            break
        t = grid[idx, j]
        out = model.sample(rng, prof.affinity[t], cat.popularity[t], j, run[idx], cat.duration_ms[t])
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
    first_start = np.array(["clickrow", "clickrow", "playbtn", "clickrow"], dtype=object)[contexts[rows_s]]
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
    _FAULT_COL: object,
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
    columns[_FAULT_COL] = fault
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
        out[_FAULT_COL][copy_pos] = "duplicate"  # ... and the copy right after it is the fault
        return out
    return columns


# -----------------------------------------------------------------------------------------------
# mapInPandas drivers (executors)
# -----------------------------------------------------------------------------------------------
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


# -----------------------------------------------------------------------------------------------
# Entry point
# -----------------------------------------------------------------------------------------------
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
    model = model or ResponseModel()
    raw = raw_dir.rstrip("/")
    gt = f"{artifacts_dir.rstrip('/')}/ground_truth"
    catalogue, tracks = build_catalogue(cfg)
    cat_bc = spark.sparkContext.broadcast(catalogue)
    try:
        spark.createDataFrame(tracks, TRACK_DDL).coalesce(1).write.mode("overwrite").parquet(f"{raw}/tracks")
        spark.createDataFrame(ground_truth_tracks(catalogue, tracks), GT_TRACK_DDL).coalesce(1).write.mode(
            "overwrite"
        ).parquet(f"{gt}/tracks")
        users = _users_frame(spark, cfg)
        users.mapInPandas(_users_fn(cat_bc, cfg), GT_USER_DDL).write.mode("overwrite").parquet(f"{gt}/users")
        users.mapInPandas(_playlists_fn(cat_bc, cfg), PLAYLIST_DDL).write.mode("overwrite").parquet(f"{raw}/playlists")

        events = users.mapInPandas(_events_fn(cat_bc, cfg, model), f"{EVENT_DDL}, {_FAULT_COL} string")
        events = events.persist(StorageLevel.DISK_ONLY)
        per_kind = {r[0]: int(r[1]) for r in events.groupBy(_FAULT_COL).count().collect()}
        events.drop(_FAULT_COL).write.mode("overwrite").parquet(f"{raw}/events")
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
