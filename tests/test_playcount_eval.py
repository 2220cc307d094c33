"""benchmarks/playcount_eval.py: anyone's play-count file scored through the pipeline's reader specs.

A tiny Echo Nest Taste Profile file (``user \\t song \\t count``, no header) with planted structure: two
listener groups with disjoint favourite songs, the larger group's songs the most played. Popularity
recommends the larger group's songs to everyone, so it scores nothing for the smaller group; ALS
recovers the groups. A missing file or a file the reader rejects ends in one line and exit code 2.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import playcount_eval

SMALL_GROUP, LARGE_GROUP, SONGS_PER_GROUP, HEARD = 12, 24, 10, 8


def taste_profile_file(path: Path) -> Path:
    """Users of group ``a`` (12) and ``b`` (24) each play 8 of their group's 10 songs, 1-30 times."""
    rng = random.Random(5)
    lines = []
    for group, size in (("a", SMALL_GROUP), ("b", LARGE_GROUP)):
        songs = [f"SO{group.upper()}{j:02d}XYZ12A8C13{j:04d}" for j in range(SONGS_PER_GROUP)]
        for u in range(size):
            user = f"{group}{u:03d}b80344d063b5ccb3212f76538f3d9e43d87"
            for song in rng.sample(songs, HEARD):
                lines.append(f"{user}\t{song}\t{rng.randint(1, 30)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def table_rows(out: str) -> dict[str, list[str]]:
    """The mean table printed last: model name -> its cells."""
    rows: dict[str, list[str]] = {}
    for line in out[out.rindex("Mean over seeds") :].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("model",) and not cells[0].startswith("-"):
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow  # the whole benchmark end-to-end: 336 s at load average 18 on the 2 shared cores
def test_als_beats_popularity_on_planted_taste_profile(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = taste_profile_file(tmp_path / "train_triplets.txt")
    argv = [
        *("--source", f"play_counts:generic_play_counts={path}"),
        *("--option", "header=false", "--option", "delimiter=\\t"),
        *("--map", "user_id=0", "--map", "track_id=1", "--map", "play_count=2"),
        *("--ranks", "4", "--regs", "0.05", "--alphas", "1", "--iters", "8", "--solvers", "mllib"),
        *("--implicit-regs", "", "--checkpoint-dir", str(tmp_path / "ckpt")),
    ]
    assert playcount_eval.main(argv, spark=spark) == 0
    out = capsys.readouterr().out
    n_pairs = (SMALL_GROUP + LARGE_GROUP) * HEARD
    density = n_pairs / ((SMALL_GROUP + LARGE_GROUP) * 2 * SONGS_PER_GROUP)
    assert (
        f"generic_play_counts {path}: 36 users, 20 items, {n_pairs} non-zeros (user, item) counts, "
        f"density {density:.4%}"
    ) in out
    # 8 heard songs per user, round_half_up(8 * 0.2) = 2 held out each.
    assert f"seed 42: {n_pairs - 2 * 36} train pairs, {2 * 36} held out" in out
    rows = table_rows(out)
    assert list(rows) == ["popularity", "cooccurrence", "spark mllib r4 l0.05 a1"]
    ndcg = {name: float(cells[2]) for name, cells in rows.items()}
    # Popularity gives the small group the large group's songs: no hit for a third of the users.
    assert ndcg["spark mllib r4 l0.05 a1"] > 1.3 * ndcg["popularity"]
    assert ndcg["spark mllib r4 l0.05 a1"] > 0.6
    # recall@10: every user's 2 held-out songs are among their 4 unheard in-group songs, all in ALS's top 10.
    assert float(rows["spark mllib r4 l0.05 a1"][5]) == pytest.approx(1.0)


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope" / "train_triplets.txt"
    code = playcount_eval.main(["--source", f"play_counts:generic_play_counts={missing}"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == f"playcount_eval: error: no such file or folder: {missing}\n"
    assert captured.out == ""


def test_rejected_file_is_one_line(spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = taste_profile_file(tmp_path / "train_triplets.txt")
    code = playcount_eval.main(["--source", f"play_counts:hetrec={path}"], spark=spark)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"playcount_eval: error: hetrec: file:{path}:1 is not in this reader's format")
    assert err.count("\n") == 1
