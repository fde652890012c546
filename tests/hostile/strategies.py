"""Hypothesis strategies for hostile input: any Unicode, any JSON, and real payloads with parts replaced.

(No tests here: helpers for tests/hostile/.)
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Every code point, lone surrogates and control characters included.
ANY_CHARACTER = st.characters(codec=None, categories=None)
any_text = st.text(ANY_CHARACTER)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(ANY_CHARACTER, max_size=40)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(ANY_CHARACTER, max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def mutated(value: Any) -> st.SearchStrategy[Any]:
    """`value` (a real payload) with any of its parts kept, dropped or replaced by any JSON."""
    if isinstance(value, dict):
        kept = st.fixed_dictionaries({key: mutated(child) for key, child in value.items()})
        some = st.fixed_dictionaries({}, optional={key: mutated(child) for key, child in value.items()})
        return st.one_of(kept, some, json_values)
    if isinstance(value, list):
        return st.one_of(st.tuples(*(mutated(child) for child in value)).map(list), json_values)
    return st.one_of(st.just(value), json_values)


def json_bytes(value: Any) -> bytes:
    """JSON as a provider would send it; lone surrogates go as \\udXXX escapes, as JSON allows."""
    return json.dumps(value).encode()


def storable(text: str | None) -> bool:
    """Whether a string can be stored as text on SQLite and PostgreSQL: UTF-8 encodable, no NUL."""
    if text is None:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text
