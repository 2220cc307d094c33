"""One typed configuration for every step.

Loaded from a YAML file (see ``conf/demo.yaml``) and overridden from the command line with
``--set section.key=value`` (the value is parsed as YAML, so ``--set weekly.rank=64`` is an int).
Every section is a pydantic model that forbids unknown keys, so a typo never silently falls back to a
default, and the whole configuration is validated when it is loaded: :func:`load_config` turns every
problem into one :class:`~spotrec.errors.ConfigError` that lists them as ``key.path: message``.

Sections: ``storage``, ``spark``, ``generate``, ``ingest``, ``matrix``, ``logging`` and one per
recommender system: ``weekly`` (ALS + Discover Weekly), ``rnn`` (word2vec + taste RNN + Annoy) and ``rl``
(user model + simulator + AH-DQN). The old section names in :data:`DEPRECATED_SECTIONS` still load, with
a warning, for one release.

One seed per run: set the top-level ``seed``; each section's ``seed`` is derived from it (see
:data:`SEED_OFFSETS`).
"""

from __future__ import annotations

import datetime
import logging
import types
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from spotrec.errors import ConfigError

_log = logging.getLogger("spotrec.config")

DEPRECATED_SECTIONS: dict[str, str] = {
    "als": "weekly",
    "discover": "weekly",
    "discovery": "rnn",
    "playlists": "rl",
}
"""Old section name -> new section name. Old names are rewritten into the new section before validation,
with one warning per old section; the same key under both names is an error."""

SEED_OFFSETS: dict[str, int] = {"generate": 0, "weekly": -35, "rnn": -31, "rl": -41}
"""Section -> offset of its seed from the top-level ``seed``: ``(seed + offset) % 2**31``.

The offsets look arbitrary because they are chosen so that the default top-level seed 42 gives exactly
the section seeds used before there was a single seed (generate 42, weekly 7, rnn 11, rl 1), which keeps
every figure published with those defaults (docs/benchmarks.md, the README) reproducible."""

_SEED_MODULUS = 2**31


def derive_seed(seed: int, section: str) -> int:
    """The seed of ``section`` for a run whose top-level seed is ``seed`` (see :data:`SEED_OFFSETS`)."""
    return (seed + SEED_OFFSETS[section]) % _SEED_MODULUS


# -- YAML-friendly scalar types ------------------------------------------------------------------------


def _yaml_str(value: Any) -> Any:
    """Accept what YAML reads from unquoted text meant as a string (numbers, dates); refuse booleans.

    YAML 1.1 reads unquoted ``yes``/``no``/``on``/``off``/``true``/``false`` as booleans, so ``format: yes``
    would otherwise silently become ``True``.
    """
    if isinstance(value, bool):
        raise PydanticCustomError(
            "yaml_bool",
            f"expected a string but YAML read the boolean {value} (unquoted yes/no/on/off/true/false are "
            'booleans); quote the value, e.g. "yes" instead of yes',
        )
    if isinstance(value, datetime.date):  # also datetime.datetime
        return value.isoformat()
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _spark_str(value: Any) -> Any:
    """Spark settings are strings; a YAML boolean becomes Spark's own spelling ``true`` / ``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _yaml_str(value)


YamlStr = Annotated[str, BeforeValidator(_yaml_str)]
"""A string that also takes unquoted YAML numbers and dates, but refuses YAML booleans."""
SparkValue = Annotated[str, BeforeValidator(_spark_str)]

StorageLevelName = Literal[
    "DISK_ONLY",
    "DISK_ONLY_2",
    "DISK_ONLY_3",
    "MEMORY_ONLY",
    "MEMORY_ONLY_2",
    "MEMORY_ONLY_SER",
    "MEMORY_ONLY_SER_2",
    "MEMORY_AND_DISK",
    "MEMORY_AND_DISK_2",
    "MEMORY_AND_DISK_SER",
    "MEMORY_AND_DISK_SER_2",
    "OFF_HEAP",
]
"""Names Spark's ``StorageLevel.fromString`` accepts (what MLlib ALS's storage-level params take), less
``NONE``, which ALS refuses for its intermediate blocks."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


# -- sections ------------------------------------------------------------------------------------------

