import json
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from spotrec.config import (
    DEPRECATED_SECTIONS,
    SEED_OFFSETS,
    Config,
    GenerateConfig,
    RlConfig,
    RnnConfig,
    StorageConfig,
    WeeklyConfig,
    derive_seed,
    load_config,
)
from spotrec.errors import ConfigError

DEMO = Path(__file__).resolve().parents[1] / "conf" / "demo.yaml"


def test_yaml_and_overrides_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("weekly:\n  rank: 16\nmatrix:\n  half_life_days: 30\n")
    cfg = load_config(path, ["weekly.rank=64", "storage.root=/data/wh", "matrix.as_of=2026-01-01"])
    assert cfg.weekly.rank == 64
    assert cfg.matrix.half_life_days == 30.0 and isinstance(cfg.matrix.half_life_days, float)
    assert cfg.storage.root == "/data/wh"
    assert cfg.matrix.as_of == "2026-01-01"  # YAML reads a date; a string field keeps its ISO text


def test_unknown_key_fails_at_load_with_its_path_and_the_known_keys() -> None:
    with pytest.raises(ConfigError, match=r"weekly\.rnak: unknown key; known keys: alpha, .*rank, ") as err:
        load_config(None, ["weekly.rnak=3"])
    assert "eval_k" in str(err.value)  # the merged ALS + Discover Weekly fields
    with pytest.raises(ConfigError, match=r"ingest\.sources\[0\]\.typo: unknown key; known keys: format, kind"):
        load_config(None, ["ingest.sources=[{kind: events, typo: 1}]"])
    with pytest.raises(ConfigError, match=r"(?m)^  nope: unknown key; known keys: generate, ingest, logging, "):
        load_config(None, ["nope.x=1"])


def test_bad_choice_fails_at_load_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"rnn\.method: Input should be 'cbow_ns' or 'sg_hs' \(got 'cbow'\)"):
        load_config(DEMO, ["rnn.method=cbow"])
    with pytest.raises(ConfigError, match=r"weekly\.intermediate_storage_level: .*\(got 'MEMORY'\)"):
        load_config(None, ["weekly.intermediate_storage_level=MEMORY"])
    assert load_config(None, ["weekly.intermediate_storage_level=MEMORY_ONLY"]).weekly.intermediate_storage_level == (
        "MEMORY_ONLY"
    )


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["weekly.rank=many", "rnn.validation_fraction=1.0", "rnn.window=0", "logging.level=LOUD"])
    message = str(err.value)
    assert "(4 problems)" in message
    assert "weekly.rank: Input should be a valid integer" in message
    assert "rnn.validation_fraction: Input should be less than 1" in message
    assert "rnn.window: Input should be greater than or equal to 1" in message
    assert "logging.level: Input should be" in message


def test_yaml_boolean_for_a_string_says_to_quote(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("ingest:\n  sources:\n    - kind: playlists\n      format: yes\n      path: /data/yes\n")
    with pytest.raises(ConfigError, match=r"ingest\.sources\[0\]\.format: expected a string .*quote the value"):
        load_config(path)
    path.write_text("ingest:\n  sources:\n    - kind: playlists\n      format: 'yes'\n      path: /data/yes\n")
    assert load_config(path).ingest.sources[0].format == "yes"
    with pytest.raises(ConfigError, match=r"storage\.root: expected a string"):
        load_config(None, ["storage.root=on"])
    # Spark settings are strings too, but a YAML boolean there means Spark's own "true" / "false".
    assert load_config(None, ["spark.conf={spark.sql.adaptive.enabled: true}"]).spark.conf == {
        "spark.sql.adaptive.enabled": "true"
    }


def test_deprecated_sections_land_in_the_new_ones(caplog: pytest.LogCaptureFixture) -> None:
    assert DEPRECATED_SECTIONS == {"als": "weekly", "discover": "weekly", "discovery": "rnn", "playlists": "rl"}
    with caplog.at_level(logging.WARNING, logger="spotrec.config"):
        cfg = load_config(
            None, ["als.rank=64", "discover.playlist_size=5", "discovery.window=3", "playlists.episodes=9"]
        )
    assert (cfg.weekly.rank, cfg.weekly.playlist_size, cfg.rnn.window, cfg.rl.episodes) == (64, 5, 3, 9)
    warnings = [r.getMessage() for r in caplog.records if r.name == "spotrec.config"]
    assert "config section 'als' is deprecated: use 'weekly' (e.g. weekly.rank)" in warnings
    assert len([w for w in warnings if "deprecated: use" in w]) == 4  # one per old section
    assert "seed" not in cfg.weekly.model_fields_set  # still derived from the top-level seed


def test_same_key_under_old_and_new_section_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"weekly\.rank and als\.rank both set weekly\.rank"):
        load_config(None, ["als.rank=64", "weekly.rank=16"])
    # Different keys merge.
    cfg = load_config(None, ["als.rank=64", "weekly.alpha=2"])
    assert (cfg.weekly.rank, cfg.weekly.alpha) == (64, 2.0)


