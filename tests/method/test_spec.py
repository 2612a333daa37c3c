from __future__ import annotations

import re
from pathlib import Path

import pytest

from specstress.errors import InputError
from specstress.method import spec as spec_module
from specstress.method.spec import Spec, load_spec
from tests.paths import SHARED_DATA

REAL_SPEC = SHARED_DATA / "openai_model_spec" / "model_spec_2025-04-11.md"


def parse(tmp_path: Path, text: str) -> Spec:
    path = tmp_path / "spec.md"
    path.write_text(text, encoding="utf-8", newline="")
    return load_spec(str(path), spec_id="test", version="1")


@pytest.fixture
def real_spec() -> Spec:
    if not REAL_SPEC.is_file():
        pytest.skip(f"real OpenAI Model Spec not present at {REAL_SPEC}")
    return load_spec(str(REAL_SPEC), spec_id="openai", version="2025-04-11")


def test_real_spec_sections(real_spec: Spec) -> None:
    # 73 lines start with '#', two of them ("# functions", "# [...] imports") inside code fences
    assert len(real_spec.sections) == 71
    anchors = [s.anchor for s in real_spec.sections]
    assert None not in anchors
    assert len(set(anchors)) == 71
    assert not any(s.title in {"functions", "[...] imports"} for s in real_spec.sections)
    assert real_spec.spec_id == "openai"
    assert real_spec.version == "2025-04-11"


def test_real_spec_known_anchors(real_spec: Spec) -> None:
    best = real_spec.section("assume_best_intentions")
    assert (best.title, best.level, best.authority) == ("Assume best intentions", 2, "platform")
    assert best.text.startswith("Beyond the specific limitations")
    overview = real_spec.section("overview")
    assert (overview.level, overview.authority) == (1, None)
    assert real_spec.section("avoid_abuse").authority == "user"
    assert real_spec.section("avoid_regulated_advice").authority == "developer"
    assert real_spec.section("no_topic_off_limits").authority == "guideline"
    assert real_spec.section("sexual_content_involving_minors").level == 4
    political = real_spec.section("avoid_targeted_political_manipulation")
    assert political.title == "Don’t facilitate the targeted manipulation of political views"
    # the fenced example with "# functions" belongs to the section it appears in
    assert "# functions" in real_spec.section("support_programmatic_use").text


def test_real_spec_text_is_verbatim(real_spec: Spec) -> None:
    assert real_spec.text.encode("utf-8") == REAL_SPEC.read_bytes()


def test_heading_attributes(tmp_path: Path) -> None:
    spec = parse(
        tmp_path,
        "# Top {#top}\n"
        '## Rule {#rule authority=user .note data-x="a b"}\n'
        "## Quoted {#q authority='platform'}\n"
        "## Plain heading\n"
        "## Use {braces} here\n"
        "### Closed ###\n"
        "### C#\n",
    )
    parts = [(s.anchor, s.title, s.level, s.authority) for s in spec.sections]
    assert parts == [
        ("top", "Top", 1, None),
        ("rule", "Rule", 2, "user"),
        ("q", "Quoted", 2, "platform"),
        (None, "Plain heading", 2, None),
        (None, "Use {braces} here", 2, None),
        (None, "Closed", 3, None),
        (None, "C#", 3, None),
    ]


def test_only_atx_headings_count(tmp_path: Path) -> None:
    spec = parse(
        tmp_path,
        "# Real {#real}\n#hashtag\n    # indented code\n####### seven\n   ### Indented three\n",
    )
    assert [s.title for s in spec.sections] == ["Real", "Indented three"]
    assert spec.section("real").text == "#hashtag\n    # indented code\n####### seven"


def test_section_text_runs_to_the_next_heading(tmp_path: Path) -> None:
    spec = parse(
        tmp_path,
        "Preamble is not a section.\n\n"
        "# A {#a}\n\nfirst\n\n  second\n\n"
        "## B {#b}\nb text\n"
        "# C {#c}\n",
    )
    assert [s.anchor for s in spec.sections] == ["a", "b", "c"]
    assert spec.section("a").text == "first\n\n  second"
    assert spec.section("b").text == "b text"
    assert spec.section("c").text == ""
    with pytest.raises(KeyError):
        spec.section("preamble")


def test_headings_inside_code_fences_are_ignored(tmp_path: Path) -> None:
    spec = parse(
        tmp_path,
        "# Start {#start}\n"
        "```python\n# comment\n```\n"
        "~~~xml\n<a>\n```ts\n# still inside the tilde block\n```\n</a>\n~~~\n"
        "````\n```\n# inside a longer fence\n````\n"
        "   ~~~\n# indented fence\n   ~~~~~\n"
        "```\n# closer with info string does not close\n``` not\n```\n"
        "# After {#after}\n"
        "~~~\n# unclosed fence swallows the rest\n",
    )
    assert [s.anchor for s in spec.sections] == ["start", "after"]
    assert "# still inside the tilde block" in spec.section("start").text
    assert spec.section("after").text.endswith("# unclosed fence swallows the rest")


def test_crlf_and_bom(tmp_path: Path) -> None:
    text = "# One {#one authority=platform}\r\nline 1\r\nline 2\r\n# Two {#two}\r\n"
    path = tmp_path / "spec.md"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    spec = load_spec(str(path), spec_id="s", version="v")
    assert spec.text == text
    assert spec.section("one").text == "line 1\nline 2"
    assert spec.section("one").authority == "platform"


def test_builtin_example() -> None:
    spec = load_spec("builtin:example", spec_id="example", version="1")
    assert (spec.spec_id, spec.version) == ("example", "1")
    assert 60 <= len(spec.text.splitlines()) <= 120
    authorities = {s.authority for s in spec.sections}
    assert {"platform", "user", "guideline"} <= authorities
    assert all(s.anchor for s in spec.sections)
    assert spec.section("no_deception").authority == "platform"
    assert "Contacts" not in {s.title for s in spec.sections}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b"  \n\t\n", "is empty"),
        (b"# Caf\xe9\n", "is not UTF-8"),
        (b"# A {#x}\n\n# B {#x}\n", "line 3: anchor #x is already used on line 1"),
    ],
)
def test_bad_spec_files(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "spec.md"
    path.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(problem)) as err:
        load_spec(str(path), spec_id="s", version="v")
    assert str(path) in str(err.value)


def test_missing_spec_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"spec file not found: .*none\.md"):
        load_spec(str(tmp_path / "none.md"), spec_id="s", version="v")
    with pytest.raises(InputError, match="spec file not found"):
        load_spec(str(tmp_path), spec_id="s", version="v")


def test_oversize_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "spec.md"
    path.write_text("# A\n" + "x" * 200, encoding="utf-8")
    monkeypatch.setattr(spec_module, "MAX_SPEC_BYTES", 100)
    with pytest.raises(InputError, match=r"too large: 204 bytes \(limit 100 bytes\)"):
        load_spec(str(path), spec_id="s", version="v")


def test_unknown_builtin_spec() -> None:
    with pytest.raises(InputError, match="unknown built-in spec 'builtin:nope'"):
        load_spec("builtin:nope", spec_id="s", version="v")