with warnings.catch_warnings():
    # ``schema`` shadows the deprecated ``BaseModel.schema()``; the key predates pydantic here.
    warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)

    class StorageConfig(_Section):
        """Where tables live: Delta folders under ``root``, or ``catalog.schema`` tables when ``catalog`` is
        set."""

        root: YamlStr = "warehouse"
        """Local folder or any Hadoop URI (s3a://, abfss://, dbfs:/); one sub-folder per table."""
        catalog: YamlStr | None = None
        """Unity Catalog / metastore catalog; when set, tables are ``catalog.schema.<layer>_<name>``."""
        schema: YamlStr | None = None  # type: ignore[assignment]
        """Schema (database) inside ``catalog``."""
        raw_dir: YamlStr = "warehouse/raw"
        """Where ``spotrec generate`` writes raw event files and ingest reads them by default."""
        checkpoint_dir: YamlStr = "warehouse/_checkpoints"
        """Spark checkpoint directory (ALS lineages overflow the stack without one)."""
        artifacts_dir: YamlStr = "warehouse/_artifacts"
        """Model checkpoints, Annoy indexes, ground truth and reports."""


class SparkConfig(_Section):
    """Session settings used only when spotrec builds the session itself (local runs)."""

    master: YamlStr = "local[*]"
    """Spark master URL (``local[*]``: every local core)."""
    app_name: YamlStr = "spotrec"
    """Application name shown in the Spark UI."""
    shuffle_partitions: int = 8
    """``spark.sql.shuffle.partitions``."""
    driver_memory: YamlStr = "6g"
    """``spark.driver.memory`` (takes effect only when spotrec starts the JVM)."""
    conf: dict[str, SparkValue] = Field(default_factory=dict)
    """Extra ``spark.*`` settings, applied last (YAML booleans become ``true`` / ``false``)."""


