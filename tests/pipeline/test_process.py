import subprocess
import sys

SETTLE_AND_REPORT = """
import gc
from specstress.pipeline import process
survivor = [object() for _ in range(1000)]
process.settle_garbage_collector()
print(gc.get_threshold()[0], gc.get_freeze_count() >= len(survivor))
"""


def test_settling_freezes_what_is_alive_and_raises_the_young_threshold() -> None:
    # a process of its own: freezing is for good, and the test runner's collector stays as is
    done = subprocess.run(
        [sys.executable, "-c", SETTLE_AND_REPORT], capture_output=True, text=True, check=True
    )
    threshold, frozen = done.stdout.split()
    assert int(threshold) == 100_000
    assert frozen == "True"
