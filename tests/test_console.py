"""A quiet console: a tiny pipeline prints its progress and tables, and no warning off the allow-list."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spotrec.logs import CONSOLE_ALLOWED_WARNINGS, unexpected_warnings

REPO = Path(__file__).resolve().parents[1]
WORLD = ["generate.users=60", "generate.weeks=2", "generate.artists=30", "generate.partitions=2"]
SMALL_MODELS = [
    "rnn.rnn_epochs=1",
    "rnn.vector_size=8",
    "rnn.hidden_size=8",
    "rnn.n_trees=2",
    "rl.episodes=20",
    "rl.learning_starts=10",
    "rl.eval_sessions=5",
    "rl.training_users=10",
    "rl.user_model_max_epochs=1",
]
"""Every step runs (the RNN and RL steps too, where driver-side vectors and torch start), briefly."""


def test_unexpected_warnings_uses_the_allow_list() -> None:
    console = "\n".join(
        [
            "WARNING: Using incubator modules: jdk.incubator.vector",
            "26/01/05 12:00:00 WARN WindowExec: No Partition Defined for Window operation! Moving all data ...",
            "26/01/05 12:00:00 WARN SparkContext: The path x has been added already. Overwriting of added paths",
            "netlib-blas: JNI_OnLoad: dlopen(libblas.so.3) failed",
            "[weekly] model als-1, Discover Weekly for week 2026-01-05",
        ]
    )
    assert unexpected_warnings(console) == console.splitlines()[2:4]
    assert len(CONSOLE_ALLOWED_WARNINGS) <= 3  # short, and each entry says why


@pytest.mark.slow
def test_a_tiny_pipeline_prints_no_unexpected_warning(tmp_path: Path) -> None:
    root = tmp_path / "warehouse"
    sets = [
        f"storage.root={root}",
        f"storage.raw_dir={root}/raw",
        f"storage.checkpoint_dir={root}/_checkpoints",
        f"storage.artifacts_dir={root}/_artifacts",
        "spark.master=local[2]",
        "spark.shuffle_partitions=2",
        "spark.driver_memory=1g",  # a shared CI machine: the tiny world needs little
        *WORLD,
        *SMALL_MODELS,
    ]
    args = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "spotrec", "pipeline", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-4000:]
    assert unexpected_warnings(console) == [], console[-4000:]
    assert "[weekly] model" in done.stdout and "[rnn] model" in done.stdout and "Tables written:" in done.stdout
    assert "[Stage " not in console and "Downloading artifacts" not in console  # no progress bars
    lines = [line for line in console.splitlines() if line.strip()]
    assert len(lines) <= 120, "\n".join(lines)  # about two screens
