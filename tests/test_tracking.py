"""MLflow tracking: a step's run carries its ops.model_metrics rows; the logged models load and score."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from pyspark.sql import SparkSession

from spotrec.config import Config, RlConfig
from spotrec.steps.base import StepContext
from spotrec.storage import Storage
from spotrec.tables import MODEL_METRICS, SILVER_EVENTS
from spotrec.tracking import log_als_model, log_policy, log_taste_rnn, metric_key, step_run, tracking_uri

T0 = dt.datetime(2026, 1, 5, 12, 0)


def _client(config: Config) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri(config))


def test_a_steps_mlflow_run_has_exactly_its_ops_model_metrics(
    spark: SparkSession, storage: Storage, config: Config
) -> None:
    ctx = StepContext(spark, storage, config, out=lambda _: None)
    with ctx.tracked("evaluate", inputs=[SILVER_EVENTS], outputs=[MODEL_METRICS]) as run_id:
        rows = [
            (run_id, "als", "v1", "last-week", "ndcg", 10, 0.31, T0),
            (run_id, "popularity", None, "last-week", "recall", 10, 0.12, T0),
            (run_id, "rl_policy:ah_dqn", "p1", "learned_sim", "session_reward_mean", None, 5.5, T0),
            (run_id, "rl_policy:ah_dqn", "p1", "training", "episodic_return", 10, 2.0, T0),
            (run_id, "rl_policy:ah_dqn", "p1", "training", "episodic_return", 20, 3.0, T0),
            (run_id, "als", "v1", "last-week", "coverage", 10, None, T0),  # null: nothing to log
            ("other-run", "als", "v0", "last-week", "ndcg", 10, 0.99, T0),
        ]
        storage.append(MODEL_METRICS, spark.createDataFrame(rows, MODEL_METRICS.schema))
    runs = _client(config).search_runs(
        [_client(config).get_experiment_by_name(config.tracking.experiment).experiment_id],
        f"tags.`spotrec.run_id` = '{run_id}'",
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == run_id
    assert run.data.params["weekly.rank"] == str(config.weekly.rank)  # evaluate's section: weekly
    table = [r for r in storage.read(MODEL_METRICS).where(f"run_id = '{run_id}'").collect() if r.value is not None]
    logged = {}
    for key in run.data.metrics:
        for m in _client(config).get_metric_history(run.info.run_id, key):
            logged[(key, m.step)] = m.value
    expected = {metric_key(r.dataset, r.model, r.metric, r.k): r.value for r in table}
    assert logged == pytest.approx(expected)
    assert ("training/rl_policy:ah_dqn/episodic_return", 20) in logged
    assert ("last-week/als/ndcg_at_10", 0) in logged


def test_tracking_off_opens_no_run(config: Config) -> None:
    off = config.model_copy(update={"tracking": config.tracking.model_copy(update={"enabled": False})})
    with step_run(off, "weekly", "r1") as tracker:
        assert tracker is None
    assert not (Path(config.storage.root) / "_mlflow").exists()


def test_logged_als_and_taste_rnn_models_load_and_score_a_batch(config: Config, tmp_path: Path) -> None:
    users, tracks = np.array(["u1", "u2"]), np.array(["t1", "t2", "t3"])
    uf = np.array([[1.0, 0.0], [0.5, 2.0]], dtype=np.float32)
    tf = np.array([[1.0, 1.0], [0.0, 3.0], [2.0, 0.0]], dtype=np.float32)

    from spotrec.rnn.taste_rnn import RnnSpec, TasteRNN, predict_taste, save_checkpoint

    torch.manual_seed(0)
    rnn = TasteRNN(RnnSpec("gru", 4, 8, 1, 3, "cosine", "v1")).eval()
    checkpoint = save_checkpoint(rnn, str(tmp_path / "rnn"), {})
    vectors = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.save(tmp_path / "vectors.npy", vectors)
    with step_run(config, "weekly", "r-models") as tracker:
        assert tracker is not None
        als_uri = log_als_model(tracker, users, uf, tracks, tf, tmp_path / "als")
        rnn_uri = log_taste_rnn(tracker, checkpoint, str(tmp_path / "vectors.npy"))
    als = mlflow.pyfunc.load_model(als_uri)
    assert als.metadata.signature is not None
    batch = pd.DataFrame({"user_id": ["u1", "u2", "u2", "nobody"], "track_id": ["t1", "t2", "t3", "t1"]})
    scores = als.predict(batch)["score"].to_numpy()
    np.testing.assert_allclose(scores[:3], [1.0, 6.0, 1.0])  # hand-computed dot products
    assert np.isnan(scores[3])
    model = mlflow.pyfunc.load_model(rnn_uri)
    histories = [[0, 1, 2], [3, 4, 5], [5]]
    tastes = model.predict(pd.DataFrame({"history": histories}))
    np.testing.assert_allclose(tastes, predict_taste(rnn, vectors, [np.array(h) for h in histories]), rtol=1e-5)


def test_logged_policy_loads_and_plans_a_batch(config: Config, tmp_path: Path) -> None:
    from spotrec.rl.agent import TrainedAgent, save_policy
    from spotrec.rl.features import FeatureLayout
    from spotrec.rl.q_network import q_network

    cfg = RlConfig(playlist_length=3)
    layout = FeatureLayout()
    torch.manual_seed(0)
    agent = TrainedAgent(q=q_network(layout, cfg, None).eval(), layout=layout, cfg=cfg, version="p1")
    path = save_policy(agent, None, tmp_path / "policy")
    rng = np.random.default_rng(0)
    user = rng.normal(size=layout.user_dim).astype(float).tolist()

    def pool(n: int) -> list[list[float]]:
        return rng.normal(size=(n, layout.track_dim)).tolist()

    example = pd.DataFrame({"user_features": [user], "candidate_features": [pool(5)]})
    with step_run(config, "rl", "r-policy") as tracker:
        assert tracker is not None
        uri = log_policy(tracker, str(path), example)
    model = mlflow.pyfunc.load_model(uri)
    plans = model.predict(pd.DataFrame({"user_features": [user, user], "candidate_features": [pool(5), pool(2)]}))
    assert plans.shape == (2, 3)
    assert len(set(plans[0])) == 3 and set(plans[0]) <= set(range(5))  # three distinct candidates
    assert sorted(plans[1][:2]) == [0, 1] and plans[1][2] == -1  # a pool of two: both, then padding


def test_metric_names_mlflow_refuses_are_spelled_out() -> None:
    assert metric_key("last-week", "mean_history+rnn_bias", "next_track_hit_rate", 10) == (
        "last-week/mean_history_plus_rnn_bias/next_track_hit_rate_at_10",
        0,
    )
    assert metric_key("training", "rl_policy:ah_dqn", "episode_return", 40) == (
        "training/rl_policy:ah_dqn/episode_return",
        40,
    )
    assert metric_key("ground-truth", "als(taste)", "ari", None) == ("ground-truth/als_taste_/ari", 0)


def test_models_logged_from_a_zipped_package_carry_its_code(tmp_path: Path) -> None:
    """Under ``spark-submit --py-files spotrec.zip`` spotrec is imported from the zip; the models' code_paths
    must still be a directory holding the package (MLflow cannot copy a path inside a zip)."""
    import os
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    archive = shutil.make_archive(str(tmp_path / "spotrec"), "zip", root_dir=repo, base_dir="spotrec")
    probe = (
        f"import sys; sys.path.insert(0, {archive!r}); import spotrec.tracking as t; "
        "assert '.zip' in t.__file__, t.__file__; print(t._package_source())"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    source = Path(done.stdout.strip())
    assert (
        source.name == "spotrec" and (source / "tracking.py").is_file() and (source / "steps" / "weekly.py").is_file()
    )
