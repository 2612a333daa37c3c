from pathlib import Path

import pytest

from bench.profile import category, shares

LOOP = "_run (asyncio/events.py:80)"
HANDLER = "respond (services/responder/app.py:64)"


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        ([LOOP, HANDLER, "_execute (sqlalchemy/engine/base.py:1494)"], "sqlalchemy"),
        ([LOOP, HANDLER], "specstress"),
        ([LOOP, "stable_id (specstress/ids.py:24)", "iterencode (json/encoder.py:258)"],
         "json (stdlib)"),
        ([LOOP, "create_task (asyncio/base_events.py:436)"], "event loop (asyncio)"),
        ([LOOP, "randbytes (random.py:812)"], "other stdlib"),
        # a socket write is named by the library that asked for it, not by asyncio
        ([LOOP, "fetch (asyncpg/prepared_stmt.py:177)", "write (asyncio/selector_events.py:1057)"],
         "socket writes (asyncpg)"),
        ([LOOP, "_flusher (nats/aio/client.py:2363)",
          "writelines (asyncio/transports.py:123)", "write (asyncio/selector_events.py:1057)"],
         "socket writes (nats)"),
        ([LOOP, "_read_ready__data_received (asyncio/selector_events.py:995)"],
         "socket reads (other)"),
    ],
)  # fmt: skip
def test_a_sample_is_put_down_to_the_library_of_its_innermost_frame(
    stack: list[str], expected: str
) -> None:
    assert category(stack) == expected


def test_shares_weigh_stacks_by_their_samples_and_skip_broken_lines(tmp_path: Path) -> None:
    profile = tmp_path / "raw.txt"
    profile.write_text(
        f"{LOOP};{HANDLER} 3\n"
        f"{LOOP};execute (sqlalchemy/engine/base.py:1494) 1\n"
        # a frame name holding a line break comes as two lines, the count on the second
        f"{LOOP};<module> (first half\nof a name);iterencode (json/encoder.py:258) 4\n"
    )
    assert shares(profile) == {"specstress": 0.375, "sqlalchemy": 0.125, "json (stdlib)": 0.5}
