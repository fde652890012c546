"""Synthetic knowledge bases of any size, to measure how the matcher's latency grows with the entry count."""

from __future__ import annotations

import random

from knowledge.evaluation import LabelledRow

_SYLLABLES = [
    "ba",
    "be",
    "bi",
    "bo",
    "bu",
    "da",
    "de",
    "di",
    "do",
    "du",
    "ka",
    "ke",
    "ki",
    "ko",
    "ku",
    "la",
    "le",
    "li",
    "lo",
    "lu",
    "ma",
    "me",
    "mi",
    "mo",
    "mu",
    "na",
    "ne",
    "ni",
    "no",
    "nu",
    "pa",
    "pe",
    "pi",
    "po",
    "pu",
    "ra",
    "re",
    "ri",
    "ro",
    "ru",
    "sa",
    "se",
    "si",
    "so",
    "su",
    "ta",
    "te",
    "ti",
    "to",
    "tu",
    "va",
    "ve",
    "vi",
    "vo",
    "vu",
    "za",
    "ze",
    "zi",
    "zo",
    "zu",
]
_TEMPLATES = (
    "how do i {a} my {b}",
    "where is my {b} {c}",
    "can i {a} the {b} today",
    "{b} {c} not working",
    "why was my {b} {a}",
    "what is the {c} for a {b}",
    "i need help with {b} {c}",
    "is there a {c} on {b}",
    "when will my {b} be {a}",
    "{a} {b} {c} please",
    "my {c} says {b} failed",
    "how long does {b} {c} take",
)
_OUT_OF_SCOPE = (
    "what is the weather today",
    "tell me a joke",
    "who won the match last night",
    "recommend a good film",
    "how do i boil an egg",
    "what is the capital of france",
    "sing me a song",
    "what time is it in tokyo",
)


def synthetic_entries(
    n_entries: int, *, examples: int = 8, tests: int = 2, seed: int = 0
) -> tuple[list[LabelledRow], list[LabelledRow]]:
    """(train, test) rows for `n_entries` made-up FAQ entries, plus a few out-of-scope rows labelled "".

    Each entry has three topic words of its own and shares the question templates and filler of
    every other: `examples` training questions and `tests` unseen questions per entry.
    """
    rng = random.Random(seed)
    words = _vocabulary(3 * n_entries, rng)
    train: list[LabelledRow] = []
    test: list[LabelledRow] = []
    for entry in range(n_entries):
        topic = words[3 * entry : 3 * entry + 3]
        label = f"entry-{entry:05d}"
        questions = _questions(topic, examples + tests, rng)
        train += [LabelledRow(q, label) for q in questions[:examples]]
        test += [LabelledRow(q, label) for q in questions[examples:]]
    train += [LabelledRow(text, "") for text in _OUT_OF_SCOPE[::2]]
    test += [LabelledRow(text, "") for text in _OUT_OF_SCOPE[1::2]]
    return train, test


def _vocabulary(n: int, rng: random.Random) -> list[str]:
    seen: set[str] = set()
    words: list[str] = []
    while len(words) < n:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _questions(topic: list[str], n: int, rng: random.Random) -> list[str]:
    templates = rng.sample(_TEMPLATES, k=min(n, len(_TEMPLATES)))
    questions = []
    for i in range(n):
        a, b, c = rng.sample(topic, k=3)
        questions.append(templates[i % len(templates)].format(a=a, b=b, c=c))
    return questions
