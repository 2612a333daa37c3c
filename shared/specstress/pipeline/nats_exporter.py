"""Prometheus metrics from nats-server's monitoring endpoints (`/varz`, `/jsz`).

nats-server serves JSON, not Prometheus text, and no packaged exporter installs on the
machines this project is built on, so this small one reads the two endpoints on every scrape.
It runs beside the server (in the Docker stack it shares the server's network, because the
monitoring port listens on the loopback only):

    python -m specstress.pipeline.nats_exporter --monitor-url http://127.0.0.1:8222 --port 7777

Consumers carry the `service` that owns them (from the durable's name, see `bus.Consumer`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["PREFIX", "TIMEOUT_SECONDS", "NatsCollector", "main"]

log = logging.getLogger("specstress.pipeline.nats_exporter")
PREFIX = "specstress_nats"
TIMEOUT_SECONDS = 5.0


class NatsCollector(Collector):
    def __init__(self, monitor_url: str) -> None:
        self._client = httpx.Client(base_url=monitor_url.rstrip("/"), timeout=TIMEOUT_SECONDS)

    def _get(self, path: str) -> dict[str, Any]:
        reply = self._client.get(path)
        reply.raise_for_status()
        body: dict[str, Any] = reply.json()
        return body

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_up", "1 when the NATS monitoring endpoints answered.")
        try:
            varz = self._get("/varz")
            jsz = self._get("/jsz?accounts=true&streams=true&consumers=true")
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("NATS monitoring did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _server_metrics(varz)
        yield from _jetstream_metrics(jsz)


def _server_metrics(varz: dict[str, Any]) -> Iterator[Metric]:
    connections = GaugeMetricFamily(f"{PREFIX}_connections", "Client connections open now.")
    connections.add_metric([], varz.get("connections", 0))
    yield connections
    for key, name, doc in (
        ("in_msgs", "received_messages_total", "Messages the server received."),
        ("out_msgs", "sent_messages_total", "Messages the server sent."),
        ("in_bytes", "received_bytes_total", "Bytes the server received."),
        ("out_bytes", "sent_bytes_total", "Bytes the server sent."),
        ("slow_consumers", "slow_consumers_total", "Clients cut off for reading too slowly."),
    ):
        counter = CounterMetricFamily(f"{PREFIX}_{name.removesuffix('_total')}", doc)
        counter.add_metric([], varz.get(key, 0))
        yield counter


def _jetstream_metrics(jsz: dict[str, Any]) -> Iterator[Metric]:
    api_errors = CounterMetricFamily(
        f"{PREFIX}_jetstream_api_errors", "JetStream API requests that failed (e.g. refused)."
    )
    api_errors.add_metric([], jsz.get("api", {}).get("errors", 0))
    yield api_errors
    sync_always = GaugeMetricFamily(
        f"{PREFIX}_jetstream_sync_always",
        "1 when JetStream fsyncs every write (sync_interval: always).",
    )
    sync_always.add_metric([], 1 if jsz.get("config", {}).get("sync_always") else 0)
    yield sync_always

    stream_labels = ["stream"]
    stream_messages = GaugeMetricFamily(
        f"{PREFIX}_stream_messages", "Messages stored in the stream.", labels=stream_labels
    )
    stream_bytes = GaugeMetricFamily(
        f"{PREFIX}_stream_bytes", "Bytes stored in the stream.", labels=stream_labels
    )
    consumer_labels = ["stream", "consumer", "service"]
    gauges = {
        "num_pending": GaugeMetricFamily(
            f"{PREFIX}_consumer_pending_messages",
            "Messages of the consumer's subject not yet delivered.",
            labels=consumer_labels,
        ),
        "num_ack_pending": GaugeMetricFamily(
            f"{PREFIX}_consumer_ack_pending_messages",
            "Messages delivered and not yet acknowledged.",
            labels=consumer_labels,
        ),
        "num_waiting": GaugeMetricFamily(
            f"{PREFIX}_consumer_waiting_pulls",
            "Pull requests waiting for messages (idle workers).",
            labels=consumer_labels,
        ),
    }
    redelivered = GaugeMetricFamily(
        f"{PREFIX}_consumer_redelivered_messages",
        "Messages delivered more than once and not yet acknowledged.",
        labels=consumer_labels,
    )
    ack_floor = GaugeMetricFamily(
        f"{PREFIX}_consumer_ack_floor_sequence",
        "Stream sequence up to which every message is acknowledged (grows with progress).",
        labels=consumer_labels,
    )
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            name = stream["name"]
            state = stream.get("state", {})
            stream_messages.add_metric([name], state.get("messages", 0))
            stream_bytes.add_metric([name], state.get("bytes", 0))
            for consumer in stream.get("consumer_detail") or []:
                durable = consumer["name"]
                labels = [name, durable, durable.split("__", 1)[0]]
                for key, gauge in gauges.items():
                    gauge.add_metric(labels, consumer.get(key, 0))
                redelivered.add_metric(labels, consumer.get("num_redelivered", 0))
                ack_floor.add_metric(labels, consumer.get("ack_floor", {}).get("stream_seq", 0))
    yield stream_messages
    yield stream_bytes
    yield from gauges.values()
    yield redelivered
    yield ack_floor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m specstress.pipeline.nats_exporter")
    parser.add_argument("--monitor-url", default="http://127.0.0.1:8222")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve /metrics on")
    parser.add_argument("--port", type=int, default=7777)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    REGISTRY.register(NatsCollector(args.monitor_url))
    server, thread = start_http_server(args.port, addr=args.host)
    log.info("exporting %s on http://%s:%d/metrics", args.monitor_url, args.host, args.port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join()


if __name__ == "__main__":
    main()
