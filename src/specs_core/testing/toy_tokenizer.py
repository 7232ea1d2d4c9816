r"""The toy models' vocabulary and tokenizer, and the answer they consider right.

Word tokens either start with a space and contain no space (``" add"``, ``" 12"``,
``" \boxed{5}"``) or are one of a few step openers, punctuation marks and the step delimiter; no
token extends another across a token boundary, so greedy longest-match tokenization gives back
the tokens of any text the toy generates. Other characters become their UTF-8 byte tokens.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

__all__ = ["ANSWER_RANGE", "EOS_ID", "STEP_DELIMITER", "ToyTokenizer", "toy_answer"]

#: Answers the toy can box: ``0 .. ANSWER_RANGE - 1``.
ANSWER_RANGE = 21
STEP_DELIMITER = "\n\n"

_STARTERS = ("First", "Then", "So", "Next", "Now", "Therefore")
_WORDS = (
    " add",
    " subtract",
    " multiply",
    " take",
    " count",
    " the",
    " sum",
    " product",
    " of",
    " and",
    " is",
    " gives",
    " so",
    " answer",
    " result",
    " we",
    " get",
    " total",
    " equals",
    " plus",
    " times",
    " minus",
)
_NUMBERS = tuple(f" {i}" for i in range(ANSWER_RANGE))
_BOXED = tuple(f" \\boxed{{{i}}}" for i in range(ANSWER_RANGE))
_PUNCT = (".", ",")

#: Token ids: 0 is end of sequence, 1-3 are template markers (input only), then the word block
#: (words, numbers, answers, punctuation, the delimiter), then 256 byte tokens.
EOS_ID = 0
_SYSTEM_ID, _USER_ID, _ASSISTANT_ID = 1, 2, 3
_FIRST_WORD = 4
_WORD_STRINGS: tuple[str, ...] = (
    *_STARTERS,
    *_WORDS,
    *_NUMBERS,
    *_BOXED,
    *_PUNCT,
    STEP_DELIMITER,
)
_DELIM_ID = _FIRST_WORD + len(_WORD_STRINGS) - 1
_FIRST_BYTE = _FIRST_WORD + len(_WORD_STRINGS)
_VOCAB_SIZE = _FIRST_BYTE + 256

# Token classes, for the grammar.
_START, _WORD, _NUM, _BOX, _PUNCT_C, _DELIM, _EOS, _OTHER = range(8)


def _class_of(token: int) -> int:
    if token == EOS_ID:
        return _EOS
    if token < _FIRST_WORD or token >= _FIRST_BYTE:
        return _OTHER
    i = token - _FIRST_WORD
    bounds = (
        (len(_STARTERS), _START),
        (len(_WORDS), _WORD),
        (len(_NUMBERS), _NUM),
        (len(_BOXED), _BOX),
        (len(_PUNCT), _PUNCT_C),
    )
    for size, cls in bounds:
        if i < size:
            return cls
        i -= size
    return _DELIM


#: The sampled block: EOS followed by every word token (byte tokens and markers excluded).
_BLOCK: tuple[int, ...] = (EOS_ID, *range(_FIRST_WORD, _FIRST_BYTE))
_BLOCK_CLASSES: tuple[int, ...] = tuple(_class_of(t) for t in _BLOCK)


def _number_value(token: int) -> int | None:
    cls = _class_of(token)
    if cls == _NUM:
        return token - (_FIRST_WORD + len(_STARTERS) + len(_WORDS))
    if cls == _BOX:
        return token - (_FIRST_WORD + len(_STARTERS) + len(_WORDS) + len(_NUMBERS))
    return None


def _hash_int(*parts: object) -> int:
    data = "\x1f".join(repr(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def toy_answer(question: str) -> int:
    """The answer the toy models and the toy reward model consider right.

    The sum of the integers written in ``question`` modulo :data:`ANSWER_RANGE`; a question
    without integers gets a hash-derived answer.
    """
    numbers = [int(n) for n in re.findall(r"\d+", question)]
    if numbers:
        return sum(numbers) % ANSWER_RANGE
    return _hash_int("answer", question) % ANSWER_RANGE


class ToyTokenizer:
    """Maps any string to toy tokens and back; round-trips every text the toy generates."""

    def __init__(self) -> None:
        by_first: dict[str, list[tuple[str, int]]] = {}
        for offset, piece in enumerate(_WORD_STRINGS):
            by_first.setdefault(piece[0], []).append((piece, _FIRST_WORD + offset))
        for group in by_first.values():
            group.sort(key=lambda item: -len(item[0]))
        self._by_first = by_first

    def encode(self, text: str) -> list[int]:
        """Tokenize ``text``: known words greedily (longest first), other characters as bytes."""
        ids: list[int] = []
        i = 0
        while i < len(text):
            for piece, token in self._by_first.get(text[i], ()):
                if text.startswith(piece, i):
                    ids.append(token)
                    i += len(piece)
                    break
            else:
                ids.extend(_FIRST_BYTE + b for b in text[i].encode("utf-8", "surrogatepass"))
                i += 1
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (markers and end of sequence decode to nothing)."""
        out: list[str] = []
        pending = bytearray()
        for token in ids:
            if token >= _FIRST_BYTE:
                pending.append(token - _FIRST_BYTE)
                continue
            if pending:
                out.append(pending.decode("utf-8", "replace"))
                pending.clear()
            if _FIRST_WORD <= token < _FIRST_BYTE:
                out.append(_WORD_STRINGS[token - _FIRST_WORD])
        if pending:
            out.append(pending.decode("utf-8", "replace"))
        return "".join(out)

    def piece(self, token: int) -> str:
        """The text of one word token (``""`` for markers, bytes and end of sequence)."""
        return _WORD_STRINGS[token - _FIRST_WORD] if _FIRST_WORD <= token < _FIRST_BYTE else ""

    @property
    def vocab_size(self) -> int:
        """Number of token ids (markers included)."""
        return _VOCAB_SIZE

    @property
    def output_ids(self) -> tuple[int, ...]:
        """Every id the next-token distribution covers: EOS, words and bytes (not the markers)."""
        return (*_BLOCK, *range(_FIRST_BYTE, _VOCAB_SIZE))
