#!/usr/bin/env python
"""A real multi-process Spark standalone cluster on 127.0.0.1, from the pip-installed pyspark.

One master and N workers run as separate JVMs (``spark-class org.apache.spark.deploy.master.Master`` and
``...deploy.worker.Worker``; pip's pyspark ships no ``sbin/start-master.sh``). Each daemon is started in
its own process group, so the executors a worker launches belong to that group and stopping (or
killing, to simulate losing a machine) a worker by its PID also ends its executors. The PIDs are
recorded in ``<workdir>/cluster.json`` so that a later ``stop`` ends exactly what ``start`` started.

Command line::

    python scripts/cluster.py start --dir /tmp/spotrec-cluster [--workers 2 --cores 1 --memory 1g]
    python scripts/cluster.py status --dir /tmp/spotrec-cluster
    python scripts/cluster.py stop --dir /tmp/spotrec-cluster

``start`` prints the master URL (``spark://127.0.0.1:PORT``) on its last line; submit with
``deploy/spark-submit/submit.sh`` or ``spark-submit --master <url> ...``.

The tests import this file (``tests/test_cluster.py``, ``tests/test_faults.py``) through
:func:`cluster_fixture`, which starts one cluster per test session and always stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
STATE_FILE = "cluster.json"
WORKER_TIMEOUT_S = 30


def spark_home() -> Path:
    """The Spark distribution bundled in the installed pyspark (holds ``bin/spark-class``, ``jars/``)."""
    from pyspark.find_spark_home import _find_spark_home  # type: ignore[import-not-found]

    return Path(_find_spark_home())


def spark_bin(name: str) -> str:
    """Path of a Spark launcher script (``spark-class``, ``spark-submit``) of the installed pyspark."""
    return str(spark_home() / "bin" / name)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_env(python: str = sys.executable) -> dict[str, str]:
    """Environment of the daemons: loopback only, small daemon heaps, fast dead-worker detection."""
    env = dict(os.environ)
    env.update(
        {
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_MASTER_HOST": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": "256m",
            # Master and workers must agree on spark.worker.timeout: workers heartbeat every timeout/4 and
            # the master drops a worker silent for a whole timeout. 30 s (not 60) so a frozen worker is
            # noticed sooner; a killed one is noticed at once, when its connection closes.
            "SPARK_MASTER_OPTS": f"-Dspark.worker.timeout={WORKER_TIMEOUT_S} -Duser.timezone=UTC",
            "SPARK_WORKER_OPTS": f"-Dspark.worker.timeout={WORKER_TIMEOUT_S} -Duser.timezone=UTC",
            "PYSPARK_PYTHON": python,
            "PYSPARK_DRIVER_PYTHON": python,
        }
    )
    return env


@dataclass
class Daemon:
    """One started JVM: its role, PID (also its process-group id) and log file."""

    role: str
    pid: int
    log: str
    port: int = 0


@dataclass
class LocalCluster:
    """A running standalone cluster, as recorded in ``<workdir>/cluster.json``."""

    workdir: str
    master_port: int
    master_webui_port: int
    cores: int
    memory: str
    python: str
    master: Daemon | None = None
    workers: list[Daemon | None] = field(default_factory=list)

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def webui_url(self) -> str:
        return f"http://127.0.0.1:{self.master_webui_port}"

    # -- state file ---------------------------------------------------------------------------
    def save(self) -> None:
        Path(self.workdir, STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, workdir: str | Path) -> LocalCluster:
        data = json.loads(Path(workdir, STATE_FILE).read_text())
        master = Daemon(**data.pop("master")) if data.get("master") else None
        workers = [Daemon(**w) if w else None for w in data.pop("workers")]
        return cls(**data, master=master, workers=workers)

    # -- status -------------------------------------------------------------------------------
    def status(self) -> dict:
        """The master's JSON status (``aliveworkers``, ``workers``, ``activeapps``, ...)."""
        with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=5) as resp:
            return dict(json.loads(resp.read()))

    def alive_workers(self) -> int:
        try:
            status = self.status()
        except OSError:
            return 0
        return sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")

    def wait_for_workers(self, n: int, timeout_s: float = 90.0) -> None:
        """Block until the master lists ``n`` alive workers; raise with the logs' tails otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.alive_workers() == n:
                return
            for d in [self.master, *self.workers]:
                if d is not None and not pid_alive(d.pid):
                    raise RuntimeError(f"{d.role} (pid {d.pid}) exited:\n{tail(d.log)}")
            time.sleep(0.5)
        logs = "\n".join(f"--- {d.role}\n{tail(d.log)}" for d in [self.master, *self.workers] if d)
        raise TimeoutError(f"{self.alive_workers()} of {n} workers alive after {timeout_s:.0f}s\n{logs}")

    # -- processes ----------------------------------------------------------------------------
    def start_master(self) -> None:
        log = Path(self.workdir, "master.log")
        cmd = [
            spark_bin("spark-class"),
            MASTER_CLASS,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.master_port),
            "--webui-port",
            str(self.master_webui_port),
        ]
        self.master = Daemon("master", _spawn(cmd, log, daemon_env(self.python)), str(log), self.master_port)
        self.save()

    def start_worker(self, index: int) -> Daemon:
        """Start worker ``index`` (0-based; restarts it when it was killed) and record its PID."""
        while len(self.workers) <= index:
            self.workers.append(None)
        current = self.workers[index]
        if current is not None and pid_alive(current.pid):
            return current
        work = Path(self.workdir, f"worker-{index}")
        work.mkdir(parents=True, exist_ok=True)
        log = Path(self.workdir, f"worker-{index}.log")
        webui = free_port()
        cmd = [
            spark_bin("spark-class"),
            WORKER_CLASS,
            self.master_url,
            "--host",
            "127.0.0.1",
            "--cores",
            str(self.cores),
            "--memory",
            self.memory,
            "--work-dir",
            str(work),
            "--webui-port",
            str(webui),
        ]
        daemon = Daemon(f"worker-{index}", _spawn(cmd, log, daemon_env(self.python)), str(log), webui)
        self.workers[index] = daemon
        self.save()
        return daemon

    def kill_worker(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Kill worker ``index`` and the executors it launched (its process group): a lost machine."""
        daemon = self.workers[index]
        if daemon is None:
            return
        kill_group(daemon.pid, sig)
        wait_gone(daemon.pid)
        self.workers[index] = None
        self.save()

    def ensure_workers(self, n: int, timeout_s: float = 90.0) -> None:
        """Restart any killed worker among the first ``n`` and wait until all ``n`` are registered."""
        for i in range(n):
            self.start_worker(i)
        self.wait_for_workers(n, timeout_s)

    def stop(self) -> None:
        """Stop every daemon this cluster started (workers first), by PID: TERM, then KILL after 15 s."""
        daemons = [d for d in [*self.workers, self.master] if d is not None]
        for d in daemons:
            kill_group(d.pid, signal.SIGTERM)
        for d in daemons:
            if not wait_gone(d.pid, 15.0):
                kill_group(d.pid, signal.SIGKILL)
                wait_gone(d.pid, 5.0)
        self.workers = [None] * len(self.workers)
        self.master = None
        self.save()


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> int:
    """Start ``cmd`` in a new session (its own process group) with stdout+stderr to ``log``."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    return proc.pid


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def kill_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (the daemon and the executors it launched)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def wait_gone(pid: int, timeout_s: float = 15.0) -> bool:
    """Wait until ``pid`` has exited (reaping it if it is our child); True when it is gone."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def tail(path: str, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_cluster(
    workdir: str | Path,
    *,
    workers: int = 2,
    cores: int = 1,
    memory: str = "1g",
    python: str = sys.executable,
    timeout_s: float = 120.0,
) -> LocalCluster:
    """Start a master and ``workers`` workers on 127.0.0.1 and wait until all are registered.

    Args:
        workdir: folder for the state file, the daemons' logs and the workers' work dirs.
        workers: number of worker JVMs.
        cores: cores each worker offers (one executor per worker with the default submit settings).
        memory: memory each worker offers to executors (``spark.executor.memory`` must fit in it).
        python: the Python executors run PySpark workers with (the venv's, so numpy/pandas are there).
        timeout_s: how long to wait for the workers to register before failing (and stopping them).

    Returns:
        The running cluster; call :meth:`LocalCluster.stop` (or ``cluster.py stop``) to end it.
    """
    Path(workdir).mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(
        workdir=str(Path(workdir).resolve()),
        master_port=free_port(),
        master_webui_port=free_port(),
        cores=cores,
        memory=memory,
        python=python,
    )
    try:
        cluster.start_master()
        for i in range(workers):
            cluster.start_worker(i)
        cluster.wait_for_workers(workers, timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def cluster_fixture(tmp_path_factory) -> Iterator[LocalCluster]:  # type: ignore[no-untyped-def]
    """Body of a session-scoped pytest fixture: one cluster shared by every module that uses it.

    Each test module wraps this in its own ``@pytest.fixture(scope="session")``; pytest then runs
    one fixture instance per module, so the cluster is reference-counted here and stopped when the
    last user finishes (and by ``atexit`` should pytest be interrupted).
    """
    global _shared, _users
    if _shared is None:
        import atexit

        _shared = start_cluster(tmp_path_factory.mktemp("spark-cluster"))
        atexit.register(_stop_shared)
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            _stop_shared()


_shared: LocalCluster | None = None
_users = 0


def _stop_shared() -> None:
    global _shared
    if _shared is not None:
        cluster, _shared = _shared, None
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", required=True, help="state, logs and work dirs of the cluster")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--memory", default="1g")
    args = parser.parse_args(argv)
    if args.action == "start":
        cluster = start_cluster(args.dir, workers=args.workers, cores=args.cores, memory=args.memory)
        print(f"master UI {cluster.webui_url}; logs in {cluster.workdir}")
        print(cluster.master_url)
    elif args.action == "status":
        cluster = LocalCluster.load(args.dir)
        print(json.dumps(cluster.status(), indent=2))
    else:
        LocalCluster.load(args.dir).stop()
        print("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
