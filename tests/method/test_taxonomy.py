from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from specstress.errors import InputError
from specstress.method import taxonomy as taxonomy_module
from specstress.method.taxonomy import Taxonomy, load_taxonomy, sample_pairs
from tests.paths import SHARED_DATA

REAL_TREE = SHARED_DATA / "values_in_the_wild" / "values_tree.csv"
GROUP_NAMES = {
    "Practical values",
    "Epistemic values",
    "Social values",
    "Protective values",
    "Personal values",
}
HEADER = "cluster_id,description,name,level,parent_cluster_id,pct_total_occurrences"
VALID_ROWS = [
    "a,,a,0,c1,10",
    "b,,b,0,c1,10",
    "c,,c,0,c2,10",
    "d,,d,0,c2,10",
    "c1,First cluster,Cluster one,1,k1,20",
    "c2,Second cluster,Cluster two,1,k1,20",
    "k1,The category,Category,2,g1,40",
    "g1,The group,Group,3,,40",
]


def write_tree(folder: Path, rows: list[str], header: str = HEADER) -> Path:
    path = folder / "values_tree.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def real_tree() -> Path:
    if not REAL_TREE.is_file():
        pytest.skip(f"real Values-in-the-Wild data not present at {REAL_TREE}")
    return REAL_TREE


def test_real_taxonomy_has_the_published_level_counts(real_tree: Path) -> None:
    tax = load_taxonomy(str(real_tree))
    assert len(tax.values) == 3604
    assert [len(tax.by_level(k)) for k in range(4)] == [3307, 266, 26, 5]
    assert len(tax.leaves()) == 3307
    assert {g.name for g in tax.groups()} == GROUP_NAMES
    assert re.fullmatch(r"file-[0-9a-f]{12}", tax.version)


def test_real_taxonomy_ancestors(real_tree: Path) -> None:
    tax = load_taxonomy(str(real_tree))
    expected = {
        "helpfulness": ("Prosocial altruism", "Community and relationship bonds", "Social values"),
        "transparency": (
            "Ethical and transparent governance",
            "Ethical responsibility",
            "Protective values",
        ),
        "balanced wisdom": (
            "Wisdom and inner guidance",
            "Spiritual fulfillment and meaning",
            "Personal values",
        ),
    }
    for leaf, names in expected.items():
        assert tuple(tax.ancestor(leaf, k).name for k in (1, 2, 3)) == names
        assert tax.ancestor(leaf, 0) == tax.value(leaf)
    assert tax.value("helpfulness").pct_total_occurrences == pytest.approx(5.858)


def test_folder_and_file_give_the_same_taxonomy(real_tree: Path) -> None:
    assert load_taxonomy(str(real_tree.parent)) == load_taxonomy(str(real_tree))


def test_builtin_taxonomy_shape() -> None:
    tax = load_taxonomy("builtin")
    assert re.fullmatch(r"builtin-[0-9a-f]{12}", tax.version)
    assert 50 <= len(tax.leaves()) <= 70
    assert len(tax.by_level(1)) == 15
    assert len(tax.by_level(2)) == 10
    assert {g.name for g in tax.groups()} == GROUP_NAMES
    per_group = Counter(tax.ancestor(v.value_id, 3).name for v in tax.leaves())
    assert set(per_group) == GROUP_NAMES
    assert all(count >= 8 for count in per_group.values())
    assert all(v.value_id.startswith("builtin:l") for v in tax.values if v.level > 0)
    assert all(v.description for v in tax.values)
    leaf_pct = sum(v.pct_total_occurrences or 0.0 for v in tax.leaves())
    assert leaf_pct == pytest.approx(100, abs=0.5)


def test_small_tree_helpers(tmp_path: Path) -> None:
    tax = load_taxonomy(str(write_tree(tmp_path, VALID_ROWS)))
    assert [v.name for v in tax.leaves()] == ["a", "b", "c", "d"]
    assert [v.name for v in tax.groups()] == ["Group"]
    assert tax.ancestor("c", 1).value_id == "c2"
    assert tax.ancestor("c2", 3).value_id == "g1"
    with pytest.raises(ValueError, match="no ancestor at level 0"):
        tax.ancestor("c2", 0)
    with pytest.raises(ValueError, match="no ancestor at level 4"):
        tax.ancestor("a", 4)
    with pytest.raises(KeyError):
        tax.ancestor("zzz", 1)


def test_version_follows_file_content(tmp_path: Path) -> None:
    path = write_tree(tmp_path, VALID_ROWS)
    first = load_taxonomy(str(path))
    assert load_taxonomy(str(path)).version == first.version
    write_tree(tmp_path, [*VALID_ROWS[:-1], "g1,The group,Group,3,,41"])
    assert load_taxonomy(str(path)).version != first.version


def test_bom_crlf_extra_columns_and_empty_pct_are_accepted(tmp_path: Path) -> None:
    rows = [row + ",extra" for row in VALID_ROWS]
    rows[0] = "a,,a,0,c1,,extra"
    text = "\ufeff" + "\r\n".join([HEADER + ",note", *rows]) + "\r\n"
    path = tmp_path / "tree.csv"
    path.write_bytes(text.encode("utf-8"))
    tax = load_taxonomy(str(path))
    assert len(tax.leaves()) == 4
    assert tax.value("a").pct_total_occurrences is None
    assert tax.value("g1").parent_id is None


