"""The synthetic catalogue, built on the driver: artists, albums and tracks with hidden taste vectors.

The catalogue is small (numpy arrays indexed by track number) and broadcast to the executors that generate
the listeners (:mod:`spotrec.synth.listeners`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spotrec import columns as C
from spotrec.config import GenerateConfig

# Independent random streams: np.random.default_rng([seed, stream, user]).
STREAM_CATALOGUE = 0
STREAM_PROFILE = 1
STREAM_EVENTS = 2
STREAM_PLAYLISTS = 3
STREAM_FAULTS = 4

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
_ADJECTIVES: tuple[str, ...] = (
    "Blue", "Silent", "Golden", "Electric", "Broken", "Wild", "Velvet", "Midnight", "Paper", "Crystal",
    "Neon", "Hollow", "Bright", "Lonely", "Burning", "Frozen", "Secret", "Endless", "Little", "Northern",
)  # fmt: skip
_NOUNS: tuple[str, ...] = (
    "Owl", "River", "Heart", "Sky", "Machine", "Garden", "Echo", "Fire", "Road", "Dream",
    "Ocean", "Mirror", "Signal", "Shadow", "Summer", "Wolf", "City", "Light", "Storm", "Letter",
)  # fmt: skip

TRACK_DDL = (
    "track_id string, track_name string, artist_id string, artist_name string, album_id string, "
    "album_name string, duration_ms bigint, acousticness double, danceability double, energy double, "
    "valence double, tempo double"
)
GT_TRACK_DDL = (
    "track_id string, artist_id string, album_id string, taste_group int, taste_vector array<float>, "
    "popularity double, zipf_weight double, duration_ms bigint"
)


def group_name(group: int) -> str:
    """A readable genre-like name for a taste group (used for playlist names)."""
    return GROUP_NAMES[group] if group < len(GROUP_NAMES) else f"genre {group}"


def id_width(n: int) -> int:
    """Digits of the zero-padded ids numbered ``0 .. n - 1`` (at least 6)."""
    return max(6, len(str(max(n - 1, 0))))


def normalize(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit length along its last axis (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


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
        centroids = normalize(rng.normal(size=(g, d)))
    n_albums = cfg.artists * cfg.albums_per_artist
    n_tracks = n_albums * cfg.tracks_per_album
    per_artist = cfg.albums_per_artist * cfg.tracks_per_album

    artist_group = rng.integers(0, g, size=cfg.artists)
    artist_vec = normalize(centroids[artist_group] + 0.5 * rng.normal(size=(cfg.artists, d)) / math.sqrt(d))
    track_artist = np.repeat(np.arange(cfg.artists), per_artist)
    track_album = np.repeat(np.arange(n_albums), cfg.tracks_per_album)
    track_group = artist_group[track_artist]
    track_vec = normalize(artist_vec[track_artist] + 0.35 * rng.normal(size=(n_tracks, d)) / math.sqrt(d))

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

    tw, aw, lw = id_width(n_tracks), id_width(cfg.artists), id_width(n_albums)
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
