"""`bus.target_in_flight`: what is derived from it, and the keys it replaced or bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from specstress.config import Config, load_config
from specstress.contracts import ResponseRequested
from specstress.errors import InputError
from specstress.pipeline.bus import Consumer, consumers
from specstress.pipeline.service import http_connections, pool_size
from tests.paths import DEMO_CONFIG


def _load(tmp_path: Path, **bus: Any) -> Config:
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["bus"] = {**data.get("bus", {}), **bus}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_the_default_keeps_the_demo_s_settings(tmp_path: Path) -> None:
    bus = _load(tmp_path).bus
    assert bus.target_in_flight == 256
    assert Consumer("responder", ResponseRequested).config(bus).max_ack_pending == 256
    assert 10 <= pool_size(bus) <= 40


def test_everything_follows_a_larger_target(tmp_path: Path) -> None:
    bus = _load(tmp_path, target_in_flight=3000).bus
    for consumer in consumers():
        assert consumer.config(bus).max_ack_pending == 3000
    # the responder's three consumers may each have all their messages calling at once
    assert http_connections(bus, "responder") == 3000 * len(consumers("responder"))
    # the pool grows with the target, but never past what a fleet can open
    assert pool_size(bus) == 40
    assert pool_size(_load(tmp_path, target_in_flight=240).bus) == 15


def test_max_ack_pending_may_only_add_room(tmp_path: Path) -> None:
    bus = _load(tmp_path, target_in_flight=100, max_ack_pending=5000).bus
    assert Consumer("responder", ResponseRequested).config(bus).max_ack_pending == 5000
    with pytest.raises(InputError, match=r"max_ack_pending \(50\) is below target_in_flight"):
        _load(tmp_path, target_in_flight=100, max_ack_pending=50)


def test_the_removed_fetch_batch_names_its_replacement(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="fetch_batch is no longer read: set target_in_flight"):
        _load(tmp_path, fetch_batch=32)


@pytest.mark.parametrize("target", [0, -5, 100_001, "many"])
def test_a_target_out_of_range_is_refused(tmp_path: Path, target: object) -> None:
    with pytest.raises(InputError, match=r"bus\.target_in_flight"):
        _load(tmp_path, target_in_flight=target)
