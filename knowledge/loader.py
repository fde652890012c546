"""Loads and validates a knowledge folder: FAQ entries, facts and out-of-scope examples."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.errors import KnowledgeBaseError

BUNDLED_KNOWLEDGE_DIR = Path(__file__).resolve().parent
AUDIENCES = frozenset({"organiser", "backer", "participant"})
MIN_EXAMPLES, MAX_EXAMPLES, MAX_TITLE = 5, 15, 60
_FIELDS = ("id", "title", "audience", "tags", "examples")
_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_FACT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_FACT_KEYS = frozenset({"value", "unset", "about"})


@dataclass(frozen=True)
class Fact:
    """A figure SayPro decides; `text` is what answers say: the value when set, else the `unset` wording."""

    name: str
    value: str | None
    unset: str
    about: str

    @property
    def text(self) -> str:
        return self.value if self.value else self.unset


@dataclass(frozen=True)
class FaqEntry:
    """One FAQ file: its card, and its answer with facts already substituted."""

    id: str
    title: str
    audience: tuple[str, ...]
    tags: tuple[str, ...]
    examples: tuple[str, ...]
    answer: str
    path: str


@dataclass(frozen=True)
class KnowledgeBase:
    """Everything loaded from a knowledge folder, validated."""

    root: Path
    entries: tuple[FaqEntry, ...]
    facts: Mapping[str, Fact]
    out_of_scope: tuple[str, ...]
    content_hash: str

    def entry(self, entry_id: str) -> FaqEntry | None:
        """The entry with this id, or None."""
        return next((e for e in self.entries if e.id == entry_id), None)


def load_knowledge_base(root: str | Path | None = None) -> KnowledgeBase:
    """Read `root` (default: the bundled folder); raise KnowledgeBaseError naming the file and line."""
    root = Path(root) if root is not None else BUNDLED_KNOWLEDGE_DIR
    if not root.is_dir():
        raise KnowledgeBaseError("no such knowledge folder", path=str(root))
    digest = hashlib.sha256()
    facts_path, oos_path = root / "facts.yaml", root / "out_of_scope.yaml"
    facts = _load_facts(facts_path, _read(facts_path, digest=digest, root=root)) if facts_path.exists() else {}
    oos = _load_out_of_scope(oos_path, _read(oos_path, digest=digest, root=root)) if oos_path.exists() else ()
    loaded = [
        _load_entry(p, _read(p, digest=digest, root=root), facts=facts) for p in sorted((root / "faq").glob("*.md"))
    ]
    _check_ids(loaded)
    return KnowledgeBase(root, tuple(entry for entry, _ in loaded), facts, oos, digest.hexdigest())


def _read(path: Path, *, digest: Any, root: Path) -> str:
    """The file's text; its name and bytes also go into the folder's content hash."""
    data = path.read_bytes()
    digest.update(path.relative_to(root).as_posix().encode() + b"\0" + data + b"\0")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise KnowledgeBaseError("not valid UTF-8", path=str(path), line=line) from exc


def _compose(text: str, *, path: Path, first_line: int) -> yaml.Node | None:
    """Parse YAML into nodes (which keep their line numbers); errors carry the file's line."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = first_line + mark.line if mark is not None else first_line
        message = f"YAML error: {exc.problem or exc}"
        if exc.context and exc.context_mark is not None and exc.problem_mark is not None:
            message += f" ({exc.context} started on line {first_line + exc.context_mark.line})"
        raise KnowledgeBaseError(message, path=str(path), line=line) from exc
    except yaml.YAMLError as exc:
        raise KnowledgeBaseError(f"YAML error: {exc}", path=str(path), line=first_line) from exc


def _line(node: yaml.Node, first_line: int) -> int:
    return first_line + node.start_mark.line


def _mapping(
    node: yaml.Node | None, *, path: Path, first_line: int, what: str
) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping node's items by key, refusing non-string and duplicate keys."""
    if not isinstance(node, yaml.MappingNode):
        line = _line(node, first_line) if node is not None else first_line
        raise KnowledgeBaseError(f"{what} must be a mapping of names to values", path=str(path), line=line)
    items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag != "tag:yaml.org,2002:str":
            raise KnowledgeBaseError("keys must be plain names", path=str(path), line=_line(key, first_line))
        if key.value in items:
            where = _line(items[key.value][0], first_line)
            raise KnowledgeBaseError(
                f"'{key.value}' given twice (first on line {where})",
                path=str(path),
                line=_line(key, first_line),
            )
        items[key.value] = (key, value)
    return items


