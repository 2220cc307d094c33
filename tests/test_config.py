from pathlib import Path

import pytest

from spotrec.config import load_config
from spotrec.errors import ConfigError


def test_yaml_and_overrides_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("als:\n  rank: 16\nmatrix:\n  half_life_days: 30\n")
    cfg = load_config(path, ["als.rank=64", "storage.root=/data/wh", "matrix.as_of=2026-01-01"])
    assert cfg.als.rank == 64
    assert cfg.matrix.half_life_days == 30.0 and isinstance(cfg.matrix.half_life_days, float)
    assert cfg.storage.root == "/data/wh"
    assert cfg.matrix.as_of == "2026-01-01"


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"als: unknown key\(s\) \['rnak'\]"):
        load_config(None, ["als.rnak=3"])


def test_wrong_type_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"als\.rank: expected int"):
        load_config(None, ["als.rank=many"])


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
