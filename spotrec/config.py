"""One typed configuration for every step.

Loaded from a YAML file (see ``conf/demo.yaml``) and overridden from the command line with
``--set section.key=value`` (the value is parsed as YAML, so ``--set als.rank=64`` is an int).
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import datetime
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spotrec.discovery.config import DiscoveryConfig
from spotrec.errors import ConfigError
from spotrec.playlists.config import PlaylistRLConfig


@dataclass
class StorageConfig:
    """Where tables live: Delta folders under ``root``, or ``catalog.schema`` tables when ``catalog`` is set."""

    root: str = "warehouse"
    """Local folder or any Hadoop URI (s3a://, abfss://, dbfs:/); one sub-folder per table."""
    catalog: str | None = None
    """Unity Catalog / metastore catalog; when set, tables are ``catalog.schema.<layer>_<name>``."""
    schema: str | None = None
    """Schema (database) inside ``catalog``."""
    raw_dir: str = "warehouse/raw"
    """Where ``spotrec generate`` writes raw event files and ingest reads them by default."""
    checkpoint_dir: str = "warehouse/_checkpoints"
    """Spark checkpoint directory (ALS lineages overflow the stack without one)."""
    artifacts_dir: str = "warehouse/_artifacts"
    """Model checkpoints, Annoy indexes, ground truth and reports."""


@dataclass
class SparkConfig:
    """Session settings used only when spotrec builds the session itself (local runs)."""

    master: str = "local[*]"
    app_name: str = "spotrec"
    shuffle_partitions: int = 8
    driver_memory: str = "6g"
    conf: dict[str, str] = field(default_factory=dict)
    """Extra ``spark.*`` settings, applied last."""


@dataclass
class GenerateConfig:
    """The synthetic listening world (see ``spotrec.synth``); same values -> the same files."""

    users: int = 2000
    """Listeners; events are generated per user on executors, so this scales linearly."""
    artists: int = 300
    """Artists in the catalogue (built on the driver and broadcast)."""
    albums_per_artist: int = 3
    """Albums per artist."""
    tracks_per_album: int = 8
    """Tracks per album; the catalogue has ``artists * albums_per_artist * tracks_per_album`` tracks."""
    taste_groups: int = 8
    """Latent taste groups; each user and each artist belongs mostly to one."""
    taste_dim: int = 16
    """Dimension of the hidden taste vectors (groups are orthogonal directions when ``>= taste_groups``)."""
    taste_strength: float = 5.0
    """How strongly a user's track choice follows taste: weight ``zipf * exp(taste_strength * affinity)``."""
    weeks: int = 6
    """Weeks of listening to generate."""
    start_date: str = "2026-09-07"
    """Monday of the first generated week (UTC)."""
    sessions_per_user_week: float = 3.5
    """Mean listening sessions per user and week (scaled by each user's hidden activity level)."""
    session_length_mean: float = 12.0
    """Mean planned tracks per session (playlist, album and radio contexts); quits end sessions earlier."""
    repeat_probability: float = 0.15
    """Chance that a radio or search slot replays one of the user's favourite tracks instead."""
    zipf_exponent: float = 1.1
    """Popularity: the track of popularity rank r (0-based) has base weight ``(r + 1) ** -zipf_exponent``."""
    playlists_per_user: float = 1.0
    """Mean user-made playlists per user (Poisson)."""
    bad_row_fraction: float = 0.002
    """Fraction of raw rows deliberately corrupted (missing ids, negative ms, future ts, dupes)."""
    partitions: int = 8
    """Spark partitions the users are split into (the output does not depend on it)."""
    seed: int = 42
    """Seed of every random draw (catalogue and per-user streams)."""


@dataclass
class SourceSpec:
    """One input for ``spotrec ingest``."""

    kind: str = "events"
    """events | tracks | playlists | play_counts"""
    format: str = "generic_parquet"
    """A reader name from ``spotrec.sources`` (e.g. spotify_extended, lastfm_1k, mssd, hetrec, yes)."""
    path: str = ""
    """File, folder or glob (any Hadoop URI)."""
    source: str | None = None
    """Label stored in the ``source`` column (default: the format)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Reader options, e.g. ``user_id`` for single-user exports or a column ``mapping`` for generic files."""


@dataclass
class IngestConfig:
    """Validation rules for raw -> silver, and what to ingest."""

    sources: list[SourceSpec] = field(default_factory=list)
    """Inputs; empty means the synthetic world written by ``spotrec generate`` under ``storage.raw_dir``."""

    max_ms_played: int = 4 * 60 * 60 * 1000
    """Longer plays than this are quarantined as absurd (4 hours)."""
    future_tolerance_minutes: int = 10
    """Timestamps later than now + this are quarantined as future."""
    source_timezone: str = "UTC"
    """Timezone of naive timestamps in the raw files (Spotify exports are UTC)."""


@dataclass
class MatrixConfig:
    """How listen events become implicit-feedback confidence (see ``spotrec.features.interactions``)."""

    stream_weight: float = 1.0
    """A full play adds this much; a partial play adds ``stream_weight * fraction played``."""
    min_play_fraction: float = 0.0
    """Plays shorter than this fraction of the track add nothing (besides counting as a skip if skipped)."""
    save_boost: float = 3.0
    """Added once per explicit save / like event."""
    skip_penalty: float = 0.5
    """Subtracted per skipped play."""
    skip_threshold_ms: int = 30_000
    """When a format has no skip flag, a play shorter than this counts as a skip (Spotify's 30 s stream rule)."""
    default_duration_ms: int = 210_000
    """Track length assumed when neither the event nor the catalogue knows it."""
    half_life_days: float = 90.0
    """A play ``half_life_days`` older than ``as_of`` counts half; 0 disables decay."""
    as_of: str | None = None
    """Reference time for decay (ISO date); default: the latest event in the data."""
    count_transform: str = "log1p"
    """For pre-aggregated counts (HetRec): ``log1p`` or ``raw``."""


@dataclass
class ALSConfig:
    """Spark MLlib implicit ALS (Hu, Koren & Volinsky 2008)."""

    rank: int = 32
    reg_param: float = 0.2
    """MLlib scales it by each user's / track's rating count (ALS-WR); 0.2 measured best (docs/benchmarks.md)."""
    alpha: float = 10.0
    max_iter: int = 10
    num_blocks: int = 4
    """User and item blocks of MLlib's ALS: about the executors' total cores (more only adds shuffle tasks;
    docs/benchmarks.md). It also fixes the input partitioning, so results are reproducible for a given
    value whatever the cluster."""
    checkpoint_interval: int = 5
    intermediate_storage_level: str = "MEMORY_AND_DISK"
    """Storage level of MLlib's per-iteration in/out blocks (MEMORY_ONLY avoids disk when memory allows)."""
    final_storage_level: str = "MEMORY_AND_DISK"
    """Storage level of the fitted factor RDDs."""
    seed: int = 7
    tune_ranks: list[int] = field(default_factory=lambda: [16, 32, 64])
    tune_reg_params: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4])
    tune_alphas: list[float] = field(default_factory=lambda: [1.0, 10.0, 40.0])


