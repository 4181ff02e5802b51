"""Long text -> utterances at sentence boundaries (words only when one sentence is too long)."""

from __future__ import annotations

import re
from typing import Callable

from voxport.errors import InputError

# a sentence ends at . ! ? … with any closing quotes/brackets before a space (so "3.14" stays
# whole), or at the CJK full stops, which need no space
_SENTENCE = re.compile(r".*?(?:[.!?…]+[\"'”’)\]]*(?=\s|$)|[。！？]+|$)", re.DOTALL)

_ENDS = re.compile(r"(?:[.!?…]+[\"'”’)\]]*|[。！？]+)\s*$")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def complete_sentences(text: str) -> tuple[list[str], str]:
    """Split text that is still arriving into the sentences already finished and the rest. A sentence
    is finished once its end mark is followed by more text (a space), so "3." waits for "14"; a CJK
    full stop needs nothing after it."""
    done, end = [], 0
    for m in _SENTENCE.finditer(text):
        closed = m.end() < len(text) or text[m.start():m.end()].rstrip().endswith(("。", "！", "？"))
        if not m.group().strip() or not closed or not _ENDS.search(m.group()):
            break
        done.append(m.group().strip())
        end = m.end()
    return done, text[end:]


def plan_utterances(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Greedily join consecutive sentences while `fits` holds; a sentence that does not fit alone
    is cut between words. Raises InputError when a single word does not fit."""
    pieces: list[str] = []
    for sentence in split_sentences(text):
        pieces += [sentence] if fits(sentence) else _split_words(sentence, fits)
    out: list[str] = []
    for p in pieces:
        if out and fits(f"{out[-1]} {p}"):
            out[-1] = f"{out[-1]} {p}"
        else:
            out.append(p)
    return out


def _split_words(sentence: str, fits: Callable[[str], bool]) -> list[str]:
    out: list[str] = []
    for word in sentence.split():
        if not fits(word):
            raise InputError(f"the word {word[:40]!r} alone does not fit in one utterance's context")
        if out and fits(f"{out[-1]} {word}"):
            out[-1] = f"{out[-1]} {word}"
        else:
            out.append(word)
    return out


def check_utf8(text: str, what: str = "text") -> str:
    """InputError unless `text` is valid Unicode that UTF-8 can carry: a command-line argument that
    was not UTF-8 arrives as lone surrogates (Python's surrogateescape), and so does a JSON "\\ud800"."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start]
        raise InputError(f"{what} is not valid UTF-8 text (character {e.start}: U+{ord(bad):04X}, a lone "
                         "surrogate or a byte that is not UTF-8)") from None
    return text
