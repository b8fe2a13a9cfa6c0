"""Token-aware chunks with overlap. Pure functions: the tokenizer comes in as a
callable that returns each token's character span."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from lib.errors import UserError

# all-MiniLM-L6-v2 reads at most 256 word pieces, two of which are [CLS] and [SEP].
MAX_CHUNK_TOKENS = 254
DEFAULT_CHUNK_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 40

Spans = Callable[[str], list[tuple[int, int]]]
# A word piece tokenizer turns a "word" longer than 100 characters into one unknown token, whatever its length:
# 5 MB without a break would be one token and one chunk. Such runs are cut into pieces of this many characters,
# each counted as a token, so no chunk is longer than size x this, whatever the text.
MAX_PIECE_CHARS = 16


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    start_char: int
    end_char: int
    tokens: int
    sha256: str


def validate(size: int, overlap: int, max_tokens: int = MAX_CHUNK_TOKENS) -> None:
    if not 16 <= size <= max_tokens:
        raise UserError(f"Chunk size {size} is out of range: use 16 to {max_tokens} tokens "
                         "(the embedding model reads at most that many; longer chunks would be cut).")
    if not 0 <= overlap <= size // 2:
        raise UserError(f"Overlap {overlap} is out of range: use 0 to {size // 2} tokens (half the chunk size).")


_SENTENCE_END = re.compile(r"[.!?:;]['\")\]]?\s*$")


def _break_quality(text: str, spans: list[tuple[int, int]], i: int) -> int:
    """How good a place it is to end a chunk before token i (higher is better)."""
    gap = text[spans[i - 1][1]:spans[i][0]]
    if "\n\n" in gap:
        return 3
    if _SENTENCE_END.search(text[spans[i - 1][0]:spans[i][0]]):
        return 2
    if "\n" in gap:
        return 1
    return 0


def _word_start(text: str, spans: list[tuple[int, int]], i: int, limit: int) -> int:
    """The first token at or after i that begins a word (so a chunk never starts mid-word)."""
    while i < limit and i > 0 and spans[i][0] == spans[i - 1][1] and text[spans[i][0]].isalnum():
        i += 1
    return i


def bounded(spans: list[tuple[int, int]], width: int = MAX_PIECE_CHARS) -> list[tuple[int, int]]:
    """Token spans with any span longer than `width` characters cut into `width`-character pieces."""
    if all(b - a <= width for a, b in spans):
        return spans
    out: list[tuple[int, int]] = []
    for a, b in spans:
        while b - a > width:
            out.append((a, a + width))
            a += width
        out.append((a, b))
    return out


def chunk_text(text: str, spans_of: Spans, size: int = DEFAULT_CHUNK_TOKENS,
               overlap: int = DEFAULT_OVERLAP_TOKENS) -> list[Chunk]:
    """Split text into chunks of at most `size` tokens, consecutive chunks sharing
    about `overlap` tokens, preferring to end at paragraph, then sentence, then line breaks."""
    validate(size, overlap)
    spans = bounded(spans_of(text))
    n = len(spans)
    chunks: list[Chunk] = []
    start = 0
    while start < n:
        end = min(start + size, n)
        if end < n:
            floor = start + max(1, int(size * 0.6))
            best, best_q = end, 0
            for i in range(end, floor, -1):
                q = _break_quality(text, spans, i)
                if q > best_q:
                    best, best_q = i, q
                    if q == 3:
                        break
            # a word split across two chunks would be read wrongly by both: back off to its start
            if best_q == 0:
                back = best
                while back > floor and spans[back][0] == spans[back - 1][1] and text[spans[back][0]].isalnum():
                    back -= 1
                best = back if back > floor else best
            end = best
        a, b = spans[start][0], spans[end - 1][1]
        body = text[a:b]
        chunks.append(Chunk(index=len(chunks), text=body, start_char=a, end_char=b, tokens=end - start,
                            sha256=hashlib.sha256(body.encode()).hexdigest()))
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        start = _word_start(text, spans, nxt, end)
    return chunks
