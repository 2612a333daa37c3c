"""NATS users and their allow-lists, derived from the stage table through `bus`.

One user per service, plus `init` (creates the stream and the consumers: the topology's owner,
as the migrate job owns the schema) and `cli` (`specstress run`, `models add`, `status`).
A service may publish its own output events, fetch from and ack on its own durable consumers,
and read their info; nothing else. Anonymous connections are refused because users exist and no
`no_auth_user` is set. Passwords are never written here: the rendered server config names an
environment variable per user, which nats-server reads at start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from specstress.pipeline.bus import PUBLISHES, consumers
from specstress.pipeline.stages import STAGE_NAMES

__all__ = [
    "ACCOUNT",
    "CLI_USER",
    "INBOX",
    "INIT_USER",
    "USERS",
    "Permissions",
    "password_env",
    "permissions",
    "render_config",
    "service_permissions",
]

INIT_USER = "init"
CLI_USER = "cli"
USERS: tuple[str, ...] = (INIT_USER, CLI_USER, *STAGE_NAMES)
ACCOUNT = "SPECSTRESS"
# Replies to requests (JetStream API answers, publish acks, pulled messages) come to inboxes.
INBOX = "_INBOX.>"


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def password_env(user: str) -> str:
    """The environment variable that holds `user`'s NATS password."""
    return f"SPECSTRESS_NATS_PASSWORD_{user.upper()}"


def _publishes(component: str) -> list[str]:
    return [event.subject for event in PUBLISHES.get(component, ())]


def service_permissions(service: str, stream: str) -> Permissions:
    allowed = _publishes(service)
    for consumer in consumers(service):
        allowed += [
            f"$JS.API.CONSUMER.INFO.{stream}.{consumer.durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer.durable}",
            # ack, nak, in-progress and term all reply to the message's ack subject
            f"$JS.ACK.{stream}.{consumer.durable}.>",
        ]
    return Permissions(publish=tuple(allowed), subscribe=(INBOX,))


def permissions(stream: str) -> dict[str, Permissions]:
    """Every user's allow-lists for a stream name (`bus.stream` in the config)."""
    every_consumer = f"$JS.API.CONSUMER.INFO.{stream}.*"
    result = {
        INIT_USER: Permissions(
            publish=(
                "$JS.API.INFO",
                f"$JS.API.STREAM.INFO.{stream}",
                f"$JS.API.STREAM.CREATE.{stream}",
                f"$JS.API.STREAM.UPDATE.{stream}",
                f"$JS.API.CONSUMER.CREATE.{stream}.>",
                f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
                every_consumer,
            ),
            subscribe=(INBOX,),
        ),
        # status and `wait_until_idle` read every consumer's backlog
        CLI_USER: Permissions(publish=(*_publishes(CLI_USER), every_consumer), subscribe=(INBOX,)),
    }
    for service in STAGE_NAMES:
        result[service] = service_permissions(service, stream)
    return result


def _quoted(items: tuple[str, ...]) -> str:
    return ", ".join(f'"{item}"' for item in items)


def render_config(stream: str = "SPECSTRESS", store_dir: str = "/data") -> str:
    """nats-server configuration: JetStream with fsync on every write, the users above, and the
    monitoring port on the loopback only. Flags given to nats-server (`-a`, `-p`,
    `--http_port`) override the addresses, which is how the tests run this same text; the store
    folder cannot be overridden by a flag, hence `store_dir`."""
    lines = [
        "# Rendered by `specstress ops nats-config` from the stage table (specstress.pipeline.stages);",
        "# edit those, not this file. A test fails when the two disagree.",
        "",
        "listen: 0.0.0.0:4222",
        "# monitoring has no authentication: loopback only (the exporter shares this network)",
        "http: 127.0.0.1:8222",
        "",
        "jetstream {",
        f"  store_dir: {json.dumps(store_dir)}",
        "  # fsync every write: a lazy fsync loses acknowledged messages on an OS crash",
        "  sync_interval: always",
        "}",
        "",
        "accounts {",
        f"  {ACCOUNT}: {{",
        "    jetstream: enabled",
        "    users: [",
    ]
    for user, perms in permissions(stream).items():
        lines += [
            f"      {{user: {user}, password: ${password_env(user)}, permissions: {{",
            f"        publish: {{allow: [{_quoted(perms.publish)}]}}",
            f"        subscribe: {{allow: [{_quoted(perms.subscribe)}]}}",
            "      }}",
        ]
    lines += ["    ]", "  }", "}", ""]
    return "\n".join(lines)
