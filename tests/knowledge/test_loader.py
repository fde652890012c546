"""The knowledge loader: what a valid folder gives, and every invalid file named with its line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.errors import KnowledgeBaseError
from knowledge.loader import BUNDLED_KNOWLEDGE_DIR, load_knowledge_base

FIXTURE = Path(__file__).parent / "fixtures" / "kb"

GOOD_CARD = """\
---
id: {id}
title: A question
audience: [backer]
tags: [one]
examples:
  - first way to ask
  - second way to ask
  - third way to ask
  - fourth way to ask
  - fifth way to ask
---
The answer.
"""


@pytest.fixture()
def kb(tmp_path: Path) -> Path:
    """A writable copy of the fixture knowledge base."""
    root = tmp_path / "kb"
    shutil.copytree(FIXTURE, root)
    return root


def write_entry(kb: Path, name: str, text: str) -> Path:
    path = kb / "faq" / f"{name}.md"
    path.write_text(text, encoding="utf-8")
    return path


def raised(kb: Path) -> KnowledgeBaseError:
    with pytest.raises(KnowledgeBaseError) as info:
        load_knowledge_base(kb)
    return info.value


def test_the_fixture_loads_with_every_field() -> None:
    base = load_knowledge_base(FIXTURE)
    assert [e.id for e in base.entries] == [
        "contact-support",
        "contest-prizes",
        "password-reset",
        "payout-fees",
        "refund-request",
    ]
    refund = base.entry("refund-request")
    assert refund is not None
    assert refund.title == "How do I get a refund?"
    assert refund.audience == ("backer",)
    assert refund.tags == ("refund", "contribution")
    assert len(refund.examples) == 8 and refund.examples[4] == "refund pls"
    assert refund.path.endswith("refund-request.md")
    assert base.entry("contest-prizes").tags == ()  # type: ignore[union-attr]
    assert base.entry("payout-fees").audience == ("organiser",)  # type: ignore[union-attr]
    assert len(base.out_of_scope) == 24 and "tell me a joke" in base.out_of_scope
    assert base.entry("no-such-entry") is None


def test_facts_are_substituted_value_when_set_else_the_unset_text() -> None:
    base = load_knowledge_base(FIXTURE)
    answers = {e.id: e.answer for e in base.entries}
    assert answers["refund-request"].endswith("within the time shown in your refund confirmation email.")  # null
    assert answers["contest-prizes"] == "The prizes are listed in the contest rules."  # empty string
    assert "valid for 24 hours" in answers["password-reset"]  # a number
    assert answers["contact-support"] == "Email us at help@example.org."
    assert "{{" not in "".join(answers.values())
    assert base.facts["support_email"].text == "help@example.org"
    assert base.facts["refund_processing_time"].value is None


def test_the_answer_keeps_its_markdown_and_paragraphs() -> None:
    answer = load_knowledge_base(FIXTURE).entry("refund-request").answer  # type: ignore[union-attr]
    assert answer.split("\n\n")[0] == "Backers of a cancelled campaign can ask for a refund."
    assert "**Forgot password**" in load_knowledge_base(FIXTURE).entry("password-reset").answer  # type: ignore[union-attr]


def test_out_of_scope_may_be_grouped_under_keys(kb: Path) -> None:
    (kb / "out_of_scope.yaml").write_text("weather:\n  - will it rain\nsport:\n  - who won\n  - will it rain\n")
    assert load_knowledge_base(kb).out_of_scope == ("will it rain", "who won")


def test_missing_facts_and_out_of_scope_files_are_optional(tmp_path: Path) -> None:
    (tmp_path / "faq").mkdir()
    write_entry(tmp_path, "only-one", GOOD_CARD.format(id="only-one"))
    base = load_knowledge_base(tmp_path)
    assert [e.id for e in base.entries] == ["only-one"] and base.out_of_scope == () and dict(base.facts) == {}


def test_the_content_hash_is_stable_and_follows_every_file(kb: Path) -> None:
    first = load_knowledge_base(kb).content_hash
    assert load_knowledge_base(kb).content_hash == first
    facts = kb / "facts.yaml"
    facts.write_text(facts.read_text() + "\n# a comment\n")
    second = load_knowledge_base(kb).content_hash
    assert second != first
    write_entry(kb, "new-entry", GOOD_CARD.format(id="new-entry"))
    assert load_knowledge_base(kb).content_hash not in (first, second)


def test_the_bundled_knowledge_base_loads() -> None:
    if not list((BUNDLED_KNOWLEDGE_DIR / "faq").glob("*.md")):
        pytest.skip("the bundled content is not written yet")
    base = load_knowledge_base()
    assert base.entries and all(e.answer and "{{" not in e.answer for e in base.entries)
    assert len({e.id for e in base.entries}) == len(base.entries)


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    error = raised(tmp_path / "nowhere")
    assert error.path is not None and error.path.endswith("nowhere")


# Each case: the entry file's text, the line the error must name, and words the message must hold.
BAD_ENTRIES = {
    "no front matter": ("id: x\n", 1, "must start with a '---'"),
    "front matter never closed": ("---\nid: bad\ntitle: t\n", 1, "never closed"),
    "YAML error": (
        GOOD_CARD.format(id="bad").replace("title: A question", "title: [unclosed"),
        4,
        "YAML error",
    ),
    "front matter is a list": ("---\n- a\n- b\n---\nanswer\n", 2, "mapping"),
    "missing examples": (
        "---\nid: bad\ntitle: t\naudience: [backer]\ntags: []\n---\nanswer\n",
        6,
        "missing field 'examples'",
    ),
    "empty title": (
        GOOD_CARD.format(id="bad").replace("title: A question", "title:"),
        3,
        "title is empty",
    ),
    "title too long": (
        GOOD_CARD.format(id="bad").replace("A question", "x" * 61),
        3,
        "61 characters",
    ),
    "bad audience": (
        GOOD_CARD.format(id="bad").replace("[backer]", "[backer, donor]"),
        4,
        "audience 'donor'",
    ),
    "empty audience": (
        GOOD_CARD.format(id="bad").replace("[backer]", "[]"),
        4,
        "empty audience",
    ),
    "four examples": (
        GOOD_CARD.format(id="bad").replace("  - fifth way to ask\n", ""),
        6,
        "4 examples",
    ),
    "sixteen examples": (
        GOOD_CARD.format(id="bad").replace("  - fifth way to ask\n", "".join(f"  - way {i}\n" for i in range(12))),
        6,
        "16 examples",
    ),
    "repeated example": (
        GOOD_CARD.format(id="bad").replace("fourth way to ask", "Second  way to ASK"),
        10,
        "repeats line 8",
    ),
    "empty example": (
        GOOD_CARD.format(id="bad").replace("  - third way to ask", '  - ""'),
        9,
        "empty item",
    ),
    "empty answer": (
        GOOD_CARD.format(id="bad").replace("The answer.\n", "\n  \n"),
        12,
        "empty answer",
    ),
    "unknown placeholder": (
        GOOD_CARD.format(id="bad") + "\nIt takes {{ no_such_fact }}.\n",
        15,
        "no_such_fact",
    ),
    "malformed placeholder": (
        GOOD_CARD.format(id="bad") + "{{ two words }}\n",
        14,
        "malformed placeholder",
    ),
    "unbalanced braces": (
        GOOD_CARD.format(id="bad") + "see {{ support_email\n",
        14,
        "unbalanced",
    ),
    "id not the file name": (
        GOOD_CARD.format(id="other-name"),
        2,
        "differs from the file name",
    ),
    "id with capitals": (GOOD_CARD.format(id="Bad"), 2, "lower-case"),
    "unknown field": (
        GOOD_CARD.format(id="bad").replace("tags: [one]", "tags: [one]\nexmaples: []"),
        6,
        "exmaples",
    ),
    "field given twice": (
        GOOD_CARD.format(id="bad").replace("tags: [one]", "tags: [one]\ntitle: again"),
        6,
        "twice",
    ),
    "title is a list": (
        GOOD_CARD.format(id="bad").replace("title: A question", "title: [a, b]"),
        3,
        "must be text",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_an_invalid_entry_is_named_with_its_file_and_line(kb: Path, case: str) -> None:
    text, line, words = BAD_ENTRIES[case]
    path = write_entry(kb, "bad", text)
    error = raised(kb)
    assert (error.path, error.line) == (str(path), line), str(error)
    assert words in str(error)
    assert str(error).startswith(f"{path}:{line}: ")


def test_a_duplicate_id_names_both_files(kb: Path) -> None:
    first = write_entry(kb, "a-copy", GOOD_CARD.format(id="refund-request"))
    error = raised(kb)
    assert error.path == str(kb / "faq" / "refund-request.md") and error.line == 2
    assert str(first) in str(error) and "duplicate id 'refund-request'" in str(error)


def test_invalid_utf8_is_named_with_its_line(kb: Path) -> None:
    path = kb / "faq" / "bad.md"
    path.write_bytes(GOOD_CARD.format(id="bad").encode() + b"caf\xe9\n")
    error = raised(kb)
    assert (error.path, error.line) == (str(path), 14) and "UTF-8" in str(error)


BAD_FACTS = {
    "YAML error": ("a:\n  value: [1\n  unset: x\n", 3, "YAML error"),
    "not a mapping": ("- a\n- b\n", 1, "mapping"),
    "fact not a mapping": ("refund_processing_time: soon\n", 1, "mapping"),
    "neither value nor unset": (
        "refund_processing_time:\n  value: null\n  about: x\n",
        1,
        "neither a value nor",
    ),
    "unknown field": (
        "refund_processing_time:\n  unset: x\n  vaule: 3\n",
        3,
        "unknown field 'vaule'",
    ),
    "value is a list": (
        "refund_processing_time:\n  value: [1, 2]\n  unset: x\n",
        2,
        "must be text",
    ),
    "bad name": ("refund time:\n  unset: x\n", 1, "fact name"),
    "name given twice": ("a:\n  unset: x\na:\n  unset: y\n", 3, "twice"),
}


@pytest.mark.parametrize("case", sorted(BAD_FACTS))
def test_an_invalid_facts_file_is_named_with_its_line(kb: Path, case: str) -> None:
    text, line, words = BAD_FACTS[case]
    (kb / "facts.yaml").write_text(text)
    error = raised(kb)
    assert (error.path, error.line) == (str(kb / "facts.yaml"), line), str(error)
    assert words in str(error)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("- fine\n- {a: b}\n", 2),
        ("- fine\n-\n", 2),
        ("group: just text\n", 1),
        ("- [unclosed\n", 2),
    ],
)
def test_an_invalid_out_of_scope_file_is_named_with_its_line(kb: Path, text: str, line: int) -> None:
    (kb / "out_of_scope.yaml").write_text(text)
    error = raised(kb)
    assert (error.path, error.line) == (str(kb / "out_of_scope.yaml"), line), str(error)
