"""Config loading: strict keys, resolved references, env expansion, one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from specstress.config import load_config
from specstress.errors import InputError
from tests.paths import DEMO_CONFIG


def _demo() -> dict[str, object]:
    loaded = yaml.safe_load(DEMO_CONFIG.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_demo_config_validates_with_the_roles_the_demo_needs() -> None:
    config = load_config(DEMO_CONFIG)
    assert len(config.roles.generators) >= 2
    families = {config.model(k).family for k in config.roles.targets}
    assert len(config.roles.targets) >= 6 and len(families) >= 2
    assert len(config.roles.judges) == 3
    assert config.disagreement.threshold == 1.5
    assert config.spec_for_family("aurora") is not None


def test_unknown_key_is_named_with_the_file(tmp_path: Path) -> None:
    data = _demo()
    data["disagreement"] = {"threshold": 1.5, "treshold_typo": 2}
    path = _write(tmp_path, data)
    with pytest.raises(
        InputError, match=r"config\.yaml: unknown key 'disagreement\.treshold_typo'"
    ):
        load_config(path)


def test_dangling_model_reference_is_reported(tmp_path: Path) -> None:
    data = _demo()
    roles = data["roles"]
    assert isinstance(roles, dict)
    roles["judges"] = ["judge-strict", "no-such-judge"]
    with pytest.raises(InputError, match=r"roles\.judges: unknown model 'no-such-judge'"):
        load_config(_write(tmp_path, data))


def test_bad_key_characters_are_rejected(tmp_path: Path) -> None:
    data = _demo()
    data["model_sets"] = {"all sets": ["*"]}
    with pytest.raises(InputError, match="model_sets"):
        load_config(_write(tmp_path, data))


def test_environment_references_expand_and_missing_ones_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.setenv("SIM_HOST_FOR_TEST", "http://10.1.2.3:9/v1")
    data = _demo()
    data["nats_url"] = "${NATS_FOR_TEST:-nats://default:4222}"
    models = data["models"]
    assert isinstance(models, list)
    models[0]["base_url"] = "${SIM_HOST_FOR_TEST}"
    config = load_config(_write(tmp_path, data))
    assert config.nats_url == "nats://default:4222"
    assert config.models[0].base_url == "http://10.1.2.3:9/v1"
    models[0]["base_url"] = "${UNSET_VARIABLE_FOR_TEST}"
    with pytest.raises(InputError, match="UNSET_VARIABLE_FOR_TEST"):
        load_config(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "mapping"), (b"- a\n- b\n", "mapping"), (b"key: [unclosed\n", "not valid YAML")],
)
def test_malformed_files_give_one_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_model_set_members_resolve_keys_families_and_everyone() -> None:
    config = load_config(DEMO_CONFIG)
    available = [("aurora-cautious", "aurora"), ("borealis-candid", "borealis"), ("x", "aurora")]
    assert config.model_set_members("all", available) == ["aurora-cautious", "borealis-candid", "x"]
    assert config.model_set_members("aurora", available) == ["aurora-cautious", "x"]
    assert config.model_set_members("cautious-vs-deferential", available) == ["aurora-cautious"]