class GenerateConfig(_Section):
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
    start_date: YamlStr = "2026-09-07"
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
    """Seed of every random draw (catalogue and per-user streams). Inside :class:`Config` it is derived
    from the top-level ``seed`` (equal to it); setting it here is a deprecated override."""
    coherence_weight: float = 0.0
    """Long-term listener (0 = off, today's world): skip log-odds per unit of taste distance to the
    previous track (see :mod:`spotrec.synth.response`)."""
    artist_fatigue_weight: float = 0.0
    """Long-term listener (0 = off): affinity worn off per earlier play of the same artist in a session."""
    patience_weight: float = 0.0
    """Long-term listener (0 = off): quit log-odds removed per unit of session satisfaction, so sessions of
    loved tracks last longer and sessions of unloved ones end sooner."""
    exploration_share: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of sessions that are the exploration log (context type ``exploration``): a pool of candidate
    tracks played in random order, so the user model sees responses that do not depend on the listener's
    own ordering (Tomasi et al. train on such shuffled sessions). 0 = none (the world before it)."""
    exploration_pool: int = Field(default=30, ge=2)
    """Candidates in an exploration session's pool: half drawn from the user's taste (the recommender's
    picks), half uniformly from the catalogue, as ``spotrec rl`` draws its pools."""
    exploration_tracks: int = Field(default=10, ge=1)
    """Tracks an exploration session plays at most (the RL playlist length); quits end it sooner."""


SourceKind = Literal["events", "tracks", "playlists", "play_counts"]


class SourceSpec(_Section):
    """One input for ``spotrec ingest``."""

    kind: SourceKind = "events"
    """What the input holds: ``events``, ``tracks``, ``playlists`` or ``play_counts``."""
    format: YamlStr = "generic_parquet"
    """A reader name from ``spotrec.sources`` (e.g. spotify_extended, lastfm_1k, mssd, hetrec, yes; quote
    ``"yes"`` in YAML)."""
    path: YamlStr = ""
    """File, folder or glob (any Hadoop URI)."""
    source: YamlStr | None = None
    """Label stored in the ``source`` column (default: the format)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Reader options, e.g. ``user_id`` for single-user exports or a column ``mapping`` for generic files."""


class IngestConfig(_Section):
    """Validation rules for raw -> silver, and what to ingest."""

    sources: list[SourceSpec] = Field(default_factory=list)
    """Inputs; empty means the synthetic world written by ``spotrec generate`` under ``storage.raw_dir``."""
    max_ms_played: int = 4 * 60 * 60 * 1000
    """Longer plays than this are quarantined as absurd (4 hours)."""
    future_tolerance_minutes: int = 10
    """Timestamps later than now + this are quarantined as future."""
    source_timezone: YamlStr = "UTC"
    """Timezone of naive timestamps in the raw files (Spotify exports are UTC)."""
    content: Literal["music", "all"] = "music"
    """``music``: podcast episodes and audiobook chapters stay in bronze, are counted as excluded in the
    ingest summary and ``ops.ingest_log``, and never reach silver; ``all`` keeps them as items."""


class MatrixConfig(_Section):
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
    as_of: YamlStr | None = None
    """Reference time for decay (ISO date); default: the latest event in the data."""
    count_transform: Literal["log1p", "raw"] = "log1p"
    """For pre-aggregated counts (HetRec): ``log1p`` or ``raw``."""


class WeeklyConfig(_Section):
    """The Discover Weekly system: Spark MLlib implicit ALS (Hu, Koren & Volinsky 2008), then Discover
    Weekly playlists, similar tracks and taste profiles from its factors."""

    # -- ALS ------------------------------------------------------------------------------------------
    solver: Literal["mllib", "cg"] = "cg"
    """Implicit-ALS solver: ``cg`` (:mod:`spotrec.weekly.cg`: ``cg_steps`` conjugate-gradient steps per solve,
    warm-started, a numba kernel over CSR chunks packed once) or ``mllib`` (Spark MLlib, one exact Cholesky
    solve per user and track: the reference path). Same objective, same parameters. ``cg`` is the default:
    on the 2.13M-interaction benchmark it fits 2.6x (rank 64) to 5.5x (rank 128) faster than MLlib at NDCG@10
    within 1% of it (-0.9%, +0.1%; +0.5% on HetRec); docs/benchmarks.md."""
    cg_steps: int = Field(default=3, ge=1)
    """``cg`` solver: conjugate-gradient steps per user / track and half-iteration (``implicit`` uses 3)."""
    cg_broadcast_mb: float = Field(default=256.0, ge=0)
    """``cg`` solver: the other side's factors are broadcast when they take at most this many MB (float32),
    else shipped to the blocks that need them by a join on block id."""
    rank: int = 32
    """Latent factors per user and track."""
    reg_param: float = 0.2
    """MLlib scales it by each user's / track's rating count (ALS-WR); 0.2 measured best (docs/benchmarks.md)."""
    alpha: float = 10.0
    """Confidence scaling of the implicit ratings: confidence = 1 + alpha * rating."""
    max_iter: int = 10
    """ALS iterations."""
    num_blocks: int = 4
    """User and item blocks of MLlib's ALS: about the executors' total cores (more only adds shuffle tasks;
    docs/benchmarks.md). It also fixes the input partitioning, so results are reproducible for a given
    value whatever the cluster."""
    checkpoint_interval: int = 5
    """Checkpoint the factor lineage every this many iterations (into ``storage.checkpoint_dir``)."""
    intermediate_storage_level: StorageLevelName = "MEMORY_AND_DISK"
    """Storage level of MLlib's per-iteration in/out blocks (MEMORY_ONLY avoids disk when memory allows)."""
    final_storage_level: StorageLevelName | Literal["NONE"] = "MEMORY_AND_DISK"
    """Storage level of the fitted factor RDDs."""
    seed: int = 7
    """Seed of ALS's factor initialisation. Inside :class:`Config` it is derived from the top-level
    ``seed``; setting it here is a deprecated override."""
    tune_ranks: list[int] = Field(default_factory=lambda: [16, 32, 64])
    """Ranks tried by ``spotrec weekly --tune``."""
    tune_reg_params: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4])
    """``reg_param`` values tried by ``spotrec weekly --tune``."""
    tune_alphas: list[float] = Field(default_factory=lambda: [1.0, 10.0, 40.0])
    """``alpha`` values tried by ``spotrec weekly --tune``."""

    # -- Discover Weekly, similar tracks, taste profiles --------------------------------------------------
    playlist_size: int = 30
    """Tracks per Discover Weekly playlist."""
    max_per_artist: int = 2
    """At most this many tracks of one artist per playlist."""
    similar_tracks: int = 20
    """Neighbours kept per track in gold.similar_tracks."""
    taste_clusters: int = 8
    """k of the k-means over track factors (taste clusters and user taste profiles)."""
    user_block_size: int = 1024
    """Users per matmul block when scoring every track for every user."""
    eval_k: int = 10
    """Cut-off of the last-week evaluation metrics (NDCG@k, MAP@k, ...)."""


