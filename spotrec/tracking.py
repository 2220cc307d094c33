"""MLflow tracking: each step is an MLflow run; the three systems' models are MLflow pyfunc models.

``spotrec.steps.base`` opens one run per step (:func:`step_run`) beside its ``ops.runs`` row: params are the
step's config section flattened (``weekly.rank``, ...), metrics are exactly the step's ``ops.model_metrics``
rows (:func:`metric_key` names them), artifacts are its model files and the report. The store is local by
default (SQLite under ``<storage.root>/_mlflow``) and the workspace on Databricks (``tracking.*`` in the
config). The models (:func:`log_als_model`, :func:`log_taste_rnn`, :func:`log_policy`) carry a signature
and score a pandas batch after ``mlflow.pyfunc.load_model``.

MLflow's own INFO lines (database migrations on first use, "View run at" links) are kept off the console:
its logger is set to WARNING when tracking starts (``--verbose`` / ``--log-level DEBUG`` show them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spotrec.config import Config

log = logging.getLogger(__name__)

STEP_SECTIONS: dict[str, str] = {
    "generate": "generate",
    "ingest": "ingest",
    "matrix": "matrix",
    "evaluate": "weekly",
    "weekly": "weekly",
    "rnn": "rnn",
    "rl": "rl",
}
"""The config section whose settings are a step's MLflow params (other steps log only the seed)."""
TRAINING_DATASET = "training"
"""``ops.model_metrics`` rows of this dataset are curves: ``k`` is the MLflow step (the episode)."""
PARAM_MAX = 6000


