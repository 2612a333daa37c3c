"""Batch mode in the config: per-stage settings, and the bus settings batch mode relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from specstress.config import BATCH_MIN_DEFERRALS, Config, load_config
from specstress.errors import InputError
from tests.paths import DEMO_CONFIG


def _load(tmp_path: Path, **sections: Any) -> Config:
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data.update(sections)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_batch_mode_is_off_unless_a_stage_turns_it_on(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        bus={"max_ack_pending": 5000},
        batch={"classifier": {"enabled": True, "max_requests_per_batch": 5000}},
    )
    assert config.batch.for_stage("responder") is not None
    assert not config.batch.responder.enabled
    classifier = config.batch.for_stage("classifier")
    assert classifier is not None and classifier.enabled
    assert classifier.max_requests_per_batch == 5000
    # stages that are latency-sensitive have no batch mode at all
    assert config.batch.for_stage("spectrum_builder") is None
    assert config.batch.for_stage("for_stage") is None
    # both batch APIs charge half the online price unless the config says otherwise
    assert config.model("classifier").prices.batch_discount == 0.5
    assert config.model("classifier").batch_api


def test_a_batch_larger_than_the_bus_lets_wait_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        InputError,
        match=r"batch\.responder\.max_requests_per_batch \(1000\) is larger than "
        r"bus\.max_ack_pending \(256\)",
    ):
        _load(tmp_path, batch={"responder": {"enabled": True}})


def test_batch_mode_needs_room_for_a_day_of_deferrals(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=rf"bus\.max_deferrals >= {BATCH_MIN_DEFERRALS}"):
        _load(
            tmp_path,
            bus={"max_ack_pending": 1000, "max_deferrals": 50},
            batch={"compliance_judge": {"enabled": True}},
        )
    # the same bus is fine while batch mode is off
    _load(tmp_path, bus={"max_ack_pending": 1000, "max_deferrals": 50})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"responder": {"enabled": True, "max_requests_per_batch": 60_000}}, "less than or equal"),
        ({"responder": {"poll_seconds": 0}}, "greater than 0"),
        ({"aggregator": {"enabled": True}}, "unknown key 'batch.aggregator'"),
    ],
)
def test_bad_batch_settings_are_named(
    tmp_path: Path, section: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        _load(tmp_path, bus={"max_ack_pending": 100_000}, batch=section)


def test_the_batch_discount_is_a_share_of_the_price(tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["models"][0]["prices"] = {"input_per_mtok": 1.0, "batch_discount": 1.5}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"models\.0\.prices\.batch_discount"):
        load_config(path)