class RnnConfig(_Section):
    """The word2vec + RNN + Annoy discovery system (De Boom et al. 2017): song vectors, the taste RNN and
    Annoy retrieval.

    The defaults follow the paper where it gives a value (CBOW with negative sampling, window 5, a few
    negatives, subsampling of frequent songs, a recurrent network over the last ``n`` songs) and are sized
    for the synthetic demo world otherwise.
    """

    # -- documents ------------------------------------------------------------------------------
    top_n_tracks: int = Field(default=50_000, ge=1)
    """Vocabulary: only the N most frequent tracks (over playlists and sessions) get a vector; rarer
    tracks are removed from the documents (the paper kept the most popular songs only)."""
    min_count: int = 1
    """A track must occur at least this often to enter the vocabulary (also MLlib's ``minCount``)."""
    use_playlists: bool = True
    """Use user playlists (silver.playlists) as documents."""
    use_sessions: bool = True
    """Use listening sessions (silver.listen_events grouped by session) as documents."""
    min_document_length: int = 2
    """Documents shorter than this after vocabulary restriction carry no context and are dropped."""

    # -- song vectors ---------------------------------------------------------------------------
    method: Literal["cbow_ns", "sg_hs"] = "cbow_ns"
    """Which song vectors feed the RNN and the index: ``cbow_ns`` (torch, as the paper) or ``sg_hs``
    (Spark MLlib Word2Vec: skip-gram with hierarchical softmax)."""
    vector_size: int = Field(default=64, ge=1)
    """Dimension of song vectors (and of the RNN's output taste vector)."""
    window: int = Field(default=5, ge=1)
    """Context half-width: up to ``window`` songs each side (sampled per position as in word2vec)."""
    negatives: int = 5
    """Negative samples per (context, song) pair, drawn from unigram counts ** ``ns_exponent``."""
    ns_exponent: float = 0.75
    """Exponent of the noise distribution (0.75 in word2vec)."""
    subsample: float = 1e-3
    """Subsampling threshold t: a song of corpus frequency f is kept with probability
    (sqrt(f / t) + 1) * t / f (word2vec's rule); 0 disables subsampling."""
    w2v_epochs: int = 5
    """Passes over the documents."""
    w2v_lr: float = 0.01
    """Learning rate (SparseAdam for CBOW; MLlib's ``stepSize`` is ``w2v_lr * 2.5`` since SGD needs more)."""
    w2v_batch_size: int = 1024
    """(context, song) pairs per CBOW optimiser step."""
    w2v_partitions: int = 1
    """MLlib Word2Vec ``numPartitions`` (more is faster but less accurate, as MLlib warns)."""

    # -- taste RNN ------------------------------------------------------------------------------
    rnn_cell: Literal["gru", "lstm"] = "gru"
    """Recurrent cell: ``gru`` or ``lstm``."""
    hidden_size: int = Field(default=128, ge=1)
    """Hidden state size of the recurrent layer."""
    rnn_layers: int = 1
    """Stacked recurrent layers."""
    sequence_length: int = Field(default=10, ge=1)
    """n: the RNN reads a user's n previous songs and predicts the vector of song n+1."""
    window_stride: int = 1
    """Step between consecutive training windows of one user's play sequence (1 = every position)."""
    rnn_loss: Literal["l2", "cosine", "softmax"] = "softmax"
    """``l2`` (squared distance to the next song's vector, the paper's loss), ``cosine`` (1 - cos) or
    ``softmax`` (cross-entropy over all songs scored ``taste . vector + song bias``; recommendations then
    search ``[vector, bias]`` by inner product). softmax is the default because it measures far better on the
    last-week split: a point regressed onto the next song's vector lands among rare songs whose cosine
    neighbourhoods say little about what a listener plays next (see docs/benchmarks.md)."""
    softmax_samples: int = 512
    """Training negatives per batch for the ``softmax`` loss, drawn uniformly and shared by the batch (sampled
    softmax); 0, or a catalogue no larger than this, trains with the full softmax. Validation always uses the
    full softmax."""
    window_targets: Literal["all", "new"] = "all"
    """``all``: a window for every next play (the paper); ``new``: only windows whose target the user had not
    played before in the sequence (what a recommender of unheard songs is judged on)."""
    rnn_epochs: int = 20
    """Maximum passes over the training windows."""
    max_windows_per_epoch: int = Field(default=300_000, ge=0)
    """Training windows per epoch at most (0: all). Each epoch reads the windows in a new seeded order, so a
    bounded epoch is a fresh sample; validation reads at most the same share of its windows. Keeps the
    driver's training time bounded whatever the data's size: at ~11k windows/s on one core, 20 epochs of
    300k take at most ~9 minutes (the demo's ~100k windows are not cut). Measured on the demo world
    (docs/benchmarks.md): at 10 epochs a bound of 29% of the windows cost ~15-25% of NDCG@10; with 35
    epochs and ``patience`` 10 it came back to within 4%. Where the bound cuts, raise ``rnn_epochs`` and
    ``patience`` with it."""
    time_budget_s: float = Field(default=0.0, ge=0.0)
    """Stop training after the first epoch that ends past this many seconds (0: no budget). Not
    deterministic by nature (it depends on the machine); the epoch bound above is."""
    rnn_lr: float = 3e-3
    """Adam learning rate."""
    batch_size: int = Field(default=256, ge=1)
    """Windows per optimiser step."""
    patience: int = 3
    """Early stopping: stop after this many epochs without a better validation loss."""
    min_delta: float = 1e-4
    """An epoch counts as better only when it lowers the best validation loss by this fraction of it."""
    validation_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of windows (hashed per user, so a user is entirely on one side) kept for validation."""
    use_distributor: bool = False
    """Train through ``pyspark.ml.torch.distributor.TorchDistributor`` instead of a plain call."""
    num_processes: int = 1
    """TorchDistributor processes (local mode, CPU) when ``use_distributor`` is set."""

    # -- retrieval ------------------------------------------------------------------------------
    ann_backend: Literal["annoy", "voyager"] = "annoy"
    """Nearest-neighbour index: ``annoy`` (random-projection trees) or ``voyager`` (Spotify's HNSW successor
    to Annoy; metrics ``angular`` and ``dot`` only). Compared at equal recall in ``benchmarks/ann_bench.py``."""
    annoy_metric: Literal["angular", "euclidean", "dot", "manhattan", "hamming"] = "angular"
    """Annoy metric: ``angular`` (cosine), ``euclidean``, ``dot``, ``manhattan`` or ``hamming``."""
    n_trees: int = 50
    """Annoy trees: more trees, better recall, bigger index."""
    search_k: int = 2000
    """Nodes inspected per query; -1 lets Annoy use n_trees * n (n = results asked for). 2000 with 50 trees
    measured recall@10 >= 0.95 on clustered vectors at 100K and 300K songs and on learned-like ones at 100K
    (``benchmarks/ann_bench.py``, docs/benchmarks.md)."""
    voyager_m: int = 16
    """Voyager (HNSW) links per node: more links, better recall, bigger index and slower build."""
    voyager_ef_construction: int = 200
    """Voyager's candidate list while building the graph (build quality)."""
    voyager_ef: int = 100
    """Voyager's candidate list per query (at least the results asked for): Voyager's counterpart of
    ``search_k``, on its own scale (a list length, not a node count). Measured in ``benchmarks/ann_bench.py``
    (docs/benchmarks.md, "Voyager beside Annoy")."""
    top_k: int = 50
    """Recommendations per user."""
    recent_days: int = 28
    """Tracks a user played in the last ``recent_days`` days (before the latest event in the data) are
    never recommended to them; 0 excludes nothing."""

    @property
    def search_budget(self) -> int:
        """The per-query search budget of the configured backend: ``voyager_ef`` or Annoy's ``search_k``."""
        return self.voyager_ef if self.ann_backend == "voyager" else self.search_k

    # -- evaluation (the pipeline's last-week split, beside ALS) -----------------------------------
    eval_next_k: int = 50
    """Second cut-off of the next-track hit rate and MRR (the first is ``weekly.eval_k``, as for ALS)."""
    refit_for_serving: bool = False
    """After the evaluation (fitted on the training weeks), refit on every event before serving. Off by
    default: the served model is then exactly the one whose figures were printed (its users' histories
    still include the last week), and the demo fits once; on makes the served vectors one week fresher at
    twice the training time."""

    # -- bookkeeping ----------------------------------------------------------------------------
    seed: int = 11
    """Seeds numpy, torch, MLlib Word2Vec and the validation split. Inside :class:`Config` it is derived
    from the top-level ``seed``; setting it here is a deprecated override."""
    torch_threads: int = 1
    """Intra-op threads of the torch trainers (0 = torch's default). Batches here are small: one thread was 10x
    faster than two on a busy 2-core machine, where spinning thread pools fight other processes."""
    log_every_epoch: bool = True
    """Log one progress line per epoch (loss, examples/s)."""


