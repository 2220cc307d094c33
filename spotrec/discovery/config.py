"""Configuration of the word2vec + RNN + Annoy discovery system (De Boom et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DiscoveryConfig:
    """Song vectors, the taste RNN and Annoy retrieval.

    The defaults follow the paper where it gives a value (CBOW with negative sampling, window 5, a few
    negatives, subsampling of frequent songs, a recurrent network over the last ``n`` songs) and are sized
    for the synthetic demo world otherwise.
    """

    # -- documents ------------------------------------------------------------------------------
    top_n_tracks: int = 50_000
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
    method: str = "cbow_ns"
    """Which song vectors feed the RNN and the index: ``cbow_ns`` (torch, as the paper) or ``sg_hs``
    (Spark MLlib Word2Vec: skip-gram with hierarchical softmax)."""
    vector_size: int = 64
    """Dimension of song vectors (and of the RNN's output taste vector)."""
    window: int = 5
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
    rnn_cell: str = "gru"
    """Recurrent cell: ``gru`` or ``lstm``."""
    hidden_size: int = 128
    """Hidden state size of the recurrent layer."""
    rnn_layers: int = 1
    """Stacked recurrent layers."""
    sequence_length: int = 10
    """n: the RNN reads a user's n previous songs and predicts the vector of song n+1."""
    window_stride: int = 1
    """Step between consecutive training windows of one user's play sequence (1 = every position)."""
    rnn_loss: str = "softmax"
    """``l2`` (squared distance to the next song's vector, the paper's loss), ``cosine`` (1 - cos) or
    ``softmax`` (cross-entropy over all songs scored ``taste . vector + song bias``; recommendations then
    search ``[vector, bias]`` by inner product). softmax is the default because it measures far better on the
    last-week split: a point regressed onto the next song's vector lands among rare songs whose cosine
    neighbourhoods say little about what a listener plays next (see docs/benchmarks.md)."""
    softmax_samples: int = 512
    """Training negatives per batch for the ``softmax`` loss, drawn uniformly and shared by the batch (sampled
    softmax); 0, or a catalogue no larger than this, trains with the full softmax. Validation always uses the
    full softmax."""
    window_targets: str = "all"
    """``all``: a window for every next play (the paper); ``new``: only windows whose target the user had not
    played before in the sequence (what a recommender of unheard songs is judged on)."""
    rnn_epochs: int = 20
    """Maximum passes over the training windows."""
    rnn_lr: float = 3e-3
    """Adam learning rate."""
    batch_size: int = 256
    """Windows per optimiser step."""
    patience: int = 3
    """Early stopping: stop after this many epochs without a better validation loss."""
    min_delta: float = 1e-4
    """An epoch counts as better only when it lowers the best validation loss by this fraction of it."""
    validation_fraction: float = 0.1
    """Share of windows (hashed per user, so a user is entirely on one side) kept for validation."""
    use_distributor: bool = False
    """Train through ``pyspark.ml.torch.distributor.TorchDistributor`` instead of a plain call."""
    num_processes: int = 1
    """TorchDistributor processes (local mode, CPU) when ``use_distributor`` is set."""

    # -- retrieval ------------------------------------------------------------------------------
    annoy_metric: str = "angular"
    """Annoy metric: ``angular`` (cosine), ``euclidean`` or ``dot``."""
    n_trees: int = 50
    """Annoy trees: more trees, better recall, bigger index."""
    search_k: int = 2000
    """Nodes inspected per query; -1 lets Annoy use n_trees * n (n = results asked for). 2000 with 50 trees
    measured recall@10 >= 0.95 on clustered vectors at 100K and 300K songs and on learned-like ones at 100K
    (``benchmarks/ann_bench.py``, docs/benchmarks.md)."""
    top_k: int = 50
    """Recommendations per user."""
    recent_days: int = 28
    """Tracks a user played in the last ``recent_days`` days (before the latest event in the data) are
    never recommended to them; 0 excludes nothing."""

    # -- evaluation (the pipeline's last-week split, beside ALS) -----------------------------------
    eval_next_k: int = 50
    """Second cut-off of the next-track hit rate and MRR (the first is ``discover.eval_k``, as for ALS)."""
    refit_for_serving: bool = False
    """After the evaluation (fitted on the training weeks), refit on every event before serving. Off by
    default: the served model is then exactly the one whose figures were printed (its users' histories
    still include the last week), and the demo fits once; on makes the served vectors one week fresher at
    twice the training time."""

    # -- bookkeeping ----------------------------------------------------------------------------
    seed: int = 11
    """Seeds numpy, torch, MLlib Word2Vec and the validation split."""
    torch_threads: int = 1
    """Intra-op threads of the torch trainers (0 = torch's default). Batches here are small: one thread was 10x
    faster than two on a busy 2-core machine, where spinning thread pools fight other processes."""
    log_every_epoch: bool = True
    """Log one progress line per epoch (loss, examples/s)."""

    def validate(self) -> None:
        """Raise ``ConfigError`` for values that cannot work, naming the key."""
        from spotrec.errors import ConfigError

        if self.method not in ("cbow_ns", "sg_hs"):
            raise ConfigError(f"discovery.method must be 'cbow_ns' or 'sg_hs', got {self.method!r}")
        if self.rnn_cell not in ("gru", "lstm"):
            raise ConfigError(f"discovery.rnn_cell must be 'gru' or 'lstm', got {self.rnn_cell!r}")
        if self.rnn_loss not in ("l2", "cosine", "softmax"):
            raise ConfigError(f"discovery.rnn_loss must be 'l2', 'cosine' or 'softmax', got {self.rnn_loss!r}")
        if self.window_targets not in ("all", "new"):
            raise ConfigError(f"discovery.window_targets must be 'all' or 'new', got {self.window_targets!r}")
        if self.annoy_metric not in ("angular", "euclidean", "dot", "manhattan", "hamming"):
            raise ConfigError(f"discovery.annoy_metric {self.annoy_metric!r} is not an Annoy metric")
        for name in ("top_n_tracks", "vector_size", "window", "sequence_length", "batch_size", "hidden_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"discovery.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(f"discovery.validation_fraction must be in [0, 1), got {self.validation_fraction}")
