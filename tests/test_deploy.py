"""Deployment files stay in step with the code, and table maintenance does what it promises.

* the Databricks bundle: targets, variables, one wheel task per pipeline step in pipeline order, each
  naming a real ``spotrec`` step and the entry point of ``[project.scripts]``;
* the spark-submit scripts parse (``bash -n``) and pass the flags a cluster run needs;
* the spark-operator SparkApplication is well-formed and runs a real job file;
* the maintenance job runs ``spotrec maintenance`` (what that step does: ``tests/test_maintenance.py``).
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from spotrec import cli
from spotrec.config import load_config

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "deploy" / "databricks"
SUBMIT_DIR = REPO / "deploy" / "spark-submit"
K8S_APP = REPO / "deploy" / "k8s" / "spotrec-sparkapplication.yaml"


def _bundle() -> dict[str, Any]:
    """databricks.yml with the resources of every included file merged in (as the CLI does)."""
    root = yaml.safe_load((BUNDLE / "databricks.yml").read_text())
    jobs: dict[str, Any] = {}
    for pattern in root["include"]:
        for path in sorted(BUNDLE.glob(pattern)):
            part = yaml.safe_load(path.read_text())
            for name, job in part["resources"]["jobs"].items():
                assert name not in jobs, f"job {name} defined twice"
                jobs[name] = {**job, "_file": path}
    root["jobs"] = jobs
    return root


def _wheel_tasks(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in job["tasks"] if "python_wheel_task" in t]


def _entry_point() -> tuple[str, str]:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert len(scripts) == 1
    return next(iter(scripts.items()))


def test_bundle_has_dev_and_prod_targets_with_every_variable_set() -> None:
    bundle = _bundle()
    assert bundle["bundle"]["name"] == "spotrec"
    assert set(bundle["targets"]) == {"dev", "prod"}
    assert bundle["targets"]["dev"]["mode"] == "development"
    assert bundle["targets"]["dev"].get("default") is True
    assert bundle["targets"]["prod"]["mode"] == "production"
    declared = bundle["variables"]
    assert {"catalog", "schema", "volume"} <= set(declared)
    for name, target in bundle["targets"].items():
        values = target.get("variables", {})
        missing = [v for v, spec in declared.items() if "default" not in spec and v not in values]
        assert not missing, f"target {name} leaves {missing} unset"
    wheel = bundle["artifacts"]["spotrec_wheel"]
    assert wheel["type"] == "whl"
    assert (BUNDLE / wheel["path"] / "pyproject.toml").is_file()


def test_every_wheel_task_runs_a_real_step_through_the_packaged_entry_point() -> None:
    script, target = _entry_point()
    assert target == "spotrec.cli:main"
    steps = set(cli.STEPS) | {"pipeline", "tables"}
    tasks = [t for job in _bundle()["jobs"].values() for t in _wheel_tasks(job)]
    assert tasks
    for task in tasks:
        wt = task["python_wheel_task"]
        assert wt["package_name"] == "spotrec"
        assert wt["entry_point"] == script
        params = wt["parameters"]
        assert params[0] in steps, f"task {task['task_key']} runs unknown step {params[0]!r}"
        assert task["task_key"] == params[0]
        overrides = [params[i + 1] for i, p in enumerate(params) if p == "--set"]
        assert "storage.catalog=${var.catalog}" in overrides
        assert "storage.schema=${var.schema}" in overrides
        # The overrides must be valid config keys (values are placeholders here).
        load_config(None, [o.split("=", 1)[0] + "=x" for o in overrides])
        assert any(lib.get("whl", "").endswith("dist/*.whl") for lib in task["libraries"])


def test_pipeline_job_has_one_task_per_step_in_pipeline_order() -> None:
    job = _bundle()["jobs"]["spotrec_pipeline"]
    keys = [t["task_key"] for t in job["tasks"]]
    expected = [s for s in cli.PIPELINE if s != "generate"]
    assert keys == expected, (
        f"the bundle's pipeline tasks {keys} differ from spotrec.cli.PIPELINE {expected}: add a "
        "python_wheel_task per new step to deploy/databricks/resources/spotrec.job.yml"
    )
    for previous, task in zip(job["tasks"], job["tasks"][1:]):
        assert task["depends_on"] == [{"task_key": previous["task_key"]}]
    clusters = {c["job_cluster_key"] for c in job["job_clusters"]}
    assert all(t["job_cluster_key"] in clusters for t in job["tasks"])


def test_every_wheel_task_parses_with_the_cli() -> None:
    """The bundle passes its parameters to ``spotrec.cli.main`` unchanged: a renamed option must fail here."""
    parser = cli.build_parser()
    for job in _bundle()["jobs"].values():
        for task in _wheel_tasks(job):
            args = parser.parse_args(task["python_wheel_task"]["parameters"])
            assert args.step == task["task_key"]


def test_maintenance_job_runs_the_maintenance_step_weekly_with_safe_retention() -> None:
    job = _bundle()["jobs"]["spotrec_maintenance"]
    (task,) = job["tasks"]
    params = task["python_wheel_task"]["parameters"]
    assert params[0] == "maintenance" and "maintenance" in cli.STEPS
    args = cli.build_parser().parse_args(params)
    assert args.retain_hours >= 168 and not args.allow_short_retention
    assert args.log_format == "json"
    assert job["schedule"]["quartz_cron_expression"].endswith("SUN"), "must not overlap the Monday pipeline"
    assert (REPO / "jobs" / "maintenance.py").is_file()


@pytest.mark.parametrize("script", sorted(SUBMIT_DIR.glob("*.sh")), ids=lambda p: p.name)
def test_spark_submit_scripts_parse(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable"


def test_submit_script_passes_every_flag_a_cluster_run_needs() -> None:
    text = (SUBMIT_DIR / "submit.sh").read_text()
    for flag in (
        "--master",
        "--deploy-mode",
        "--py-files",
        "--jars",
        "--packages",
        "io.delta:delta-spark_4.2_2.13:4.4.0",
        "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.pyspark.python",
        "spark.sql.session.timeZone=UTC",
    ):
        assert flag in text, f"submit.sh lacks {flag}"


def test_submit_script_refuses_to_run_without_a_master(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(SUBMIT_DIR / "submit.sh"), "pipeline"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "SPARK_MASTER" in result.stderr


def test_spark_application_is_a_well_formed_pyspark_job() -> None:
    app = yaml.safe_load(K8S_APP.read_text())
    assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    assert app["kind"] == "SparkApplication"
    spec = app["spec"]
    assert spec["type"] == "Python"
    assert spec["mode"] == "cluster"
    main = spec["mainApplicationFile"]
    assert main.startswith("local:///opt/spotrec/jobs/")
    assert (REPO / "jobs" / Path(main).name).is_file()
    assert spec["sparkConf"]["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert {"cores", "memory"} <= set(spec["driver"]) and {"instances", "cores", "memory"} <= set(spec["executor"])
    args = spec["arguments"]
    load_config(None, [args[i + 1] for i, a in enumerate(args) if a == "--set"])
    for i, a in enumerate(args):
        if a == "--skip":
            assert args[i + 1] in cli.PIPELINE


def test_every_step_has_a_spark_submit_entry_point() -> None:
    """``submit.sh STEP`` runs ``jobs/STEP.py``, which must pass STEP to the CLI."""
    for step in [*cli.STEPS, "pipeline"]:
        job = REPO / "jobs" / f"{step}.py"
        assert job.is_file(), f"no jobs/{step}.py for `spotrec {step}`"
        assert f'main(["{step}", *sys.argv[1:]])' in job.read_text()