class RlConfig(_Section):
    """The RL playlist system (Tomasi et al., KDD 2023): user model, simulator, AH-DQN agent and evaluation.

    Every field has a default that runs in seconds on the test fixtures and in minutes on the demo world.
    """

    # --- labels and features --------------------------------------------------------------------
    listen_threshold_s: float = 30.0
    """A play counts as "listened" when it lasted more than this many seconds (the "listen > X" head)."""
    completion_fraction: float = 0.9
    """A play counts as "completed" when ``ms_played >= completion_fraction * track_duration_ms``."""
    history_prior_strength: float = 5.0
    """Pseudo-plays that pull a user's history rates (skip rate, completion) toward the global rate, so a
    user with one play does not get a skip rate of exactly 0 or 1."""
    tempo_scale: float = 200.0
    """Tempo (BPM) is divided by this so every track feature lies roughly in [0, 1]."""
    duration_scale_ms: float = 600_000.0
    """Track duration is divided by this (10 minutes) for the same reason."""
    use_als_factors: bool = True
    """Append ALS user / track factors (``gold.user_factors`` / ``gold.track_factors``, when both exist) to
    the user and track blocks, so the user model sees taste affinity, not only audio features."""
    max_position: int = 50
    """Positions are divided by this (and clipped at 1) in the context features."""

    # --- user model -----------------------------------------------------------------------------
    user_model: Literal["mlp", "gru"] = "mlp"
    """The learned simulator's user model: ``mlp`` (the candidate, position and skip run only) or ``gru``
    (also a GRU over the session so far: tracks, responses, distances; :mod:`spotrec.rl.sequential`).
    With ``gru`` both are trained and compared on the held-out sessions; the GRU drives the simulator."""
    user_model_gru_hidden: int = 32
    """State size of the GRU of ``user_model: gru``."""
    user_model_hidden: list[int] = Field(default_factory=lambda: [64, 32])
    """Hidden layer sizes of the shared trunk of the user model (three sigmoid heads sit on top)."""
    user_model_lr: float = 3e-3
    """Adam learning rate of the user model."""
    user_model_weight_decay: float = 1e-5
    """Adam L2 penalty of the user model."""
    user_model_batch_size: int = 256
    """Minibatch size of the user model."""
    user_model_max_epochs: int = 40
    """Upper bound on user model epochs (early stopping usually ends training sooner)."""
    user_model_patience: int = 4
    """Stop after this many epochs without a better validation log-loss; the best epoch is kept."""
    user_model_ensemble: int = Field(default=1, ge=1)
    """MLP user models trained alike from seeds ``seed, seed + 1, ...``; the model answers with their mean
    probability (:class:`spotrec.rl.user_model.UserModelEnsemble`). 1: a single MLP, as before."""
    termination: Literal["rule", "learned"] = "rule"
    """How the learned simulator ends a session: ``rule`` (``quit_after_skips`` / ``quit_probability``)
    or ``learned`` (the user model gets a fourth head, P(this play is the session's last | outcome), trained
    on the logged sessions' last plays, and the simulator ends sessions from it)."""
    validation_fraction: float = 0.15
    """Share of training sessions held out for early stopping (split by session, not by row)."""
    test_fraction: float = 0.15
    """Share of sessions held out for the reported AUC / log-loss / calibration (split by session)."""
    calibration_bins: int = 10
    """Equal-width bins of predicted probability in the calibration table."""
    max_training_rows: int = 2_000_000
    """Training rows collected to the driver for the user model (a seeded sample beyond this)."""

    # --- simulator ------------------------------------------------------------------------------
    playlist_length: int = 10
    """Tracks per generated playlist / simulated session (the episode ends here at the latest)."""
    pool_size: int = 30
    """Candidate tracks per session; smaller pools are padded and masked in the observation."""
    pool_from_scores: int = 20
    """Of ``pool_size``, how many come from the user's top recommender scores (e.g. ALS) when given;
    the rest are a seeded random draw from the catalogue, so pools differ per user and over time."""
    reward_complete: float = 1.0
    """Reward when the simulated listener completes the track."""
    reward_listen: float = 0.3
    """Reward when the listener plays past the listen threshold but does not complete the track."""
    reward_skip: float = -0.5
    """Reward when the listener skips before the listen threshold."""
    reward_quit: float = -1.0
    """Extra reward added on the step after which the listener quits the session."""
    quit_after_skips: int = 3
    """Consecutive skips after which the simulated listener may quit (when the response model has no quit
    probability of its own) ..."""
    quit_probability: float = 0.5
    """... with this probability per further step (1.0 = always quits at the threshold)."""

    # --- AH-DQN agent ---------------------------------------------------------------------------
    q_hidden: list[int] = Field(default_factory=lambda: [64, 64])
    """Hidden sizes of the action-head Q network Q(state, track features) -> scalar (each stream)."""
    q_lr: float = 1e-3
    """Adam learning rate of the Q network."""
    q_user_model_features: bool = True
    """Give the Q network the (frozen) user model's three predictions per candidate as extra inputs."""
    q_session_features: bool = False
    """With ``q_user_model_features``: also give each candidate's distances to the session's earlier tracks
    (to the previous one, the nearest one, near-duplicates played) and the session's skip and completion
    fractions (:class:`spotrec.rl.planning.SessionAgentFeatures`), so the agent can learn what coherence and
    fatigue cost later in a session that the MLP user model does not see."""
    q_reward_prior: bool = True
    """With ``q_user_model_features``: Q = the user model's expected immediate reward + a learned residual
    that starts at zero, so training starts from the greedy-on-user-model policy and learns the long-term
    part (see :class:`spotrec.rl.q_network.QNetwork`)."""
    q_dueling: bool = True
    """Split the residual into a state-value stream V(user, context) and an action stream, so the action
    stream only has to learn how candidates differ (not the session's whole expected future)."""
    q_action_inputs: Literal["all", "predictions"] = "predictions"
    """What the action stream sees: ``all`` (user, context, track features and the user model's
    predictions) or ``predictions`` (context and the user model's three predictions only; needs
    ``q_user_model_features``). On the demo world ``all`` fitted TD noise per user and track: mean session
    reward against the true listener 5.05 with the prior alone vs 5.96 with ``predictions`` + dueling."""
    gamma: float = 0.9
    """Discount factor."""
    epsilon_start: float = 1.0
    """Exploration rate at the first step."""
    epsilon_end: float = 0.05
    """Exploration rate after the decay."""
    exploration_fraction: float = 0.5
    """Share of all training steps over which epsilon decays linearly from start to end."""
    replay_size: int = 20_000
    """Transitions kept in the replay buffer (oldest overwritten)."""
    batch_size: int = 64
    """Transitions per gradient step."""
    learning_starts: int = 200
    """Environment steps collected before the first gradient step."""
    train_frequency: int = 1
    """Environment steps per gradient step."""
    target_update_interval: int = 250
    """Gradient steps between target network updates."""
    tau: float = 1.0
    """Target update rate: 1.0 copies the online network, < 1 is a Polyak average."""
    double_dqn: bool = True
    """Use double-DQN targets (online network picks a', target network scores it)."""
    episodes: int = 2000
    """Training episodes (simulated sessions)."""
    eval_sessions: int = 300
    """Sessions per policy and world in the evaluation (confidence intervals shrink with more)."""
    log_every: int = 100
    """Episodes between training log lines."""
    training_users: int = 500
    """Users sampled (seeded) to seed simulated sessions for training and evaluation."""
    torch_threads: int = 1
    """Threads torch may use on the driver. The networks are tiny: more threads only add contention
    (with 2 threads on a busy 2-core machine training ran 10x slower than with 1)."""
    seed: int = 1
    """One seed for numpy, torch, the environment and every sample drawn by this step. Inside
    :class:`Config` it is derived from the top-level ``seed``; setting it here is a deprecated override."""

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain Python values (stored inside model checkpoints)."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RlConfig:
        """Rebuild from :meth:`to_dict` output (e.g. stored inside a checkpoint); unknown keys are ignored."""
        return cls(**{k: v for k, v in data.items() if k in cls.model_fields})


