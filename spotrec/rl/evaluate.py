"""Simulation metrics of playlist policies, with 95% confidence intervals, in one or more worlds.

A *world* is a response model: the learned user model (what the agent was trained in) or, on the
synthetic world, the true response model. Reporting both shows how much of a policy's gain in the learned
simulator survives contact with the (simulated) truth, the paper's main sanity check.

Every policy plays the same sessions with the same per-session seeds (common random numbers), so
differences between policies are not noise from different draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from spotrec.config import RlConfig
from spotrec.rl.env import PlaylistEnv, ResponseModel, SessionSpec
from spotrec.rl.features import FeatureLayout
from spotrec.rl.policies import Policy

METRICS = ("session_reward", "completion_rate", "skip_rate", "session_length")
"""Per session: total reward; completed / played; early skips / played; tracks played."""


def run_sessions(env: PlaylistEnv, policy: Policy, sessions: Sequence[SessionSpec], seed: int) -> pd.DataFrame:
    """Play every session once; one row per session with the metrics of :data:`METRICS`."""
    rows = []
    for i, session in enumerate(sessions):
        obs, _ = env.reset(seed=seed + i, options={"session": session})
        rng = np.random.default_rng(seed + i)
        done, total, played, completed, skipped = False, 0.0, 0, 0, 0
        while not done:
            action = policy.act(obs, env.state(), rng)
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            total += reward
            played += 1
            completed += info["outcome"] == "complete"
            skipped += info["outcome"] == "skip"
        rows.append(
            {
                "session": i,
                "user_id": session.user_id,
                "session_reward": total,
                "completion_rate": completed / played,
                "skip_rate": skipped / played,
                "session_length": float(played),
            }
        )
    return pd.DataFrame(rows)


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and normal-approximation confidence interval of the mean (zero width for one value).

    The normal quantile (1.96 at 95%) is accurate from about 30 sessions, the smallest evaluation run here.
    """
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean
    half = float(NormalDist().inv_cdf(0.5 + level / 2) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def summarize(per_session: pd.DataFrame) -> pd.DataFrame:
    """One row per metric: mean, ci_low, ci_high (95%), n."""
    rows = []
    for metric in METRICS:
        mean, low, high = mean_ci(per_session[metric].to_numpy())
        rows.append({"metric": metric, "mean": mean, "ci_low": low, "ci_high": high, "n": len(per_session)})
    return pd.DataFrame(rows)


def compare_policies(
    policies: Sequence[Policy],
    worlds: Mapping[str, ResponseModel],
    sessions: Sequence[SessionSpec],
    cfg: RlConfig,
    layout: FeatureLayout,
    seed: int | None = None,
) -> pd.DataFrame:
    """Every policy in every world on the same sessions.

    Returns:
        policy, world, metric, mean, ci_low, ci_high, n; one row per (policy, world, metric).
    """
    seed = cfg.seed if seed is None else seed
    frames = []
    for world, response in worlds.items():
        env = PlaylistEnv(sessions, response, cfg, layout)
        for policy in policies:
            summary = summarize(run_sessions(env, policy, sessions, seed))
            summary.insert(0, "world", world)
            summary.insert(0, "policy", policy.name)
            frames.append(summary)
    return pd.concat(frames, ignore_index=True)


def sim_to_real(evaluation: pd.DataFrame, sim: str, real: str) -> tuple[float, float] | None:
    """How well the simulator ``sim`` ranks the policies as ``real`` does: the Spearman rank correlation of
    the policies' mean session rewards in the two worlds, and the mean of (sim - real) reward over the
    policies (how optimistic the simulator is). None with fewer than three policies in both."""
    reward = evaluation[evaluation["metric"] == "session_reward"].pivot(index="policy", columns="world", values="mean")
    if sim not in reward or real not in reward:
        return None
    both = reward[[sim, real]].dropna()
    if len(both) < 3:
        return None
    rho = float(both[sim].rank().corr(both[real].rank()))
    return rho, float((both[sim] - both[real]).mean())


def comparison_table(evaluation: pd.DataFrame) -> str:
    """:func:`compare_policies` output as aligned text: one row per policy, per world the mean session reward
    with its 95% interval, the skip rate and the session length; best session reward first (first world).
    """
    worlds = list(dict.fromkeys(evaluation["world"]))
    policies = list(dict.fromkeys(evaluation["policy"]))
    by = evaluation.set_index(["policy", "world", "metric"])
    first = worlds[0]
    policies.sort(key=lambda p: -float(by.loc[(p, first, "session_reward"), "mean"]))
    n = int(evaluation["n"].max())
    header = f"{'policy':20}" + "".join(f"  {w + ' reward [95% CI]':>28} {'skip':>6} {'length':>6}" for w in worlds)
    lines = [f"policy comparison, {n:,} sessions per policy and world", header]
    for policy in policies:
        cells = []
        for w in worlds:
            r = by.loc[(policy, w, "session_reward")]
            reward = f"{r['mean']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
            skip = by.loc[(policy, w, "skip_rate"), "mean"]
            length = by.loc[(policy, w, "session_length"), "mean"]
            cells.append(f"  {reward:>28} {skip:6.3f} {length:6.2f}")
        lines.append(f"{policy:20}" + "".join(cells))
    if len(worlds) > 1 and (check := sim_to_real(evaluation, worlds[0], worlds[1])) is not None:
        lines.append(
            f"sim-to-real: Spearman rank correlation of the policies' rewards {check[0]:.3f} "
            f"({worlds[0]} vs {worlds[1]}), mean {worlds[0]} - {worlds[1]} reward {check[1]:+.2f}"
        )
    return "\n".join(lines)
