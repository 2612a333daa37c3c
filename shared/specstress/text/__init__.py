"""Text that crosses a trust boundary: made storable, quoted into prompts, capped; user files
read up to a size."""

from specstress.text.caps import Cuts, read_capped
from specstress.text.clean import (
    bytes_problem,
    clean,
    storable,
    text_problem,
    value_problem,
)
from specstress.text.quoting import block, quote

__all__ = [
    "Cuts",
    "block",
    "bytes_problem",
    "clean",
    "quote",
    "read_capped",
    "storable",
    "text_problem",
    "value_problem",
]