def _string(node: yaml.Node, *, path: Path, first_line: int, what: str) -> str:
    """A scalar node as stripped text (numbers allowed); lists, mappings and nulls refused."""
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        raise KnowledgeBaseError(f"{what} is empty", path=str(path), line=_line(node, first_line))
    if not isinstance(node, yaml.ScalarNode):
        raise KnowledgeBaseError(f"{what} must be text", path=str(path), line=_line(node, first_line))
    return str(node.value).strip()


def _strings(node: yaml.Node, *, path: Path, first_line: int, what: str) -> list[tuple[str, int]]:
    """A sequence node's items as (non-empty text, line)."""
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise KnowledgeBaseError(f"{what} must be a list", path=str(path), line=_line(node, first_line))
    items = []
    for item in node.value:
        text = _string(item, path=path, first_line=first_line, what=f"each item of {what}")
        if not text:
            raise KnowledgeBaseError(f"empty item in {what}", path=str(path), line=_line(item, first_line))
        items.append((text, _line(item, first_line)))
    return items


def _load_facts(path: Path, text: str) -> dict[str, Fact]:
    root = _compose(text, path=path, first_line=1)
    if root is None:
        return {}
    facts: dict[str, Fact] = {}
    for name, (key, node) in _mapping(root, path=path, first_line=1, what="facts.yaml").items():
        line = _line(key, 1)
        if not _FACT_NAME.fullmatch(name):
            raise KnowledgeBaseError(
                f"fact name '{name}' must be letters, digits and _",
                path=str(path),
                line=line,
            )
        fields = _mapping(node, path=path, first_line=1, what=f"fact '{name}'")
        unknown = sorted(set(fields) - _FACT_KEYS)
        if unknown:
            raise KnowledgeBaseError(
                f"fact '{name}': unknown field '{unknown[0]}' (expected value, unset, about)",
                path=str(path),
                line=_line(fields[unknown[0]][0], 1),
            )
        value = _optional_text(fields.get("value"), path=path, what=f"fact '{name}' value")
        unset = _optional_text(fields.get("unset"), path=path, what=f"fact '{name}' unset")
        if not value and not unset:
            raise KnowledgeBaseError(
                f"fact '{name}' has neither a value nor an 'unset' text",
                path=str(path),
                line=line,
            )
        about = _optional_text(fields.get("about"), path=path, what=f"fact '{name}' about")
        facts[name] = Fact(name, value or None, unset or "", about or "")
    return facts


def _optional_text(item: tuple[yaml.Node, yaml.Node] | None, *, path: Path, what: str) -> str | None:
    if item is None or (isinstance(item[1], yaml.ScalarNode) and item[1].tag == "tag:yaml.org,2002:null"):
        return None
    return _string(item[1], path=path, first_line=1, what=what)


def _load_out_of_scope(path: Path, text: str) -> tuple[str, ...]:
    """A list of phrases, or a mapping of groups to lists of phrases."""
    root = _compose(text, path=path, first_line=1)
    if root is None:
        return ()
    if isinstance(root, yaml.MappingNode):
        groups = _mapping(root, path=path, first_line=1, what="out_of_scope.yaml")
        items = [i for name, (_, node) in groups.items() for i in _strings(node, path=path, first_line=1, what=name)]
    else:
        items = _strings(root, path=path, first_line=1, what="out_of_scope.yaml")
    return tuple(dict.fromkeys(text for text, _ in items))


