"""Grading an answer against a reference, offline and explainably.

Every grade has pass/fail, a score in 0..1, whether the answer was a refusal, and a one-line
reason. The rules, in order:

1. Refusals ("I don't know", "the sources do not say"): for an answerable question that is a
   wrong answer (`refused`); for a question the documents do not answer it is the right one.
   Any other answer to an unanswerable question is a fabrication.
2. Key facts: the `keywords` when given, else the reference's numbers (with their units), else its
   content words. Numbers are normalised first: "thirty days" = "30 days", "1,250" = "1250",
   "13 percent" = "13%", "16K" = 16000 (and = 16384 when the reference gives both).
3. An answer that offers several values of the same kind ("100 by default, or sometimes 50") is not
   correct even when one of them is the reference's.
4. A number with the wrong unit ("30 months" for "30 days") does not match.
5. Polarity: when the facts are words, an answer that negates what the reference affirms (or the
   reverse: "grants" for "does not grant") is wrong.

An optional `similarity(a, b)` (the local embedder's cosine) helps word-based references only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

# ---------------------------------------------------------------- numbers

_UNITS = {
    "day": "day", "days": "day", "week": "week", "weeks": "week", "month": "month", "months": "month",
    "year": "year", "years": "year", "hour": "hour", "hours": "hour", "hr": "hour", "hrs": "hour",
    "minute": "minute", "minutes": "minute", "min": "minute", "mins": "minute", "second": "second",
    "seconds": "second", "business": "business-day", "working": "business-day",
    "kg": "kg", "kilogram": "kg", "kilograms": "kg", "g": "g", "grams": "g", "gram": "g", "lb": "lb", "lbs": "lb",
    "%": "%", "percent": "%", "per": None, "cm": "cm", "mm": "mm", "m": "m", "km": "km", "l": "l", "litres": "l",
    "liters": "l", "ml": "ml", "w": "w", "watts": "w", "wh": "wh", "v": "v", "mb": "mb", "gb": "gb", "kb": "kb",
    "tokens": "token", "token": "token", "digits": "digit", "digit": "digit", "characters": "character",
    "times": "times", "people": "person", "persons": "person", "nights": "night", "night": "night",
    "euro": "eur", "euros": "eur", "eur": "eur", "dollars": "usd", "usd": "usd", "pounds": "gbp", "gbp": "gbp",
}
_CURRENCY = {"$": "usd", "€": "eur", "£": "gbp"}
_DIMENSION = {"day": "time", "week": "time", "month": "time", "year": "time", "hour": "time", "minute": "time",
              "second": "time", "business-day": "time", "night": "time", "kg": "mass", "g": "mass", "lb": "mass",
              "usd": "money", "eur": "money", "gbp": "money", "cm": "length", "mm": "length", "m": "length",
              "km": "length"}

_ONES = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
         "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
         "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "a": 1, "an": 1}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_WORD = re.compile(
    r"\b(?:(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|"
    r"million|a|an)(?:[\s-]+(?:and[\s-]+)?)?)+\b", re.I)


def _words_to_number(words: str) -> int | None:
    parts = [w for w in re.split(r"[\s-]+", words.lower()) if w and w != "and"]
    if not parts or all(p in ("a", "an") for p in parts):
        return None
    if parts[0] in ("a", "an") and (len(parts) == 1 or parts[1] not in _SCALES):
        return None  # "a day" is not a number here; "a hundred" is
    total, current, seen = 0, 0, False
    for p in parts:
        if p in _ONES:
            current += _ONES[p]
        elif p in _TENS:
            current += _TENS[p]
        elif p in _SCALES:
            current = max(current, 1) * _SCALES[p]
            if _SCALES[p] >= 1000:
                total, current = total + current, 0
        else:
            return None
        seen = True
    return total + current if seen else None


def normalise(text: str) -> str:
    """Lower case, thousands separators dropped, number words as digits, 'percent' as '%'."""
    t = " ".join(text.lower().replace("\u2019", "'").split())  # one space for any run of whitespace
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)

    def spell(m: re.Match[str]) -> str:
        raw = m.group(0)
        words = raw.strip()
        lead = ""
        head = re.match(r"(an?|one)[\s-]+(?!hundred|thousand|million)", words)
        if head:  # "a thirty-day window": the article is not part of the number
            lead, words = words[:head.end()], words[head.end():]
        if words in ("a", "an", "one", ""):  # "one of them", "a day": not a quantity worth normalising
            return raw
        value = _words_to_number(words)
        if value is None:
            return raw
        return f"{lead}{value}{raw[len(raw.rstrip()):]}"

    t = _NUMBER_WORD.sub(spell, t)
    t = re.sub(r"(\d)\s*(?:per cent|percent)\b", r"\1%", t)
    return t


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str | None
    text: str

    @property
    def dimension(self) -> str | None:
        return _DIMENSION.get(self.unit or "", self.unit)


_NUM = re.compile(r"(?P<cur>[$€£])?\s?(?<![\w.\-])(?P<num>\d+(?:\.\d+)?)(?P<k>\s?k\b)?(?:\s?(?P<unit>%|[a-z]+))?",
                  re.I)


def quantities(text: str, normalised: bool = False) -> list[Quantity]:
    """The numbers in a text with their units; citation markers [n] are not numbers."""
    t = text if normalised else normalise(text)
    t = re.sub(r"\[\d+\]", " ", t)
    out = []
    for m in _NUM.finditer(t):
        value = float(m.group("num"))
        if m.group("k"):
            value *= 1000
        unit = _CURRENCY.get(m.group("cur") or "")
        word = (m.group("unit") or "").lower()
        if unit is None and word:
            unit = _UNITS.get(word)
            if word == "business" or word == "working":
                unit = "business-day"
        shown = (m.group("cur") or "") + m.group("num") + (m.group("k") or "").strip()
        if unit and word and m.group("unit"):
            shown += ("" if word == "%" else " ") + word
        out.append(Quantity(value, unit, shown))
    return out


def _is_year(q: Quantity) -> bool:
    return q.unit is None and q.value == int(q.value) and 1900 <= q.value <= 2100 and "." not in q.text


def _same_value(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9 * max(1.0, abs(a), abs(b))


def _alternates(ref: list[Quantity]) -> list[list[Quantity]]:
    """Reference numbers that name one fact twice ("16K (16384)"): within 5% of each other, same unit."""
    groups: list[list[Quantity]] = []
    for q in ref:
        for g in groups:
            same_kind = g[0].unit == q.unit or g[0].unit is None or q.unit is None
            if same_kind and abs(g[0].value - q.value) <= 0.05 * max(g[0].value, q.value):
                g.append(q)
                break
        else:
            groups.append([q])
    return groups


# ---------------------------------------------------------------- words, refusals, polarity

_STOP = set("""a an the and or of to in on for by with at from is are was were be been it its this that these
those as per any all each can may must should will would do does did has have had not no than then so if
into about over under after before within up out your you our we they their there what which who whom when
where how why yes""".split())
_REFUSAL = re.compile(
    r"i (?:do not|don't|dont) know|i'm not sure|i am not sure|i (?:cannot|can't|can not|am unable to|'m unable to) "
    r"(?:find|answer|determine|tell|say|help)|unable to (?:find|answer|determine)|not (?:mentioned|specified|"
    r"stated|provided|given|included|covered|listed) in|no (?:information|mention|details?) (?:about|on|of|in|is)|"
    r"(?:sources?|documents?|context|passages?|text) (?:do|does|did) not (?:contain|mention|say|include|specify|"
    r"provide|state|cover)|there is no (?:information|mention)|i'm sorry|i am sorry|not enough information|"
    r"cannot be determined|can't be determined|i don't have (?:that|this|any|enough)|i do not have (?:that|this|"
    r"any|enough)", re.I)
_NEGATION = re.compile(r"\b(?:not|no|never|none|cannot|without|neither|nor)\b|n't\b", re.I)


def is_refusal(answer: str) -> bool:
    return bool(_REFUSAL.search(answer))


def _stem(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _content_words(text: str) -> list[str]:
    words = re.findall(r"[a-z][a-z\-']+", normalise(text))
    return list(dict.fromkeys(_stem(w) for w in words if w not in _STOP and len(w) > 2))


def _first_part(answer: str) -> str:
    """The answer without its 'Reason:' line (the house style's explanation)."""
    return re.split(r"\n\s*reason\s*:", answer, maxsplit=1, flags=re.I)[0]


def _negated(text: str) -> bool:
    return bool(_NEGATION.search(text))


def _yes_no(text: str) -> str | None:
    m = re.match(r"\s*(yes|no)\b", text.lower())
    return m.group(1) if m else None


# ---------------------------------------------------------------- grades

@dataclass(frozen=True)
class Grade:
    correct: bool
    score: float  # 0..1
    refused: bool
    reason: str
    fabricated: bool = False  # an unanswerable question answered as if the documents said
    method: str = "rules"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _match_keyword(answer_norm: str, keyword: str) -> bool:
    key = normalise(keyword).strip()
    if not key:
        return True
    kq = quantities(key, normalised=True)
    if kq and re.fullmatch(r"[$€£]?\s?\d+(?:\.\d+)?\s?k?\s?(?:%|[a-z]+)?", key):
        return any(_number_matches(kq[0], a) for a in quantities(answer_norm, normalised=True))
    left = r"(?<![\w.])" if key[:1].isalnum() else ""
    right = r"(?![\w])" if key[-1:].isalnum() else ""
    return re.search(left + re.escape(key) + right, answer_norm) is not None


def _number_matches(ref: Quantity, got: Quantity) -> bool:
    if not _same_value(ref.value, got.value):
        return False
    if ref.unit and got.unit and ref.unit != got.unit and ref.dimension == got.dimension:
        return False  # 30 months is not 30 days
    return True


def grade_answer(question: str, reference: str, answer: str, keywords: Sequence[str] = (),
                 answerable: bool = True, similarity: Callable[[str, str], float] | None = None) -> Grade:
    """Grade one answer; see the module docstring for the rules."""
    text = (answer or "").strip()
    if not text:
        return Grade(False, 0.0, False, "empty answer")
    refused = is_refusal(_first_part(text))
    if not answerable:
        if refused:
            return Grade(True, 1.0, True, "correctly said the documents do not answer this")
        return Grade(False, 0.0, False, "answered a question the documents do not answer (fabrication)",
                     fabricated=True)
    if refused and not reference.strip():
        return Grade(False, 0.0, True, "refused, and there is no reference answer to grade against")

    body = _first_part(text)
    answer_norm = normalise(body)
    got = quantities(answer_norm, normalised=True)

    if keywords:
        missing = [k for k in keywords if not _match_keyword(answer_norm, k)]
        facts_numeric = [q for k in keywords for q in quantities(k)]
        score = 1 - len(missing) / len(keywords)
        problems = [f"missing: {', '.join(missing)}"] if missing else []
    else:
        ref_q = quantities(reference)
        facts_numeric = ref_q
        if ref_q:
            groups = _alternates(ref_q)
            missing = [g[0].text for g in groups if not any(_number_matches(r, a) for r in g for a in got)]
            score = 1 - len(missing) / len(groups)
            problems = [f"missing: {', '.join(missing)}"] if missing else []
        else:
            words = _content_words(reference)
            have = set(_content_words(body))
            recall = sum(w in have for w in words) / len(words) if words else 1.0
            sim = similarity(body, reference) if similarity else None
            score = max(recall, sim or 0.0)
            ok = recall >= 0.6 or (sim is not None and sim >= 0.75 and recall >= 0.3)
            problems = [] if ok else [f"covers {recall:.0%} of the reference's key words"
                                      + (f", similarity {sim:.2f}" if sim is not None else "")]
            ref_yn, got_yn = _yes_no(reference), _yes_no(body)
            if (ref_yn and got_yn and ref_yn != got_yn) or _negated(reference) != _negated(body):
                problems.append("states the opposite of the reference (negation differs)")
                score = min(score, 0.2)

    # Several values of the kind the reference asks for: the answer hedges between them.
    if facts_numeric and got:
        matching = [a for a in got if any(_number_matches(r, a) for r in facts_numeric)]
        kinds = {q.dimension for q in facts_numeric} | {a.dimension for a in matching}
        years = any(_is_year(r) for r in facts_numeric)
        others = sorted({a.text for a in got if a.dimension in kinds
                         and not any(_same_value(a.value, r.value) for r in facts_numeric)
                         and (years or not _is_year(a))})  # "in 2025" is a date, not a rival value
        matched = bool(matching)
        if others and matched:
            problems.append(f"offers conflicting values ({', '.join(others)} besides the reference's)")
            score = min(score, 0.5)

    if refused:
        return Grade(False, 0.0, True, "refused an answerable question")
    if problems:
        return Grade(False, round(max(0.0, score), 3), False, "; ".join(problems))
    return Grade(True, 1.0, False, "matches the reference" + (" (keywords)" if keywords else ""))


# ---------------------------------------------------------------- citations and groundedness

def cited_numbers(answer: str) -> list[int]:
    return [int(n) for n in re.findall(r"\[(\d{1,2})\]", answer)]


def check_citations(answer: str, sources: Sequence[Any], reference: str = "", keywords: Sequence[str] = ()
                    ) -> tuple[bool | None, str]:
    """(None when nothing is cited; else whether every cited source exists and holds a key fact, and why)."""
    cited = list(dict.fromkeys(cited_numbers(answer)))
    if not cited:
        return None, "cites no source"
    bad = [n for n in cited if not 1 <= n <= len(sources)]
    if bad:
        return False, f"cites [{bad[0]}], which was not retrieved"
    facts = list(keywords) or [q.text for q in quantities(reference)] or _content_words(reference)[:5]
    if not facts:
        return True, "cites a retrieved source"
    unsupported = []
    for n in cited:
        text = normalise(str(getattr(sources[n - 1], "text", sources[n - 1])))
        if not any(_match_keyword(text, f) for f in facts):
            unsupported.append(n)
    if unsupported:
        return False, f"source [{unsupported[0]}] does not contain the supporting fact"
    return True, "the cited source contains the supporting fact"


def grounded(answer: str, sources: Sequence[Any]) -> tuple[bool, str]:
    """Every number in the answer appears in the retrieved sources (the answer's own claims, not the reference)."""
    text = normalise(" ".join(str(getattr(s, "text", s)) for s in sources))
    have = quantities(text, normalised=True)
    missing = [q.text for q in quantities(_first_part(answer))
               if not any(_same_value(q.value, h.value) for h in have)]
    if missing:
        return False, f"not in the sources: {', '.join(dict.fromkeys(missing))}"
    return True, "every number in the answer is in the sources"