class LoggingConfig(_Section):
    """How the driver's Python log records are written (see ``spotrec.logs``); ``--log-level`` and
    ``--log-format`` on the command line override these."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Logging level name: DEBUG, INFO, WARNING, ERROR or CRITICAL."""
    format: Literal["text", "json"] = "text"
    """``text`` (human lines, the laptop default) or ``json`` (one object per line with ts, level, logger,
    message, run_id, step: for cluster log collectors)."""


class TrackingConfig(_Section):
    """MLflow tracking (see ``spotrec.tracking``): each step is an MLflow run with its config section as
    params, its ``ops.model_metrics`` rows as metrics and its model files (and the report) as artifacts."""

    enabled: bool = True
    """Track runs in MLflow. Off: only ``ops.runs`` / ``ops.model_metrics`` record them."""
    uri: YamlStr | None = None
    """Tracking URI. Default: ``databricks`` on Databricks, else a SQLite store
    ``sqlite:///<storage.root>/_mlflow/mlflow.db`` with artifacts under ``<storage.root>/_mlflow/artifacts``."""
    experiment: YamlStr = "spotrec"
    """Experiment name (on Databricks a workspace path such as ``/Users/me/spotrec``)."""
    max_factor_rows: int = Field(default=2_000_000, ge=0)
    """The ALS pyfunc model is logged only when users + tracks are at most this many (its factors are
    collected to the driver); above it the step logs a line saying so."""


