"""Load the synthetic world's hidden ground truth (written by :func:`spotrec.synth.world.generate_world`).

Used by tests and evaluation (do the models recover the planted taste groups?) and by the playlist-RL
work, which needs the true user-track affinities and the :class:`ResponseModel` as the "real" listener.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spotrec import columns as C
from spotrec.synth.response import ResponseModel


@dataclass
class GroundTruth:
    """The hidden state of a generated world, as pandas frames plus the response model.

    ``users``: user_id, taste_group, taste_vector (float32 arrays), activity — sorted by user_id.
    ``tracks``: track_id, artist_id, album_id, taste_group, taste_vector, popularity (percentile in [0, 1]),
    zipf_weight, duration_ms — sorted by track_id.
    """

    users: pd.DataFrame
    tracks: pd.DataFrame
    response_model: ResponseModel
    injected_faults: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._user_pos = pd.Index(self.users[C.USER_ID])
        self._track_pos = pd.Index(self.tracks[C.TRACK_ID])
        self._user_vecs = np.vstack(self.users["taste_vector"].to_numpy()).astype(np.float64)
        self._track_vecs = np.vstack(self.tracks["taste_vector"].to_numpy()).astype(np.float64)

    def user_vectors(self, user_ids: Sequence[str] | None = None) -> np.ndarray:
        """(n, taste_dim) unit taste vectors of ``user_ids`` (all users, in ``users`` order, when None)."""
        return self._user_vecs if user_ids is None else self._user_vecs[self._positions(self._user_pos, user_ids)]

    def track_vectors(self, track_ids: Sequence[str] | None = None) -> np.ndarray:
        """(n, taste_dim) unit taste vectors of ``track_ids`` (all tracks when None)."""
        return self._track_vecs if track_ids is None else self._track_vecs[self._positions(self._track_pos, track_ids)]

    def affinity(self, user_ids: Sequence[str], track_ids: Sequence[str]) -> np.ndarray:
        """Cosine affinity of each (user, track) pair, element-wise: the response model's ``affinity``."""
        return np.einsum("ij,ij->i", self.user_vectors(user_ids), self.track_vectors(track_ids))

    def affinity_matrix(self, user_ids: Sequence[str], track_ids: Sequence[str]) -> np.ndarray:
        """(users, tracks) cosine affinities for every combination."""
        return self.user_vectors(user_ids) @ self.track_vectors(track_ids).T

    def popularity(self, track_ids: Sequence[str]) -> np.ndarray:
        """Popularity percentiles of ``track_ids``: the response model's ``popularity``."""
        return self.tracks["popularity"].to_numpy()[self._positions(self._track_pos, track_ids)]

    @staticmethod
    def _positions(index: pd.Index, ids: Sequence[str]) -> np.ndarray:
        pos = index.get_indexer(list(ids))
        if (pos < 0).any():
            missing = [i for i, p in zip(ids, pos) if p < 0][:5]
            raise KeyError(f"ids not in the ground truth: {missing}")
        return pos


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read ``{artifacts_dir}/ground_truth`` (a local or mounted path).

    Raises:
        FileNotFoundError: the folder has no ground truth (run ``spotrec generate`` first).
    """
    root = Path(path)
    model_file = root / "response_model.json"
    if not model_file.exists():
        raise FileNotFoundError(f"no ground truth at {root}: run `spotrec generate` first")
    users = pd.read_parquet(root / "users").sort_values(C.USER_ID, ignore_index=True)
    tracks = pd.read_parquet(root / "tracks").sort_values(C.TRACK_ID, ignore_index=True)
    faults_file = root / "injected_faults.json"
    faults = json.loads(faults_file.read_text()) if faults_file.exists() else {}
    return GroundTruth(users, tracks, ResponseModel.load(model_file), {str(k): int(v) for k, v in faults.items()})