@pytest.mark.parametrize(
    ("rows", "header", "problem"),
    [
        (VALID_ROWS, "cluster_id,name,level,parent_cluster_id", "lacks column"),
        (["a,,a,4,c1,10", *VALID_ROWS[1:]], HEADER, "bad level '4'"),
        (["a,,a,zero,c1,10", *VALID_ROWS[1:]], HEADER, "bad level 'zero'"),
        (["a,,a,0,nowhere,10", *VALID_ROWS[1:]], HEADER, "parent 'nowhere', which is not"),
        ([*VALID_ROWS, "a,,a,0,c1,1"], HEADER, "duplicate cluster_id 'a'"),
        (["a,,other,0,c1,10", *VALID_ROWS[1:]], HEADER, "name == cluster_id"),
        (["a,,a,0,k1,10", *VALID_ROWS[1:]], HEADER, "expected level 1"),
        (["a,,a,0,,10", *VALID_ROWS[1:]], HEADER, "has no parent_cluster_id"),
        ([*VALID_ROWS[:-1], "g1,The group,Group,3,k1,40"], HEADER, "top level (3) but has parent"),
        (["a,,a,0,c1", *VALID_ROWS[1:]], HEADER, "line 2: 5 fields"),
        (["a,,a,0,c1,lots", *VALID_ROWS[1:]], HEADER, "bad pct_total_occurrences 'lots'"),
        (["a,,a,0,c1,-1", *VALID_ROWS[1:]], HEADER, "bad pct_total_occurrences '-1'"),
        ([",,,0,c1,1", *VALID_ROWS], HEADER, "empty cluster_id"),
        (["c9,,,1,k1,1", *VALID_ROWS], HEADER, "empty name"),
        (VALID_ROWS[4:], HEADER, "no level-0 values"),
        ([], "", "is empty"),
    ],
)
def test_bad_taxonomy_files(tmp_path: Path, rows: list[str], header: str, problem: str) -> None:
    path = write_tree(tmp_path, rows, header)
    with pytest.raises(InputError, match=re.escape(problem)) as err:
        load_taxonomy(str(path))
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_malformed_csv(tmp_path: Path) -> None:
    # the csv module refuses fields beyond its size limit (128 KiB by default)
    path = write_tree(tmp_path, [f"a,{'x' * 200_000},a,0,,1"])
    with pytest.raises(InputError, match="line 2: malformed CSV"):
        load_taxonomy(str(path))


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"taxonomy file not found: .*nope\.csv"):
        load_taxonomy(str(tmp_path / "nope.csv"))
    with pytest.raises(InputError, match=r"has no values_tree\.csv"):
        load_taxonomy(str(tmp_path))


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "values_tree.csv"
    path.write_bytes((HEADER + "\n").encode() + b"caf\xe9,,caf\xe9,0,,1\n")
    with pytest.raises(InputError, match="is not UTF-8"):
        load_taxonomy(str(path))


def test_oversize_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_tree(tmp_path, VALID_ROWS)
    monkeypatch.setattr(taxonomy_module, "MAX_TAXONOMY_BYTES", 100)
    with pytest.raises(InputError, match=r"too large: \d+ bytes \(limit 100 bytes\)"):
        load_taxonomy(str(path))


@pytest.fixture
def builtin() -> Taxonomy:
    return load_taxonomy("builtin")


def test_pairs_are_reproducible_distinct_and_unique(builtin: Taxonomy) -> None:
    names = {v.name for v in builtin.leaves()}
    pairs = sample_pairs(builtin, 500, seed=7)
    assert pairs == sample_pairs(builtin, 500, seed=7)
    assert pairs != sample_pairs(builtin, 500, seed=8)
    assert len(pairs) == 500
    assert all(a != b and a in names and b in names for a, b in pairs)
    assert len({frozenset(p) for p in pairs}) == 500


def test_every_pair_can_be_drawn_in_both_orders(builtin: Taxonomy) -> None:
    count = len(builtin.leaves())
    possible = count * (count - 1) // 2
    pairs = sample_pairs(builtin, possible, seed=1)
    assert len({frozenset(p) for p in pairs}) == possible
    first_is_smaller = sum(a < b for a, b in pairs)
    assert 0.4 * possible < first_is_smaller < 0.6 * possible


def test_single_pair_is_uniform_over_pairs(tmp_path: Path) -> None:
    tax = load_taxonomy(str(write_tree(tmp_path, VALID_ROWS)))
    draws = Counter(frozenset(sample_pairs(tax, 1, seed)[0]) for seed in range(6000))
    assert len(draws) == 6
    assert all(850 < n < 1150 for n in draws.values())


def test_pair_count_limits(builtin: Taxonomy) -> None:
    count = len(builtin.leaves())
    assert sample_pairs(builtin, 0, seed=0) == []
    with pytest.raises(InputError, match=f"cannot sample {count * (count - 1) // 2 + 1} "):
        sample_pairs(builtin, count * (count - 1) // 2 + 1, seed=0)
    with pytest.raises(InputError, match="cannot sample -1 "):
        sample_pairs(builtin, -1, seed=0)


def test_real_taxonomy_pairs_at_scale(real_tree: Path) -> None:
    tax = load_taxonomy(str(real_tree))
    pairs = sample_pairs(tax, 20_000, seed=3)
    assert len({frozenset(p) for p in pairs}) == 20_000
    assert all(a != b for a, b in pairs)