def test_derived_seeds() -> None:
    cfg = load_config(None)
    assert (cfg.seed, cfg.generate.seed, cfg.weekly.seed, cfg.rnn.seed, cfg.rl.seed) == (42, 42, 7, 11, 1)
    assert SEED_OFFSETS == {"generate": 0, "weekly": -35, "rnn": -31, "rl": -41}
    other = load_config(None, ["seed=100"])
    seeds = (other.generate.seed, other.weekly.seed, other.rnn.seed, other.rl.seed)
    assert seeds == (100, 65, 69, 59)
    assert seeds != (42, 7, 11, 1)
    assert derive_seed(0, "rl") == 2**31 - 41  # stays a non-negative 31-bit seed
    # The derivation follows the top-level seed when it changes, and when a section is replaced.
    cfg.seed = 100
    assert cfg.weekly.seed == 65
    cfg.weekly = cfg.weekly.model_copy(update={"rank": 4})
    assert (cfg.weekly.rank, cfg.weekly.seed) == (4, 65)


def test_an_explicit_section_seed_wins(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="spotrec.config"):
        cfg = load_config(None, ["seed=100", "rl.seed=5"])
    assert (cfg.rl.seed, cfg.rnn.seed) == (5, 69)
    assert any("rl.seed is set explicitly" in r.getMessage() for r in caplog.records)


def test_standalone_sections_keep_their_own_defaults() -> None:
    assert (GenerateConfig().seed, WeeklyConfig().seed, RnnConfig().seed, RlConfig().seed) == (42, 7, 11, 1)
    assert WeeklyConfig(rank=4).rank == 4
    assert RnnConfig(vector_size=8).vector_size == 8
    assert RlConfig(episodes=5).episodes == 5
    cfg = Config(storage=StorageConfig(root="/tmp/wh"))
    assert cfg.storage.root == "/tmp/wh" and cfg.rl.seed == 1
    with pytest.raises(ValidationError):
        RnnConfig(method="cbow")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        RnnConfig(vector_size=0)
    rnn = RnnConfig()
    with pytest.raises(ValidationError):  # assignments are validated too
        rnn.rnn_cell = "rnn"  # type: ignore[assignment]


def test_rl_config_round_trips_through_a_checkpoint_dict() -> None:
    cfg = RlConfig(episodes=5, q_hidden=[8])
    data = json.loads(json.dumps(cfg.to_dict()))
    assert RlConfig.from_dict(data | {"removed_option": 1}) == cfg


def test_to_dict_is_json() -> None:
    data = json.loads(json.dumps(load_config(DEMO).to_dict()))
    assert data["weekly"]["rank"] == 8 and data["rl"]["seed"] == 1
    assert set(data) == {
        "seed",
        "storage",
        "spark",
        "generate",
        "ingest",
        "matrix",
        "weekly",
        "rnn",
        "rl",
        "logging",
        "tracking",
    }


def test_demo_config_loads_with_its_values(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="spotrec.config"):
        cfg = load_config(DEMO)
    assert not caplog.records  # no deprecated names or seeds left in the demo
    assert (cfg.weekly.rank, cfg.weekly.reg_param, cfg.weekly.alpha) == (8, 0.05, 1.0)
    assert (cfg.generate.users, cfg.generate.weeks, cfg.generate.partitions, cfg.generate.seed) == (1000, 6, 4, 42)
    assert (cfg.rnn.rnn_epochs, cfg.rl.episodes, cfg.rl.eval_sessions) == (10, 1000, 2000)
    assert (cfg.spark.master, cfg.spark.shuffle_partitions) == ("local[*]", 4)
    assert cfg.storage.artifacts_dir == "warehouse/_artifacts"
    assert (cfg.weekly.seed, cfg.rnn.seed, cfg.rl.seed) == (7, 11, 1)
    # Untouched defaults are today's.
    assert (cfg.weekly.max_iter, cfg.weekly.playlist_size, cfg.weekly.eval_k) == (10, 30, 10)
    assert (cfg.rnn.method, cfg.rnn.rnn_loss, cfg.rl.q_action_inputs) == ("cbow_ns", "softmax", "predictions")


def test_field_docstrings_are_kept() -> None:
    assert "ALS-WR" in (WeeklyConfig.model_fields["reg_param"].description or "")
    assert "Schema" in (StorageConfig.model_fields["schema"].description or "")
    assert "QNetwork" in (RlConfig.model_fields["q_reward_prior"].description or "")


def test_missing_file_and_bad_top_level_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"must look like section\.key=value"):
        load_config(None, ["weekly.rank"])
    with pytest.raises(ConfigError, match=r"--set weekly\.rank\.x: weekly\.rank is not a section"):
        load_config(None, ["weekly.rank=3", "weekly.rank.x=1"])