@dataclass
class DiscoverConfig:
    """Discover Weekly, similar tracks and taste profiles."""

    playlist_size: int = 30
    max_per_artist: int = 2
    similar_tracks: int = 20
    taste_clusters: int = 8
    user_block_size: int = 1024
    eval_k: int = 10


@dataclass
class LoggingConfig:
    """How the driver's Python log records are written (see ``spotrec.logs``); ``--log-level`` and
    ``--log-format`` on the command line override these."""

    level: str = "INFO"
    """Logging level name: DEBUG, INFO, WARNING, ERROR."""
    format: str = "text"
    """``text`` (human lines, the laptop default) or ``json`` (one object per line with ts, level, logger,
    message, run_id, step: for cluster log collectors)."""


@dataclass
class Config:
    """Everything a spotrec run needs."""

    storage: StorageConfig = field(default_factory=StorageConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    matrix: MatrixConfig = field(default_factory=MatrixConfig)
    als: ALSConfig = field(default_factory=ALSConfig)
    discover: DiscoverConfig = field(default_factory=DiscoverConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    playlists: PlaylistRLConfig = field(default_factory=PlaylistRLConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type, or raise a ConfigError naming the key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if tp is str and isinstance(value, bool):
            return "true" if value else "false"
        if tp is str and isinstance(value, (int, float, datetime.date)):
            return value.isoformat() if isinstance(value, datetime.date) else str(value)
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    return value


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {part} is not a section")
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read ``path`` (YAML; optional) and apply ``key.sub=value`` overrides.

    Raises:
        ConfigError: the file is missing or invalid, or an override names an unknown key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping")
        data = loaded
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        _set_path(data, key.strip(), yaml.safe_load(raw))
    return typing.cast(Config, _from_dict(Config, data, ""))
