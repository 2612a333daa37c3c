"""The value taxonomy: a tree of values in the Values-in-the-Wild `values_tree.csv` format.

Level 0 holds the individual values (their id is their name), each higher level groups the one
below it, and the top level has no parent. The version is derived from the file's bytes, so
editing the file yields a new version and results never mix two taxonomies silently.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from specstress.errors import InputError
from specstress.text import read_capped

__all__ = [
    "COLUMNS",
    "MAX_LEVEL",
    "MAX_TAXONOMY_BYTES",
    "TREE_FILE_NAME",
    "Taxonomy",
    "Value",
    "load_taxonomy",
    "sample_pairs",
]

MAX_TAXONOMY_BYTES = 50_000_000
MAX_LEVEL = 3
TREE_FILE_NAME = "values_tree.csv"
COLUMNS = (
    "cluster_id",
    "description",
    "name",
    "level",
    "parent_cluster_id",
    "pct_total_occurrences",
)
_BUILTIN_RESOURCE = "builtin_taxonomy.csv"


@dataclass(frozen=True)
class Value:
    """One node of the tree. Level-0 nodes are values; higher levels are clusters of them."""

    value_id: str
    name: str
    level: int
    parent_id: str | None
    description: str
    pct_total_occurrences: float | None


@dataclass(frozen=True)
class Taxonomy:
    """A validated value tree; `load_taxonomy` is the way to build one from a file."""

    version: str
    values: tuple[Value, ...]
    _by_id: dict[str, Value] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # frozen dataclasses only allow setting derived fields through object.__setattr__
        object.__setattr__(self, "_by_id", {v.value_id: v for v in self.values})

    def value(self, value_id: str) -> Value:
        """The node with this id; KeyError when there is none."""
        return self._by_id[value_id]

    def by_level(self, level: int) -> tuple[Value, ...]:
        return tuple(v for v in self.values if v.level == level)

    def leaves(self) -> tuple[Value, ...]:
        return self.by_level(0)

    def top_level(self) -> int:
        return max((v.level for v in self.values), default=0)

    def groups(self) -> tuple[Value, ...]:
        return self.by_level(self.top_level())

    def ancestor(self, value_id: str, level: int) -> Value:
        """The node at `level` above `value_id` (the node itself when it is at that level)."""
        node = self.value(value_id)
        if not node.level <= level <= self.top_level():
            raise ValueError(
                f"{value_id!r} is at level {node.level}; it has no ancestor at level {level}"
            )
        while node.level < level:
            # a validated tree gives every non-top node a parent one level up
            assert node.parent_id is not None
            node = self.value(node.parent_id)
        return node


def load_taxonomy(source: str) -> Taxonomy:
    """Load `"builtin"` or a `values_tree.csv` file (or a folder holding one).

    Columns beyond the six of the format are ignored. Raises InputError naming the file and the
    first problem found.
    """
    if source == "builtin":
        data = resources.files("specstress").joinpath("data", _BUILTIN_RESOURCE).read_bytes()
        return _parse(data, label=f"builtin taxonomy ({_BUILTIN_RESOURCE})", kind="builtin")
    path = Path(source)
    if path.is_dir():
        path = path / TREE_FILE_NAME
        if not path.is_file():
            raise InputError(f"taxonomy folder {source} has no {TREE_FILE_NAME}")
    elif not path.is_file():
        raise InputError(f"taxonomy file not found: {source}")
    label = f"taxonomy file {path}"
    return _parse(read_capped(path, MAX_TAXONOMY_BYTES, label), label=label, kind="file")


def _parse(data: bytes, label: str, kind: str) -> Taxonomy:
    version = f"{kind}-{hashlib.sha256(data).hexdigest()[:12]}"
    try:
        # utf-8-sig: spreadsheet programs often prepend a byte-order mark
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{label} is not UTF-8 (byte {exc.start})") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next((r for r in reader if r), [])]
        if not header:
            raise InputError(f"{label} is empty")
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"{label} lacks column(s) {', '.join(missing)}; expected header {','.join(COLUMNS)}"
            )
        index = {c: header.index(c) for c in COLUMNS}
        values = []
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(header):
                raise InputError(
                    f"{label}: line {reader.line_num}: {len(cells)} fields, "
                    f"the header has {len(header)}"
                )
            row = {c: cells[i].strip() for c, i in index.items()}
            values.append(_value(row, f"{label}: line {reader.line_num}"))
    except csv.Error as exc:
        raise InputError(f"{label}: line {reader.line_num}: malformed CSV ({exc})") from exc
    _check_tree(values, label)
    return Taxonomy(version=version, values=tuple(values))


def _value(row: dict[str, str], where: str) -> Value:
    value_id, name = row["cluster_id"], row["name"]
    if not value_id:
        raise InputError(f"{where}: empty cluster_id")
    try:
        level = int(row["level"])
    except ValueError:
        level = -1
    if not 0 <= level <= MAX_LEVEL:
        raise InputError(f"{where}: bad level {row['level']!r} (expected 0 to {MAX_LEVEL})")
    if level == 0 and name != value_id:
        raise InputError(f"{where}: a level-0 value needs name == cluster_id, got {name!r}")
    if not name:
        raise InputError(f"{where}: empty name")
    return Value(
        value_id=value_id,
        name=name,
        level=level,
        parent_id=row["parent_cluster_id"] or None,
        description=row["description"],
        pct_total_occurrences=_pct(row["pct_total_occurrences"], where),
    )


def _pct(raw: str, where: str) -> float | None:
    if not raw:
        return None
    try:
        pct = float(raw)
    except ValueError:
        pct = math.nan
    if not 0 <= pct <= 100:
        raise InputError(f"{where}: bad pct_total_occurrences {raw!r} (expected 0 to 100)")
    return pct


def _check_tree(values: list[Value], label: str) -> None:
    if not any(v.level == 0 for v in values):
        raise InputError(f"{label} has no level-0 values")
    by_id: dict[str, Value] = {}
    for v in values:
        if v.value_id in by_id:
            raise InputError(f"{label}: duplicate cluster_id {v.value_id!r}")
        by_id[v.value_id] = v
    top = max(v.level for v in values)
    for v in values:
        if v.level == top:
            if v.parent_id is not None:
                raise InputError(
                    f"{label}: {v.value_id!r} is at the top level ({top}) but has "
                    f"parent {v.parent_id!r}"
                )
            continue
        if v.parent_id is None:
            raise InputError(
                f"{label}: {v.value_id!r} (level {v.level}) has no parent_cluster_id; "
                f"only top-level ({top}) rows may lack one"
            )
        parent = by_id.get(v.parent_id)
        if parent is None:
            raise InputError(
                f"{label}: {v.value_id!r} has parent {v.parent_id!r}, which is not in the file"
            )
        if parent.level != v.level + 1:
            raise InputError(
                f"{label}: {v.value_id!r} (level {v.level}) has parent {v.parent_id!r} at "
                f"level {parent.level}; expected level {v.level + 1}"
            )


def sample_pairs(taxonomy: Taxonomy, n: int, seed: int) -> list[tuple[str, str]]:
    """`n` uniform random pairs of distinct level-0 values, no unordered pair twice.

    Draws without replacement over all unordered pairs, then orients each pair at random, so the
    cost stays proportional to `n` even when `n` is close to the number of possible pairs.
    Sorting the names makes the sample depend on the set of values, not on row order.
    """
    names = sorted(v.name for v in taxonomy.leaves())
    possible = len(names) * (len(names) - 1) // 2
    if not 0 <= n <= possible:
        raise InputError(
            f"cannot sample {n} distinct pairs: taxonomy {taxonomy.version} has "
            f"{len(names)} values, so 0 to {possible} pairs are possible"
        )
    rng = random.Random(seed)
    pairs = []
    for k in rng.sample(range(possible), n):
        # unrank k into the pair (i, j), i < j, enumerated as (0,1), (0,2), (1,2), (0,3), ...
        j = (1 + math.isqrt(1 + 8 * k)) // 2
        i = k - j * (j - 1) // 2
        first, second = (names[i], names[j]) if rng.random() < 0.5 else (names[j], names[i])
        pairs.append((first, second))
    return pairs