def tracking_uri(cfg: Config) -> str:
    """``tracking.uri``, else ``databricks`` on Databricks, else SQLite under ``<storage.root>/_mlflow``."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return "databricks"
    return f"sqlite:///{local_store(cfg) / 'mlflow.db'}"


def local_store(cfg: Config) -> Path:
    """The local MLflow folder: ``<storage.root>/_mlflow`` (``mlflow.db`` and ``artifacts/``)."""
    return Path(cfg.storage.root).absolute() / "_mlflow"


def flatten(section: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """Nested settings as ``prefix.key.sub`` -> string value (MLflow params are strings)."""
    out: dict[str, str] = {}
    for key, value in section.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name))
        else:
            out[name] = str(value)[:PARAM_MAX]
    return out


def step_params(cfg: Config, step: str) -> dict[str, str]:
    params = {"seed": str(cfg.seed)}
    section = STEP_SECTIONS.get(step)
    if section is not None:
        params.update(flatten(cfg.to_dict()[section], section))
    return params


def metric_key(dataset: str, model: str, metric: str, k: int | None) -> tuple[str, int]:
    """The MLflow metric name and step of one ``ops.model_metrics`` row.

    ``<dataset>/<model>/<metric>_at_<k>`` at step 0 (``k`` omitted when null); a ``training`` row is a point of a
    curve: ``training/<model>/<metric>`` at step ``k``.
    """
    if dataset == TRAINING_DATASET:
        return mlflow_name(f"{dataset}/{model}/{metric}"), int(k or 0)
    return mlflow_name(f"{dataset}/{model}/{metric}" + (f"_at_{k}" if k is not None else "")), 0


_NOT_IN_MLFLOW_NAMES = re.compile(r"[^A-Za-z0-9_\-. :/]")


def mlflow_name(name: str) -> str:
    """``name`` with the characters MLflow refuses in metric names spelled out (``+`` -> ``_plus_``) or ``_``.

    Model names such as ``mean_history+rnn_bias`` are valid in ops.model_metrics but not in MLflow.
    """
    return _NOT_IN_MLFLOW_NAMES.sub("_", name.replace("+", "_plus_"))


@dataclass
class StepTracker:
    """The step's open MLflow run (``None`` in :class:`~spotrec.steps.base.StepContext` when tracking is off)."""

    run_id: str
    """MLflow's run id (the spotrec run id is the run name and the ``spotrec.run_id`` tag)."""
    cfg: Config

    def log_metric_rows(self, rows: Sequence[tuple[str, str, str, int | None, float | None]]) -> int:
        """Log ``(dataset, model, metric, k, value)`` rows (nulls skipped); returns how many were logged."""
        import mlflow
        from mlflow.entities import Metric

        now = int(pd.Timestamp.now("UTC").timestamp() * 1000)
        metrics = []
        for dataset, model, metric, k, value in rows:
            if value is None or not np.isfinite(value):
                continue
            key, step = metric_key(dataset, model, metric, k)
            metrics.append(Metric(key, float(value), now, step))
        client = mlflow.MlflowClient()
        for start in range(0, len(metrics), 1000):
            client.log_batch(self.run_id, metrics=metrics[start : start + 1000])
        return len(metrics)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file or a whole folder (e.g. a model's files) as the run's artifacts."""
        import mlflow

        path = Path(path)
        if path.is_dir():
            mlflow.MlflowClient().log_artifacts(self.run_id, str(path), artifact_path)
        elif path.exists():
            mlflow.MlflowClient().log_artifact(self.run_id, str(path), artifact_path)


def _quiet_mlflow(cfg: Config) -> None:
    if logging.getLogger().level > logging.DEBUG:
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # Logging a model downloads its files back to validate the input example, with a tqdm bar each time.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    del cfg


def _experiment_id(cfg: Config, uri: str) -> str:
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(cfg.tracking.experiment)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if uri.startswith("sqlite:") and not cfg.tracking.uri:
        location = (local_store(cfg) / "artifacts").as_uri()
    return str(client.create_experiment(cfg.tracking.experiment, artifact_location=location))


@contextlib.contextmanager
def step_run(cfg: Config, step: str, run_id: str) -> Iterator[StepTracker | None]:
    """An MLflow run for one step (yields ``None`` when ``tracking.enabled`` is off).

    The run ends FINISHED when the block does, FAILED when it raises. Tracking never fails the step: when the
    store cannot be reached the step runs untracked and one warning says why.
    """
    if not cfg.tracking.enabled:
        yield None
        return
    import mlflow

    _quiet_mlflow(cfg)
    uri = tracking_uri(cfg)
    try:
        if uri.startswith("sqlite:"):
            local_store(cfg).mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        experiment_id = _experiment_id(cfg, uri)
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_id,
            tags={"spotrec.run_id": run_id, "spotrec.step": step},
        )
        mlflow.log_params(step_params(cfg, step))
    except Exception as exc:  # tracking must never stop the pipeline
        log.warning("MLflow tracking off for %s (%s): %s", step, uri, exc)
        yield None
        return
    try:
        yield StepTracker(run.info.run_id, cfg)
    except BaseException:
        try:
            mlflow.end_run("FAILED")
        except Exception as exc:  # never hide the step's own error behind a tracking one
            log.warning("could not end MLflow run %s: %s", run.info.run_id, exc)
        raise
    mlflow.end_run("FINISHED")


# --- pyfunc models ----------------------------------------------------------------------------------------


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "numpy", "pandas", "torch")]


def _package_source() -> str:
    """A directory holding the ``spotrec`` package, for a model's ``code_paths``.

    Under ``spark-submit --py-files spotrec.zip`` the package is imported from inside the zip, which MLflow
    cannot copy as a directory: the package is then extracted once into a temporary folder.
    """
    package = Path(__file__).parent
    if package.is_dir():
        return str(package)
    archive = next(p for p in package.parents if p.is_file())
    inner = package.relative_to(archive).as_posix()
    target = Path(tempfile.mkdtemp(prefix="spotrec-code-"))
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.namelist() if m.startswith(f"{inner}/") and "__pycache__" not in m]
        zf.extractall(target, members)
    return str(target / inner)


def _log_pyfunc(name: str, model: Any, artifacts: dict[str, str], example: pd.DataFrame) -> str:
    """Log ``model`` with a signature inferred from its own output on ``example``; returns the model URI."""
    import mlflow
    from mlflow.models import infer_signature

    model.load_context(_Context(artifacts))
    signature = infer_signature(example, model.predict(None, example))
    # Models from code (a file that names the class) rather than a pickled object: nothing is unpickled at
    # load time, and MLflow does not warn about CloudPickle.
    code = Path(tempfile.mkdtemp(prefix="spotrec-model-")) / f"{name}_model.py"
    code.write_text(
        f"import mlflow\nfrom spotrec.tracking import {type(model).__name__}\n\n"
        f"mlflow.models.set_model({type(model).__name__}())\n"
    )
    with warnings.catch_warnings():
        # The model's code is spotrec itself (code_paths); MLflow otherwise warns it cannot pin it.
        warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(code),
            artifacts=artifacts,
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            code_paths=[_package_source()],
        )
    return str(info.model_uri)


@dataclass
class _Context:
    artifacts: dict[str, str]


try:  # mlflow is a dependency of the steps; the classes below need its base class
    from mlflow.pyfunc import PythonModel as _PythonModel
except ImportError:  # pragma: no cover
    _PythonModel = object  # type: ignore[misc,assignment]


class AlsScorer(_PythonModel):  # type: ignore[misc]
    """Discover Weekly's ALS model: ``(user_id, track_id)`` rows -> ``score`` = user factor . track factor
    (NaN for a user or track the model has not seen)."""

    def load_context(self, context: Any) -> None:
        data = np.load(context.artifacts["factors"], allow_pickle=False)
        self.users = pd.Index(data["user_ids"])
        self.tracks = pd.Index(data["track_ids"])
        self.user_factors, self.track_factors = data["user_factors"], data["track_factors"]

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        u = self.users.get_indexer(model_input["user_id"].astype(str))
        t = self.tracks.get_indexer(model_input["track_id"].astype(str))
        ok = (u >= 0) & (t >= 0)
        score = np.full(len(model_input), np.nan)
        score[ok] = np.einsum("ij,ij->i", self.user_factors[u[ok]], self.track_factors[t[ok]])
        return pd.DataFrame({"score": score})


class TasteRnnScorer(_PythonModel):  # type: ignore[misc]
    """The taste RNN: a ``history`` of song tokens (oldest first) per row -> the user's taste vector."""

    def load_context(self, context: Any) -> None:
        from spotrec.rnn.taste_rnn import load_checkpoint

        self.model = load_checkpoint(context.artifacts["checkpoint"], context.artifacts["spec"])
        self.vectors = np.load(context.artifacts["vectors"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        from spotrec.rnn.taste_rnn import predict_taste

        histories = [np.asarray(h, dtype=np.int64) for h in model_input["history"]]
        return predict_taste(self.model, self.vectors, histories)


class PolicyScorer(_PythonModel):
    """The AH-DQN policy: a user's context block and a candidate pool per row -> the playlist, as candidate
    indices in play order (``-1`` pads a pool shorter than the playlist length)."""

    def load_context(self, context: Any) -> None:
        from spotrec.rl.agent import load_policy

        self.agent, self.user_model = load_policy(context.artifacts["policy"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        from spotrec.rl.env import SessionSpec
        from spotrec.rl.policies import plan_playlist

        length = self.agent.cfg.playlist_length
        out = np.full((len(model_input), length), -1, dtype=np.int64)
        for i, row in enumerate(model_input.to_dict("records")):
            pool = np.stack([np.asarray(f, dtype=np.float32) for f in row["candidate_features"]])
            spec = SessionSpec(str(i), np.asarray(row["user_features"], dtype=np.float32), np.arange(len(pool)), pool)
            plan = plan_playlist(self.agent.q, self.user_model, spec, self.agent.cfg, self.agent.features)
            out[i, : len(plan)] = [slot.index for slot in plan]
        return out


def log_als_model(
    tracker: StepTracker,
    user_ids: np.ndarray,
    user_factors: np.ndarray,
    track_ids: np.ndarray,
    track_factors: np.ndarray,
    folder: str | Path,
) -> str:
    """Save the factors to ``folder/als_factors.npz`` and log them as the ``als`` pyfunc model."""
    path = Path(folder) / "als_factors.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        user_ids=np.asarray(user_ids, dtype=str),
        user_factors=np.asarray(user_factors, dtype=np.float32),
        track_ids=np.asarray(track_ids, dtype=str),
        track_factors=np.asarray(track_factors, dtype=np.float32),
    )
    example = pd.DataFrame({"user_id": [str(user_ids[0])], "track_id": [str(track_ids[0])]})
    return _log_pyfunc("als", AlsScorer(), {"factors": str(path)}, example)


def log_taste_rnn(tracker: StepTracker, checkpoint: str, vectors: str) -> str:
    """Log the taste RNN (its ``.pt`` + ``.json`` checkpoint and the song vectors) as the ``taste_rnn`` model."""
    artifacts = {"checkpoint": checkpoint, "spec": checkpoint[: -len(".pt")] + ".json", "vectors": vectors}
    n = int(np.load(vectors, mmap_mode="r").shape[0])
    example = pd.DataFrame({"history": [list(range(min(3, n)))]})
    return _log_pyfunc("taste_rnn", TasteRnnScorer(), artifacts, example)


def log_policy(tracker: StepTracker, policy_path: str, example: pd.DataFrame) -> str:
    """Log the AH-DQN checkpoint (user model inside) as the ``ah_dqn`` model; ``example`` is one session's
    ``user_features`` and ``candidate_features`` (lists)."""
    return _log_pyfunc("ah_dqn", PolicyScorer(), {"policy": policy_path}, example)