# -- the whole configuration ---------------------------------------------------------------------------


def _as_mapping(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        # Only what was set: a derived seed must be derived again, not frozen in as an explicit one.
        return value.model_dump(exclude_unset=True)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PydanticCustomError("section_type", f"{where}: expected a mapping of keys, got {value!r}")
    return dict(value)


def rename_deprecated_sections(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the sections of :data:`DEPRECATED_SECTIONS` merged into their new sections.

    Logs one deprecation warning per old section. Raises a pydantic error (a :class:`ConfigError` once
    through :func:`load_config`) when a key is given under both an old and a new name.
    """
    if not any(old in data for old in DEPRECATED_SECTIONS):
        return data
    out = dict(data)
    origin: dict[tuple[str, str], str] = {}  # (new section, key) -> the section name it was given under
    for old, new in DEPRECATED_SECTIONS.items():
        if old not in out:
            continue
        moved = _as_mapping(out.pop(old), old)
        target = _as_mapping(out.get(new), new)
        for key in target:
            origin.setdefault((new, key), new)
        for key in moved:
            if key in target:
                first = origin[(new, key)]
                raise PydanticCustomError(
                    "deprecated_conflict",
                    "{first}.{key} and {old}.{key} both set {new}.{key} ('{old}' is the deprecated name of "
                    "'{new}'); keep only {new}.{key}",
                    {"first": first, "old": old, "new": new, "key": key},
                )
            origin[(new, key)] = old
        example = f" (e.g. {new}.{next(iter(moved))})" if moved else ""
        _log.warning("config section %r is deprecated: use %r%s", old, new, example)
        out[new] = {**target, **moved}
    return out


class Config(_Section):
    """Everything a spotrec run needs."""

    seed: int = 42
    """The run's one seed. Each section that draws random numbers (generate, weekly, rnn, rl) gets
    ``(seed + SEED_OFFSETS[section]) % 2**31`` as its ``seed`` unless that section sets one itself
    (deprecated); the default 42 reproduces the figures published before there was a single seed."""
    storage: StorageConfig = Field(default_factory=StorageConfig)
    """Where tables live."""
    spark: SparkConfig = Field(default_factory=SparkConfig)
    """Spark session settings for local runs."""
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    """The synthetic world."""
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    """Raw -> silver."""
    matrix: MatrixConfig = Field(default_factory=MatrixConfig)
    """Silver events -> gold.interactions."""
    weekly: WeeklyConfig = Field(default_factory=WeeklyConfig)
    """ALS + Discover Weekly (formerly ``als`` and ``discover``)."""
    rnn: RnnConfig = Field(default_factory=RnnConfig)
    """word2vec + taste RNN + Annoy (formerly ``discovery``)."""
    rl: RlConfig = Field(default_factory=RlConfig)
    """RL playlists (formerly ``playlists``)."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    """Driver log records."""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """MLflow runs and models."""

    @model_validator(mode="before")
    @classmethod
    def _rename_deprecated(cls, data: Any) -> Any:
        return rename_deprecated_sections(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _derive_seeds(self) -> Config:
        for name in SEED_OFFSETS:
            section = getattr(self, name)
            if "seed" in section.model_fields_set:
                _log.warning(
                    "%s.seed is set explicitly (%d): it overrides the seed derived from the top-level seed; "
                    "deprecated: set only the top-level 'seed'",
                    name,
                    section.seed,
                )
                continue
            derived = derive_seed(self.seed, name)
            if section.seed != derived:
                # A copy (the caller's section object is left alone) whose seed still counts as not set,
                # so a later change of the top-level seed derives it again.
                updated = section.model_copy(update={"seed": derived})
                updated.__pydantic_fields_set__.discard("seed")
                self.__dict__[name] = updated
        return self

    def to_dict(self) -> dict[str, Any]:
        """The whole configuration as JSON-serialisable values (stored with each run)."""
        return self.model_dump(mode="json")


# -- loading -------------------------------------------------------------------------------------------


def _model_in(tp: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType, list, dict, Annotated):
        for arg in typing.get_args(tp):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the section at ``loc`` (a pydantic error location below :class:`Config`)."""
    model: type[BaseModel] | None = Config
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    return sorted(model.model_fields) if model is not None else []


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "config"


def _describe(error: ErrorDetails) -> str:
    loc = tuple(error["loc"])
    path = _key_path(loc)
    if error["type"] == "extra_forbidden":
        known = ", ".join(_known_keys(loc[:-1]))
        return f"{path}: unknown key; known keys: {known}"
    if not loc:  # a whole-config check (deprecated sections); its message names the keys itself
        return error["msg"]
    message = error["msg"]
    value = error.get("input")
    if error["type"] not in ("missing", "yaml_bool") and not isinstance(value, (dict, list, BaseModel)):
        message += f" (got {value!r})"
    return f"{path}: {message}"


def config_error(err: ValidationError, source: str = "config") -> ConfigError:
    """One :class:`ConfigError` listing every problem of ``err`` as ``key.path: message``."""
    problems = [_describe(e) for e in err.errors(include_url=False)]
    count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
    return ConfigError(f"invalid {source} ({count}):\n  " + "\n  ".join(problems))


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {'.'.join(parts[: i + 1])} is not a section")
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read ``path`` (YAML; optional), apply ``section.key=value`` overrides and validate everything.

    Raises:
        ConfigError: the file is missing or not a mapping, an override is malformed, or any value is
            invalid (every problem is listed, each as ``key.path: message``).
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded
        source = f"config {p}"
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML: {exc}") from exc
        _set_path(data, key.strip(), value)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise config_error(err, source) from None