def _split_front_matter(path: Path, text: str) -> tuple[str, list[str], int]:
    """(front matter YAML, answer lines, file line of the first answer line)."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise KnowledgeBaseError(
            "must start with a '---' line opening the front matter",
            path=str(path),
            line=1,
        )
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "\n".join(lines[1:i]), lines[i + 1 :], i + 2
    raise KnowledgeBaseError(
        "front matter opened on line 1 is never closed by a '---' line",
        path=str(path),
        line=1,
    )


def _load_entry(path: Path, text: str, *, facts: Mapping[str, Fact]) -> tuple[FaqEntry, int]:
    """The entry, and the line of its id."""
    front, body, body_line = _split_front_matter(path, text)
    card = _mapping(
        _compose(front, path=path, first_line=2),
        path=path,
        first_line=2,
        what="the front matter",
    )
    unknown = sorted(set(card) - set(_FIELDS))
    if unknown:
        raise KnowledgeBaseError(
            f"unknown field '{unknown[0]}' (expected {', '.join(_FIELDS)})",
            path=str(path),
            line=_line(card[unknown[0]][0], 2),
        )
    for name in _FIELDS:
        if name not in card and name != "tags":
            raise KnowledgeBaseError(f"missing field '{name}'", path=str(path), line=body_line - 1)
    entry_id = _checked_id(card["id"], path=path)
    title = _checked_title(card["title"], path=path)
    audience = _checked_audience(card["audience"], path=path)
    tags = (
        tuple(t for t, _ in _strings(card["tags"][1], path=path, first_line=2, what="tags")) if "tags" in card else ()
    )
    examples = _checked_examples(card["examples"], path=path)
    answer = _render_answer(body, path=path, first_line=body_line, facts=facts)
    return FaqEntry(entry_id, title, audience, tags, examples, answer, str(path)), _line(card["id"][1], 2)


def _checked_id(item: tuple[yaml.Node, yaml.Node], *, path: Path) -> str:
    value = _string(item[1], path=path, first_line=2, what="id")
    if not _ID.fullmatch(value):
        raise KnowledgeBaseError(
            f"id '{value}' must be lower-case letters, digits and dashes",
            path=str(path),
            line=_line(item[1], 2),
        )
    return value


def _checked_title(item: tuple[yaml.Node, yaml.Node], *, path: Path) -> str:
    value = _string(item[1], path=path, first_line=2, what="title")
    line = _line(item[1], 2)
    if not value:
        raise KnowledgeBaseError("empty title", path=str(path), line=line)
    if "\n" in value:
        raise KnowledgeBaseError("the title must be one line", path=str(path), line=line)
    if len(value) > MAX_TITLE:
        raise KnowledgeBaseError(
            f"title is {len(value)} characters, at most {MAX_TITLE}",
            path=str(path),
            line=line,
        )
    return value


def _checked_audience(item: tuple[yaml.Node, yaml.Node], *, path: Path) -> tuple[str, ...]:
    node = item[1]
    values = (
        [(_string(node, path=path, first_line=2, what="audience"), _line(node, 2))]
        if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null"
        else _strings(node, path=path, first_line=2, what="audience")
    )
    if not values:
        raise KnowledgeBaseError("empty audience", path=str(path), line=_line(item[0], 2))
    for value, line in values:
        if value not in AUDIENCES:
            allowed = ", ".join(sorted(AUDIENCES))
            raise KnowledgeBaseError(f"audience '{value}' is not one of {allowed}", path=str(path), line=line)
    return tuple(dict.fromkeys(v for v, _ in values))


def _checked_examples(item: tuple[yaml.Node, yaml.Node], *, path: Path) -> tuple[str, ...]:
    examples = _strings(item[1], path=path, first_line=2, what="examples")
    if not MIN_EXAMPLES <= len(examples) <= MAX_EXAMPLES:
        raise KnowledgeBaseError(
            f"{len(examples)} examples, need {MIN_EXAMPLES} to {MAX_EXAMPLES}",
            path=str(path),
            line=_line(item[0], 2),
        )
    seen: dict[str, int] = {}
    for text, line in examples:
        key = " ".join(text.casefold().split())
        if key in seen:
            raise KnowledgeBaseError(f"example '{text}' repeats line {seen[key]}", path=str(path), line=line)
        seen[key] = line
    return tuple(text for text, _ in examples)


def _render_answer(body: list[str], *, path: Path, first_line: int, facts: Mapping[str, Fact]) -> str:
    """The answer text with every `{{ fact }}` replaced; unknown or malformed placeholders refused."""
    if not "\n".join(body).strip():
        raise KnowledgeBaseError("empty answer below the front matter", path=str(path), line=first_line - 1)
    rendered = []
    for offset, line in enumerate(body):
        for match in _PLACEHOLDER.finditer(line):
            name = match.group(1).strip()
            if not _FACT_NAME.fullmatch(name):
                raise KnowledgeBaseError(
                    f"malformed placeholder '{match.group(0)}'",
                    path=str(path),
                    line=first_line + offset,
                )
            if name not in facts:
                raise KnowledgeBaseError(
                    f"placeholder '{{{{ {name} }}}}' is not in facts.yaml",
                    path=str(path),
                    line=first_line + offset,
                )
        rest = _PLACEHOLDER.sub("", line)
        if "{{" in rest or "}}" in rest:
            raise KnowledgeBaseError("unbalanced '{{' or '}}'", path=str(path), line=first_line + offset)
        rendered.append(_PLACEHOLDER.sub(lambda m: facts[m.group(1).strip()].text, line))
    return "\n".join(rendered).strip()


def _check_ids(loaded: list[tuple[FaqEntry, int]]) -> None:
    """Ids are unique across files, and each file is named after its id."""
    seen: dict[str, str] = {}
    for entry, line in loaded:
        if entry.id in seen:
            raise KnowledgeBaseError(
                f"duplicate id '{entry.id}', also in {seen[entry.id]}",
                path=entry.path,
                line=line,
            )
        seen[entry.id] = entry.path
    for entry, line in loaded:
        stem = Path(entry.path).stem
        if entry.id != stem:
            raise KnowledgeBaseError(
                f"id '{entry.id}' differs from the file name '{stem}.md'",
                path=entry.path,
                line=line,
            )
