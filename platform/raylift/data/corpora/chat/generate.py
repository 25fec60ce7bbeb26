"""Generate ``python-docs-qa.jsonl``: question/answer conversations from Python's docs.

The source is CPython's own documentation topics (``pydoc_data.topics``, shipped
with the standard library, PSF license). Every section heading becomes a question
("What does the `with` statement do?") answered by the first sentences of that
section's first prose paragraph; every documented signature ("str.capitalize()",
"object.__init__(self[, ...])") becomes "What does `...` do?" answered by the first
sentences of its description. Definitions of one section are grouped into multi-turn
conversations; some conversations open with a system message. Nothing is random:
the same Python version writes the same file. Run from the repository root::

    .venv/bin/python platform/raylift/data/corpora/chat/generate.py
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).with_name("python-docs-qa.jsonl")
MAX_ANSWER_CHARS = 320
"""An answer is the first sentence, plus the second while the total stays this short."""
MAX_TURNS = 3
MIN_ANSWER_CHARS = 30
"""Shorter first sentences are lead-ins ("Special attributes:"), not answers."""
MAX_SENTENCE_CHARS = 480
"""Longer first sentences are left out (they make conversations long for small contexts)."""
SYSTEM_PROMPTS = (
    "You answer questions about Python from its reference documentation. Be brief.",
    "You are a helpful assistant for Python programmers.",
    "Answer in one or two sentences, quoting the Python documentation.",
)
SECTION_QUESTIONS = (
    "What does the Python documentation say about {subject}?",
    "Can you explain {subject} in Python?",
    "Tell me about {subject}.",
    "What should I know about {subject} in Python?",
)
MORE = "Can you tell me more?"
FOLLOW_UPS = ("And what about `{sig}`?", "What does `{sig}` do?", "How about `{sig}`?")
UNDERLINE = re.compile(r"([=*\-~^\"])\1+")
SIGNATURE = re.compile(r"^(?:classmethod |staticmethod |abstractmethod )?[\w.]+[(\[].*[)\]]$")
SENTENCE_END = re.compile(r"(?<=[a-z0-9)\"*\u2019][.!?])\s+(?=[A-Z\"*(])")


@dataclass(frozen=True)
class Pair:
    """One question and its answer, and the section it comes from."""

    question: str
    answer: str
    section: str
    signature: str | None = None


def paragraphs(lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(indentation, lines) of each blank-line separated paragraph."""
    block: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            block.append(line)
        elif block:
            yield len(block[0]) - len(block[0].lstrip()), block
            block = []


def first_sentences(block: list[str]) -> str | None:
    """The first one or two sentences of a prose paragraph, or None if it is not prose."""
    text = " ".join(line.strip() for line in block)
    if text.startswith(("+", ">>>", "Note:", "See also:", "Changed in", "New in", "Added in")):
        return None
    if "::=" in text or (not text[:1].isalpha() and not text.startswith('"')):
        return None
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r" ?\[\d+\]", "", text)  # footnote marks
    sentences = SENTENCE_END.split(text)
    if not sentences[0].endswith((".", "!", "?", ":")):
        return None
    if not MIN_ANSWER_CHARS <= len(sentences[0]) <= MAX_SENTENCE_CHARS:
        return None
    answer = sentences[0]
    if len(sentences) > 1 and _adds_to(answer, sentences[1]):
        answer += " " + sentences[1]
    return answer.rstrip(":") + ("." if answer.endswith(":") else "")


def _adds_to(answer: str, sentence: str) -> bool:
    """Whether a second sentence is worth adding (not a lead-in like "Syntax:")."""
    fits = len(answer) + 1 + len(sentence) <= MAX_ANSWER_CHARS
    return fits and len(sentence) >= 24 and not sentence.endswith(":")


def sections(text: str) -> Iterator[tuple[str, list[str]]]:
    """(heading, body lines) of each section of one topic."""
    lines = text.split("\n")
    starts = [
        i
        for i in range(len(lines) - 1)
        if lines[i].strip()
        and UNDERLINE.fullmatch(lines[i + 1])
        and len(lines[i + 1]) == len(lines[i])
    ]
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        yield lines[start].strip(), lines[start + 2 : end]


def code(text: str) -> str:
    """Docs quote code as "x"; questions use Markdown backticks."""
    return re.sub(r'"([^"]+)"', r"`\1`", text)


def section_question(heading: str, index: int) -> str:
    statement = re.fullmatch(r'The "(.+)" statement', heading)
    if statement:
        return f"What does the `{statement.group(1)}` statement do?"
    clause = re.fullmatch(r'"(.+)" clause', heading)
    if clause:
        return f"What is the `{clause.group(1)}` clause for?"
    subject = code(heading)
    if subject[1:2].islower():
        subject = subject[0].lower() + subject[1:]
    return SECTION_QUESTIONS[index % len(SECTION_QUESTIONS)].format(subject=subject)


def pairs_of(topic: str) -> Iterator[Pair]:
    for heading, body in sections(topic):
        blocks = list(paragraphs(body))
        prose = [first_sentences(b) for indent, b in blocks if indent == 0]
        if prose and prose[0]:
            yield Pair(section_question(heading, len(heading)), prose[0], heading)
            if len(prose) > 1 and prose[1]:
                yield Pair(MORE, prose[1], heading)
        for n, (indent, block) in enumerate(blocks[:-1]):
            signature = block[0].strip()
            if len(block) != 1 or not SIGNATURE.match(signature) or len(signature) > 60:
                continue
            next_indent, description = blocks[n + 1]
            answer = first_sentences(description) if next_indent > indent else None
            if answer:
                yield Pair(f"What does `{signature}` do?", answer, heading, signature)


def conversations(topics: dict[str, str]) -> Iterator[dict[str, list[dict[str, str]]]]:
    """A section's question (and its "tell me more" follow-up) in one conversation; the
    definitions of a section in conversations of up to three turns."""
    index = 0
    for name in sorted(topics):
        pending: list[Pair] = []
        for pair in [*pairs_of(topics[name]), None]:
            if pending and _starts_new(pending, pair):
                yield conversation(pending, index)
                index += 1
                pending = []
            if pair is not None:
                pending.append(pair)


def _starts_new(pending: list[Pair], pair: Pair | None) -> bool:
    if pair is None or len(pending) == MAX_TURNS:
        return True
    if pair.question == MORE:
        return False
    first = pending[0]
    return pair.signature is None or first.signature is None or pair.section != first.section


def conversation(pairs: list[Pair], index: int) -> dict[str, list[dict[str, str]]]:
    messages: list[dict[str, str]] = []
    if index % 3 == 0:
        messages.append({"role": "system", "content": SYSTEM_PROMPTS[index % 9 // 3]})
    for turn, pair in enumerate(pairs):
        question = pair.question
        if turn == 0 and pair.signature and "." not in pair.signature.split("(")[0]:
            question = f"In {code(pair.section)}: {question[0].lower()}{question[1:]}"
        elif turn > 0 and pair.signature:
            question = FOLLOW_UPS[(index + turn) % len(FOLLOW_UPS)].format(sig=pair.signature)
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": pair.answer})
    return {"messages": messages}


def main() -> None:
    from pydoc_data.topics import topics

    records = list(conversations(topics))
    with OUT.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    turns = sum(len(r["messages"]) for r in records)
    print(f"wrote {len(records)} conversations ({turns} messages) to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
