"""Claims in a text: what an answer (or a reference, or a source) asserts, read offline.

A text is cut into segments (sentences, then clauses at ';', ' and ', ' while ', ' but ', dashes and
parentheses). Each segment knows whether it is an aside (in parentheses, or a detail after a value and
a colon), a contrast ("not 60 but 30", "rather than X", "unlike X", ", not X", "a larger value such as X")
or negated (negation scoped to the claim: "no one else", "not only", "nothing but" do not negate).
In the segments sit the claims:

- quantities: a value with its unit, read as numbers are written ("thirty", "1,250", "16 * 1024", "16K",
  "half"), converted to one base unit per dimension (time in seconds, data in bytes, percentages as
  fractions), with what makes a number no claim of its own marked: section and clause numbers, ordinals,
  the ends of a range;
- identifiers: paths, file and package names, variables, options, URLs, versions and proper names,
  compared exactly (case, quotes and trailing punctuation aside);
- words: content-word stems, for claims that are neither.

`lib.grading` compares an answer's claims with a reference's and with its cited sources.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# ---------------------------------------------------------------- units

# unit word -> (canonical unit, dimension, base values per unit); several bases when the unit is ambiguous
UNITS: dict[str, tuple[str, str, tuple[float, ...]]] = {}


def _add(names: str, unit: str, dimension: str, *bases: float) -> None:
    for name in names.split():
        UNITS[name] = (unit, dimension, bases)


_add("ns nanosecond nanoseconds", "ns", "time", 1e-6)  # time in milliseconds: a bare 5000 in a spec is 5 s
_add("us µs microsecond microseconds", "us", "time", 1e-3)
_add("ms msec msecs millisecond milliseconds", "ms", "time", 1.0)
_add("s sec secs second seconds", "s", "time", 1e3)
_add("min mins minute minutes", "min", "time", 6e4)
_add("h hr hrs hour hours", "h", "time", 3.6e6)
_add("day days", "day", "time", 8.64e7)
_add("week weeks", "week", "time", 6.048e8)
_add("month months", "month", "time", 8.64e7 * 30.4375)
_add("year years yr yrs", "year", "time", 8.64e7 * 365.25)
_add("bit bits", "bit", "data", 0.125)
_add("byte bytes", "byte", "data", 1.0)
_add("kb kilobyte kilobytes", "kb", "data", 1000.0, 1024.0)
_add("kib kibibyte kibibytes", "kib", "data", 1024.0)
_add("mb megabyte megabytes", "mb", "data", 1e6, 1048576.0)
_add("mib mebibyte mebibytes", "mib", "data", 1048576.0)
_add("gb gigabyte gigabytes", "gb", "data", 1e9, 1073741824.0)
_add("gib gibibyte gibibytes", "gib", "data", 1073741824.0)
_add("tb terabyte terabytes", "tb", "data", 1e12, 1099511627776.0)
_add("% percent pct", "%", "fraction", 0.01)
_add("usd dollar dollars", "usd", "usd", 1.0)
_add("eur euro euros", "eur", "eur", 1.0)
_add("gbp pound pounds", "gbp", "gbp", 1.0)
_add("kg kilogram kilograms kilo kilos", "kg", "mass", 1000.0)
_add("g gram grams", "g", "mass", 1.0)
_add("lb lbs", "lb", "mass", 453.59237)
_add("mm millimetre millimetres millimeter millimeters", "mm", "length", 0.001)
_add("cm centimetre centimetres centimeter centimeters", "cm", "length", 0.01)
_add("m metre metres meter meters", "m", "length", 1.0)
_add("km kilometre kilometres kilometer kilometers", "km", "length", 1000.0)
_add("ml millilitre millilitres milliliter milliliters", "ml", "volume", 0.001)
_add("l litre litres liter liters", "l", "volume", 1.0)
_add("w watt watts", "w", "power", 1.0)
_add("wh", "wh", "energy", 1.0)
_add("v volt volts", "v", "voltage", 1.0)
_add("times x", "times", "times", 1.0)
_CASE_SENSITIVE_UNITS = {"B": ("byte", "data", (1.0,)), "K": ("k", "", (1000.0, 1024.0)),
                         "M": ("mb", "data", (1e6, 1048576.0))}
_CURRENCY = {"$": "usd", "€": "eur", "£": "gbp"}
_CALENDAR = {"month", "year"}
# words that may sit between a number and its unit ("60 calendar days", "10 full releases")
_UNIT_ADJECTIVES = {"calendar", "full", "consecutive", "additional", "more", "extra", "whole", "complete", "total",
                    "business", "working", "clock"}
_BUSINESS = {"business", "working"}

_ONES = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
         "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
         "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_FRACTIONS = {"half": 0.5, "a half": 0.5, "one half": 0.5, "a third": 1 / 3, "one third": 1 / 3,
              "a quarter": 0.25, "one quarter": 0.25, "three quarters": 0.75, "two thirds": 2 / 3}
_WORD = "|".join(sorted([*_ONES, *_TENS, *_SCALES], key=len, reverse=True))
_NUMBER_WORDS = re.compile(rf"\b(?:{_WORD})(?:(?:[\s-]+|\s+and\s+)(?:{_WORD}))*\b", re.I)
_FRACTION = re.compile(r"\b(?:a half|one half|half|a third|one third|a quarter|one quarter|three quarters|"
                       r"two thirds)\b", re.I)
_DIGITS = re.compile(r"(?P<cur>[$€£])?\s?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)*)")
_TIMES = re.compile(r"\s*(?:\*|×)\s*(\d+(?:\.\d+)?)")
_MONTHS = {m: i for i, m in enumerate(("january february march april may june july august september october "
                                       "november december").split(), 1)}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_SECTION_WORDS = {"section", "sections", "§", "§§", "clause", "clauses", "subsection", "subsections", "article",
                  "articles", "chapter", "chapters", "paragraph", "paragraphs", "exhibit", "appendix", "step",
                  "steps", "item", "items", "line", "lines", "page", "pages", "figure", "table", "rule", "part",
                  "question", "footnote", "note", "no", "number", "#"}
_VERSION_WORDS = {"version", "versions", "v", "release", "rel", "lsb", "dpkg", "gpl", "gplv", "lgpl", "mpl",
                  "agpl", "python", "node", "node.js", "debian", "http"}
_VERB_AFTER = {"remove", "removes", "means", "makes", "takes", "gives", "allows", "applies", "has", "was", "is",
               "does", "goes", "sets", "says", "lists", "requires", "uses", "were", "are", "becomes"}

# ---------------------------------------------------------------- words

STOP = set("""a an the and or of to in on for by with at from is are was were be been being it its this that these
those as per any all each can may must should will would do does did has have had not no than then so if into
about over under after before within up out your you our we they their there what which who whom when where how
why yes i me my he she his her them us also only just such other some more most very much many few one ones
shall might could while whereas but however though although since because via upon onto both either neither nor
whether here already still even ever every own same too""".split())
ROLE_WORDS = {"default": "default", "defaults": "default", "maximum": "maximum", "max": "maximum",
              "largest": "maximum", "limit": "maximum", "minimum": "minimum", "min": "minimum", "smallest": "minimum",
              "first": "first", "last": "last", "before": "before", "after": "after", "initial": "initial"}
_NEGATION = re.compile(r"\b(?:not|no|never|none|nothing|nobody|nowhere|cannot|neither|nor|isn't|aren't|"
                       r"wasn't|weren't|doesn't|don't|didn't|can't|couldn't|won't|wouldn't|shouldn't|mustn't|"
                       r"hasn't|haven't|hadn't|mayn't|needn't)\b|n't\b", re.I)
# negations that do not negate the claim they sit in
_NON_FLIPPING = re.compile(
    r"\b(?:no one|nobody|nothing|none|no)\s+(?:else|other(?:\s+than)?)\b|\bnot\s+(?:only|just|merely)\b|"
    r"\bnothing\s+but\b|\bno\s+(?:more|less)\s+than\b|\bnot\s+(?:more|less)\s+than\b|\bno\s+later\s+than\b|"
    r"\bnowhere\s+(?:else|other)\s+than\b|\bnot\s+(?:exceeding|exceed)\b|\bno\s+smaller\s+than\b|"
    r"\bno\s+larger\s+than\b|\b(?:without|with\s+no|no)\s+(?:any\s+)?(?:additional|extra|further)\b|\bno-op\b|\bno[-\s]charge\b|"
    r"\bnon-\w+", re.I)


def stem(word: str) -> str:
    """A light stemmer: plural, -ed, -ing, -ly (enough to match "terminates" with "terminate")."""
    w = word.lower().strip("'")
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"), ("zes", "z"),
                         ("ing", ""), ("edly", ""), ("ed", ""), ("ly", ""), ("s", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not (suffix == "s" and w.endswith(("ss", "us", "is"))):
            w = w[:-len(suffix)] + keep
            break
    if len(w) > 4 and w[-1] == "e":
        w = w[:-1]
    return w


_ORDINALS = {"1st": "first", "2nd": "second", "3rd": "third", "4th": "fourth", "5th": "fifth"}


def content_words(text: str) -> list[str]:
    """Content-word stems in order (no stop words, no numbers); names in code stay whole ("ffi_prep_cif");
    "2nd" is "second"."""
    out: list[str] = []
    text = re.sub(r"\b(1st|2nd|3rd|4th|5th)\b", lambda m: _ORDINALS[m.group(1).lower()], text, flags=re.I)
    for tok in re.findall(r"[A-Za-z_][\w'\-./]*\w|[A-Za-z]", text):
        if _looks_code(tok):
            out.append(norm_id(tok))
            continue
        for part in re.split(r"[\-./]", tok):
            low = part.lower().strip("'")
            if len(low) > 1 and low.isalpha() and low not in STOP and low not in _ONES and low not in _TENS:
                out.append(stem(low))
    return list(dict.fromkeys(out))


def negated(text: str) -> bool:
    """Whether a clause negates what it says (negations scoped elsewhere, "no one else", do not count)."""
    return bool(_NEGATION.search(_NON_FLIPPING.sub(" ", text)))


# ---------------------------------------------------------------- identifiers

_ID_TOKEN = re.compile(r"(?:https?://|www\.)[^\s<>\"'`)\]]+|(?:--?|\.{0,2}/|~/|\$)?[A-Za-z0-9_][\w\-./+:@]*[\w+]|"
                       r"(?:--?|/)?[A-Za-z_]")


def _looks_code(token: str) -> bool:
    """A token that is a name in code or a system, not a word: a path, a variable, an option, a URL..."""
    t = token.strip("`'\".,;:()[]")
    if len(t) < 2:
        return False
    if re.match(r"https?://|www\.", t) or t.startswith(("/", "--", "~/", "$", "./")):
        return True
    if "_" in t or "/" in t:
        return True
    if re.search(r"[a-z][A-Z]", t) and not re.fullmatch(r"[A-Z][a-z]+[A-Z][a-z]+", t):  # camelCase, not McName
        return True
    if re.fullmatch(r"[A-Z][A-Z0-9]+", t) and len(t) >= 3:  # NOTICE, SIGTERM, LSB
        return True
    if re.search(r"\w\.\w", t) and re.search(r"[A-Za-z]", t) and not re.fullmatch(r"(?:e\.g|i\.e|etc)\.?", t,
                                                                                    re.I):
        return True  # file.txt, node.js
    if re.search(r"[A-Za-z]\d|\d[A-Za-z]", t) and not re.fullmatch(r"\d+(?:st|nd|rd|th|[kKmMgG]|x)", t):
        return True  # x86, libffi8, GPLv3
    return False


def norm_id(token: str) -> str:
    """How identifiers compare: case, surrounding quotes and brackets and trailing punctuation aside."""
    t = token.strip().strip("`'\"“”‘’()[]{}<>").rstrip(".,;:!?").strip("`'\"“”‘’")
    return t.lower()


@dataclass(frozen=True)
class Identifier:
    text: str
    norm: str
    kind: str  # code | name | hyphenated | version | word
    start: int
    end: int

    @property
    def family(self) -> str:
        """What a near miss shares with it: a path's parent, a name's first word, a variable's prefix."""
        n = self.norm
        if self.kind == "name":
            return n.split()[0] if " " in n else n
        parts = re.split(r"[/_\-.]", n.strip("/-$"))
        return parts[0] if parts and parts[0] else n


_DAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
_NAME_WORDS = re.compile(r"[A-Z][\w&'\-]*")


def _names(text: str, offset: int = 0) -> list[Identifier]:
    """Proper names: runs of capitalised words ("Free Software Foundation", "Regents of the University of
    California", "Exhibit B"), not a lone capital at the start of a sentence."""
    out = []
    for m in re.finditer(r"(?<![\w\-])(?:[A-Z][\w&'\-]*)(?:(?:\s+(?:of|the|for|de|and))*\s+[A-Z][\w&'\-]*)*"
                         r"(?:,?\s+Inc\.?)?", text):
        raw = m.group(0).rstrip(",")
        words = _NAME_WORDS.findall(raw)
        if not words:
            continue
        sentence_start = m.start() == 0 or re.search(r"(?:[.!?:;]\s*|\n\s*|^\s*|[\"'(]\s*)$", text[:m.start()])
        if all(w.lower() in _MONTHS or w.lower() in _DAYS for w in words):
            continue
        if len(words) == 1:
            w = words[0]
            if sentence_start or w.lower() in STOP or w.upper() == w or w in ("I",):
                continue
            if _looks_code(w):
                continue
        lead = raw
        first = lead.split()[0]
        if sentence_start and first.lower() in STOP and len(words) > 1:  # "The Mozilla Foundation"
            lead = lead[len(first):].strip()
        norm = re.sub(r",?\s+inc\.?$", "", norm_id(lead))
        norm = re.sub(r"^the\s+", "", norm)
        if norm and norm not in STOP:
            out.append(Identifier(lead, norm, "name", offset + m.start(), offset + m.end()))
    return out


def identifiers(text: str, offset: int = 0) -> list[Identifier]:
    """Identifiers in a text: code-like tokens, versions, names, quoted terms."""
    out: list[Identifier] = []
    for m in _ID_TOKEN.finditer(text):
        raw = m.group(0)
        tok = raw.rstrip(".:")
        if not tok:
            continue
        if _looks_code(tok) and not _is_number(tok):
            kind = "code"
        elif re.fullmatch(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)+", tok):
            kind = "hyphenated"
        else:
            continue
        out.append(Identifier(tok, norm_id(tok), kind, offset + m.start(), offset + m.start() + len(tok)))
    for m in re.finditer(r"[`\"“'‘]([^`\"”'’\n]{1,40})[`\"”'’]", text):  # quoted terms: `no`, "binary-targets"
        inner = m.group(1).strip()
        if inner and not any(i.start <= offset + m.start(1) < i.end for i in out) and len(inner.split()) <= 3:
            out.append(Identifier(inner, norm_id(inner), "code", offset + m.start(1), offset + m.end(1)))
    out += [n for n in _names(text, offset) if not any(i.start <= n.start < i.end for i in out)]
    return sorted(out, key=lambda i: i.start)


def _is_number(tok: str) -> bool:
    return bool(re.fullmatch(r"[\d.,]+", tok))


# ---------------------------------------------------------------- quantities

@dataclass(frozen=True)
class Quantity:
    value: float  # as written (number words, separators, "16 * 1024" and "16K" resolved)
    unit: str | None
    dimension: str | None
    bases: tuple[float, ...]  # the value in its dimension's base unit (several if the unit is ambiguous)
    text: str
    start: int
    end: int
    kind: str = "value"  # value | section | ordinal | range-end | date | version
    raw: tuple[float, ...] = ()  # the values as written, for comparing with a number given without a unit

    @property
    def calendar(self) -> bool:
        return self.unit in _CALENDAR

    def shown(self) -> str:
        return self.text


def words_to_number(words: str) -> float | None:
    """"forty-five" -> 45, "a hundred" -> 100; None when the words are not a number."""
    parts = [w for w in re.split(r"[\s-]+", words.lower()) if w and w != "and"]
    if parts and parts[0] in ("a", "an"):
        if len(parts) < 2 or parts[1] not in _SCALES:
            return None  # "a day" is no number here
        parts[0] = "one"
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
    return float(total + current) if seen else None


def _unit_after(text: str, pos: int) -> tuple[str | None, str | None, tuple[float, ...], int, str]:
    """The unit written right after a number at `pos`: (unit, dimension, bases, end, word)."""
    m = re.match(r"\s?(%)", text[pos:])
    if m:
        return "%", "fraction", (0.01,), pos + m.end(), "%"
    m = re.match(r"(?:\s|-)?([KMG])(i?B)?\b", text[pos:])
    if m and (m.group(1) != "M" or m.group(2)):
        letter, suffix = m.group(1), (m.group(2) or "")
        if suffix:
            u, d, b = UNITS[(letter + suffix).lower()]
            return u, d, b, pos + m.end(), m.group(0).strip()
        return "k", None, (1000.0, 1024.0), pos + m.end(), letter
    m = re.match(r"(?:\s|-)?B\b", text[pos:])
    if m:
        return "byte", "data", (1.0,), pos + m.end(), "B"
    m = re.match(r"(?:\s|-)?(?:per\s+cent|percent)\b", text[pos:], re.I)
    if m:
        return "%", "fraction", (0.01,), pos + m.end(), "percent"
    m = re.match(r"(?:[\s-]|\s-\s)?((?:[A-Za-zµ]+[\s-]){0,2})([A-Za-zµ]+)(?![\w'])", text[pos:])
    if not m:
        return None, None, (), pos, ""
    lead_words = [w.lower() for w in re.split(r"[\s-]+", m.group(1)) if w]
    word = m.group(2)
    low = word.lower()
    if lead_words and not all(w in _UNIT_ADJECTIVES for w in lead_words):
        # only adjectives may stand between the number and its unit; else read the first word alone
        m = re.match(r"(?:[\s-])?([A-Za-zµ]+)(?![\w'])", text[pos:])
        if not m:
            return None, None, (), pos, ""
        lead_words, word, low = [], m.group(1), m.group(1).lower()
    if any(w in _BUSINESS for w in lead_words) and low in ("day", "days"):
        return "business-day", "business-day", (1.0,), pos + m.end(), f"{' '.join(lead_words)} {word}"
    if low in UNITS:
        if low in ("x",) and not re.match(r"x\b", text[pos:]):  # "3 x 4" is a product, "3x" is times
            return None, None, (), pos, ""
        if low in ("m", "s", "g", "l", "h", "v", "w") and text[pos:pos + 1] == " " and word.isupper():
            return None, None, (), pos, ""
        u, d, b = UNITS[low]
        return u, d, b, pos + m.end(), word
    # a counted noun: "10 releases", "50 shares" (a plural, not a verb: "0 removes the limit")
    follow = text[pos + m.end():pos + m.end() + 6].lstrip().lower()
    if (low.endswith("s") and len(low) > 3 and low not in STOP and low not in _VERB_AFTER
            and not follow.startswith(("the ", "a ", "an ", "it ", "to "))):
        return stem(low), stem(low), (1.0,), pos + m.end(), word
    return None, None, (), pos, ""


def quantities(text: str, offset: int = 0) -> list[Quantity]:
    """The quantities in a text, in order; citation markers [n] and numbers inside identifiers are not
    quantities; dates are read as dates and versions as versions."""
    out: list[Quantity] = []
    taken: list[tuple[int, int]] = []

    def free(a: int, b: int) -> bool:
        return not any(a < y and x < b for x, y in taken)

    masked = re.sub(r"\[\s*\d{1,2}(?:\s*[,–-]\s*\d{1,2})*\s*\]", lambda m: " " * len(m.group(0)), text)
    # phone numbers and other digit groups joined by dashes ("1-800-555-0147") are names, not quantities
    masked = re.sub(r"(?<![\w.])\+?\d{1,4}(?:-\d{2,4}){2,}(?!\w)", lambda m: " " * len(m.group(0)), masked)
    # numbers inside identifiers (x86-64, UTF-8, HTTP/1.1, LICENSE-2.0, ffi_type_uint8) are not quantities
    for ident in identifiers(masked):
        if ident.kind in ("code", "hyphenated") and re.search(r"[A-Za-z]", ident.text) and \
                not re.fullmatch(r"\d+(?:\.\d+)?[A-Za-z]+", ident.text) and not _NUMBER_WORDS.fullmatch(ident.text) \
                and not re.fullmatch(r"\d+-[a-z]+", ident.text):  # "forty-five", "30-day" are numbers
            taken.append((ident.start, ident.end))
    # dates: "29 June 2007", "June 29, 2007", "January 2004"
    month = "|".join(sorted(_MONTHS, key=len, reverse=True))
    for m in re.finditer(rf"\b(?:(\d{{1,2}})\s+)?({month})\.?(?:\s+(\d{{1,2}}),?)?\s+(\d{{4}})\b", masked, re.I):
        if not free(m.start(), m.end()):
            continue
        day = int(m.group(1) or m.group(3) or 0)
        mon = _MONTHS[m.group(2).lower()]
        year = int(m.group(4))
        value = year * 10000 + mon * 100 + day
        out.append(Quantity(float(value), "date", "date", (float(value),), m.group(0), offset + m.start(),
                            offset + m.end(), "date", (float(value),)))
        taken.append((m.start(), m.end()))
    # fractions in words: "half", "a third"
    for m in _FRACTION.finditer(masked):
        if free(m.start(), m.end()):
            v = _FRACTIONS[" ".join(m.group(0).lower().split())]
            out.append(Quantity(v, "fraction", "fraction", (v,), m.group(0), offset + m.start(), offset + m.end(),
                                raw=(v, v * 100)))
            taken.append((m.start(), m.end()))
    # numbers in words: "thirty days", "one minute" (a lone "one"/"a" only before a unit)
    for m in _NUMBER_WORDS.finditer(masked):
        if not free(m.start(), m.end()):
            continue
        words = m.group(0)
        value = words_to_number(words)
        if value is None:
            continue
        unit, dim, bases, end, _ = _unit_after(masked, m.end())
        if words.lower() == "one" and unit is None:
            continue
        if unit is None and re.match(r"\s+of\b", masked[m.end():]) and value < 10:
            continue  # "two of them"
        out.append(_quantity(value, unit, dim, bases, masked, m.start(), end, offset))
        taken.append((m.start(), end))
    # "once", "twice": counts of times
    for m in re.finditer(r"\b(once|twice|thrice)\b", masked, re.I):
        if free(m.start(), m.end()):
            v = {"once": 1.0, "twice": 2.0, "thrice": 3.0}[m.group(1).lower()]
            out.append(Quantity(v, "times", "times", (v,), m.group(0), offset + m.start(), offset + m.end(),
                                raw=(v,)))
            taken.append((m.start(), m.end()))
    # "a minute", "an hour": one of a time unit
    for m in re.finditer(r"\b(an?)\s+(second|minute|hour|day|week|month|year|kilobyte|megabyte|byte)\b", masked,
                         re.I):
        if free(m.start(), m.end()):
            u, d, b = UNITS[m.group(2).lower()]
            out.append(_quantity(1.0, u, d, b, masked, m.start(), m.end(), offset))
            taken.append((m.start(), m.end()))
    for m in _DIGITS.finditer(masked):
        a, b = (m.start("cur") if m.group("cur") else m.start("num")), m.end()
        num = m.group("num")
        if not free(a, b):
            continue
        before = masked[a - 1] if a > 0 else " "
        if (before.isalnum() or before in "_") and not m.group("cur"):
            continue
        if before in ".-/" and a > 1 and masked[a - 2].isalnum() and not (before == "-" and masked[a - 2].isdigit()):
            continue
        if num.count(".") >= 2 or _version_context(masked, a):  # 1.19.1, version 3, LSB 1.3
            taken.append((a, b))
            continue
        value = float(num.replace(",", ""))
        end = b
        product = _TIMES.match(masked, end)
        factors = 0
        while product:  # 16 * 1024, 1024 * 1024
            value *= float(product.group(1))
            end = product.end()
            factors += 1
            product = _TIMES.match(masked, end)
        ordinal = re.match(r"(?:st|nd|rd|th)\b", masked[end:])
        if ordinal:
            out.append(Quantity(value, None, None, (value,), masked[a:end + ordinal.end()], offset + a,
                                offset + end + ordinal.end(), "ordinal", (value,)))
            taken.append((a, end + ordinal.end()))
            continue
        cur = m.group("cur")
        if cur:
            unit, dim, bases, uend = _CURRENCY[cur], _CURRENCY[cur], (1.0,), end
            ku = re.match(r"\s?([kK])\b", masked[end:])
            if ku:
                value *= 1000
                uend = end + ku.end()
        else:
            unit, dim, bases, uend, _ = _unit_after(masked, end)
        q = _quantity(value, unit, dim, bases, masked, a, uend, offset)
        out.append(q)
        taken.append((a, uend))
    for m in re.finditer(r"\b(?:Infinity|infinite|unlimited)\b", masked):
        if free(m.start(), m.end()):
            out.append(Quantity(math.inf, None, None, (math.inf,), m.group(0), offset + m.start(), offset + m.end(),
                                raw=(math.inf,)))
    out.sort(key=lambda q: q.start)
    return _mark(out, masked, offset)


def _version_context(text: str, pos: int) -> bool:
    token = re.search(r"(\S+)\s*$", text[max(0, pos - 40):pos])
    words = [token.group(1).lower().strip("(,:;")] if token else []
    prev = text[max(0, pos - 1):pos]
    if prev in ("v", "V") and (pos < 2 or not text[pos - 2].isalpha()):
        return True
    if not words:
        return False
    w = words[-1]
    num = re.match(r"\d+(?:\.\d+)?", text[pos:])
    decimal = bool(num and "." in num.group(0))
    if w in ("version", "versions", "v", "release", "lsb", "dpkg", "gplv", "python", "node", "debian", "http"):
        return True
    if decimal and re.search(r"(?:[A-Z]{2,}|License|Licence|Policy)\s*$", text[max(0, pos - 20):pos]):
        return True
    return False


def _quantity(value: float, unit: str | None, dim: str | None, bases: tuple[float, ...], text: str, a: int,
              end: int, offset: int) -> Quantity:
    if unit == "k":  # "16K": a thousand or 1024, of something unsaid (never the bare 16)
        return Quantity(value, "k", None, tuple(value * b for b in bases), text[a:end].strip(), offset + a,
                        offset + end, raw=tuple(value * b for b in bases))
    if unit is None:
        return Quantity(value, None, None, (value,), text[a:end].strip(), offset + a, offset + end, raw=(value,))
    return Quantity(value, unit, dim, tuple(value * b for b in bases), text[a:end].strip(), offset + a,
                    offset + end, raw=(value,))


_RANGE = re.compile(r"(?:\bfrom\s+|\bbetween\s+)?(?P<a>\S+)\s*(?:-|–|to|through|and|until|—)\s*(?P<b>\S+)")


def _mark(found: list[Quantity], text: str, offset: int) -> list[Quantity]:
    """Section numbers, and the ends of ranges ("from 8 to 15", "1-9", "between 0 and 99")."""
    out = []
    for q in found:
        a = q.start - offset
        token = re.search(r"(\S+)\s*$", text[max(0, a - 40):a])
        prev = [token.group(1).lower().strip("(,:;")] if token and re.search(r"[A-Za-z§#]", token.group(1)) else []
        kind = q.kind
        bound = re.search(r"(?<!no )\b(?:more|less|fewer|greater|higher|lower|longer|shorter)\s+than\s*$",
                          text[max(0, a - 30):a], re.I)
        if kind == "value" and bound:
            kind = "bound"  # "more than once" is not once
            q = Quantity(q.value, q.unit, q.dimension, q.bases, f"{bound.group(0).strip()} {q.text}", q.start, q.end,
                         q.kind, q.raw)
        elif kind == "value" and q.unit is None and prev and prev[-1].rstrip(".") in _SECTION_WORDS:
            kind = "section"
        elif kind == "value" and q.unit is None and re.search(r"§\s*$", text[max(0, a - 3):a]):
            kind = "section"
        elif kind == "value" and q.unit is None and re.match(r"\d+[a-z]\b", text[a:a + 4]) and prev and \
                prev[-1] in ("section", "subsection"):
            kind = "section"
        out.append(q if kind == q.kind else Quantity(q.value, q.unit, q.dimension, q.bases, q.text, q.start, q.end,
                                                     kind, q.raw))
    # "sections 15 and 16", "clauses 3, 4 or 5": a list after a section number is sections too
    for i in range(1, len(out)):
        x, y = out[i - 1], out[i]
        gap = text[x.end - offset:y.start - offset]
        if x.kind == "section" and y.kind == "value" and y.unit is None and \
                re.fullmatch(r"\s*(?:,|or|and|,\s*or|,\s*and)\s*", gap):
            out[i] = _as(y, "section")
    # "4 or 8 bytes", "32, 64 or 128 bits": a bare number takes the unit of the one it lists with
    for i in range(len(out) - 2, -1, -1):
        x, y = out[i], out[i + 1]
        gap = text[x.end - offset:y.start - offset]
        if x.unit is None and y.unit and x.kind == y.kind == "value" and y.value and \
                re.fullmatch(r"\s*(?:,|or|and|,\s*or|,\s*and)\s*", gap):
            out[i] = Quantity(x.value, y.unit, y.dimension, tuple(x.value * b / y.value for b in y.bases), x.text,
                              x.start, x.end, x.kind, x.raw)
    # ranges: two quantities joined by "to", "-", "through" or "between ... and"
    for i in range(len(out) - 1):
        x, y = out[i], out[i + 1]
        gap = text[x.end - offset:y.start - offset]
        lead = text[max(0, x.start - offset - 9):x.start - offset].lower()
        is_range = re.fullmatch(r"\s*(?:-|–|—|to|through|thru|until)\s*", gap) or (
            re.fullmatch(r"\s*and\s*", gap) and lead.rstrip().endswith("between"))
        if is_range and x.kind == "section" and y.kind == "value":  # "sections 1 through 9"
            out[i + 1] = _as(y, "section")
        elif is_range and x.kind in ("value", "section") and y.kind in ("value", "section"):
            if x.kind == "value":
                out[i] = _as(x, "range-end")
            if y.kind == "value":
                out[i + 1] = _as(y, "range-end")
            if out[i].unit is None and y.unit:  # "8 to 15 bits": the first end takes the second's unit
                out[i] = Quantity(x.value, y.unit, y.dimension, tuple(x.value * b / y.value for b in y.bases)
                                  if y.value else y.bases, x.text, x.start, x.end, out[i].kind, x.raw)
    return out


def _as(q: Quantity, kind: str) -> Quantity:
    return Quantity(q.value, q.unit, q.dimension, q.bases, q.text, q.start, q.end, kind, q.raw)


def same_quantity(a: Quantity, b: Quantity) -> bool:
    """Whether two quantities state the same amount: in one dimension after conversion ("36 months" = "three
    years", "16 KiB" = "16384 bytes"), or by the number written when one of them has no unit."""
    if a.kind == "date" or b.kind == "date":
        return a.kind == b.kind == "date" and _same_date(a.value, b.value)
    if a.dimension and b.dimension:
        if a.dimension != b.dimension:
            return False
        tol = 0.01 if (a.calendar or b.calendar) and a.unit != b.unit else 1e-6
        return any(_close(x, y, tol) for x in a.bases for y in b.bases)
    # one of them without a unit: its number against the other's number or base value ("16384" = "16 KiB")
    xs = set(a.raw or (a.value,)) | (set(a.bases) if a.unit else set())
    ys = set(b.raw or (b.value,)) | (set(b.bases) if b.unit else set())
    return any(_close(x, y, 1e-6) for x in xs for y in ys)


def same_number_other_unit(a: Quantity, b: Quantity) -> bool:
    """The same number written with a different unit ("16384 kilobytes" for 16384 bytes)."""
    return bool(a.unit and b.unit and a.unit != b.unit and _close(a.value, b.value, 1e-9))


def _close(x: float, y: float, tol: float) -> bool:
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= tol * max(1.0, abs(x), abs(y))


def _same_date(x: float, y: float) -> bool:
    xy, xm, xd = int(x) // 10000, int(x) // 100 % 100, int(x) % 100
    yy, ym, yd = int(y) // 10000, int(y) // 100 % 100, int(y) % 100
    return xy == yy and (not xm or not ym or xm == ym) and (not xd or not yd or xd == yd)


def is_year(q: Quantity) -> bool:
    return q.unit is None and q.kind == "value" and 1900 <= q.value <= 2100 and q.value == int(q.value)


def versions(text: str) -> list[str]:
    """Version numbers named in a text ("1.19.1", "version 3", "LSB 1.3", "GPLv3"), normalised."""
    out = []
    for m in re.finditer(r"(?i)(?:\bversion\s+|\bv|\b(?:lsb|dpkg|release|gpl|lgpl|agpl|mpl|http/?)\s*)?"
                         r"(?<![\w.])(\d+(?:\.\d+)+|\d+)(?![\w.]*\w)", text):
        num = m.group(1)
        prefix = m.group(0)[:m.start(1) - m.start(0)]
        if num.count(".") >= 1 and (num.count(".") >= 2 or prefix.strip() or _version_context(text, m.start(1))):
            out.append(_norm_version(num))
        elif prefix.strip():
            out.append(_norm_version(num))
    for m in re.finditer(r"(?i)\b(?:gpl|lgpl|agpl|mpl|python|node|v)v?(\d+(?:\.\d+)*)\b", text):
        out.append(_norm_version(m.group(1)))
    return list(dict.fromkeys(out))


def _norm_version(v: str) -> str:
    parts = v.split(".")
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return ".".join(parts)


# ---------------------------------------------------------------- segments

@dataclass
class Segment:
    text: str
    start: int
    end: int
    aside: bool = False  # in parentheses, or a detail after "value:"
    contrast: bool = False  # "not X", "rather than X", "unlike X", "such as X"
    negated: bool = False
    quantities: list[Quantity] = field(default_factory=list)
    identifiers: list[Identifier] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    roles: set[str] = field(default_factory=set)

    @property
    def claim(self) -> bool:
        return not (self.aside or self.contrast)


_CONTRAST_START = re.compile(
    r"^\s*(?:[-–—,:]\s*)?(?:and\s+)?(?:not|rather\s+than|instead\s+of|unlike|as\s+opposed\s+to|compared\s+(?:with|to)|"
    r"versus|vs\.?|in\s+contrast\s+to|other\s+than|except\s+for|apart\s+from|against)\b", re.I)
_EXAMPLE = re.compile(r"\b(?:a|an|any)\s+(?:larger|smaller|higher|lower|bigger|greater|different|other|longer|"
                      r"shorter)\s+(?:\w+\s+){0,2}(?:such\s+as|like|e\.g\.?|for\s+example)|"
                      r"\b(?:for\s+example|for\s+instance|e\.g\.)", re.I)
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[`\"'])|\n\s*\n\s*|\n(?=\s*(?:[*•#>|]|-\s|\d+\.\s))|;\s*|,\s+and\s+|\s+[-–—]\s+|,?\s+(?:while|whereas|but|although|though|"
                    r"however)\s+|,\s+(?=compared\s+(?:with|to)\b)|(?<![Bb]etween)(?<=\S)\s+and\s+(?=(?:the\s+|its\s+|"
                    r"a\s+|an\s+)?[`'\"]?[A-Za-z_\-]+[`'\"]?(?:\s+\w+)?\s*(?:(?:is|are|was|were|to|defaults?|has|"
                    r"had|took|needs?|needed|takes?|of|for|\d)\b|[:=]))|,\s+(?=or\s|not\s|rather\s|instead\s|unlike\s)|"
                    r"\.\s+(?=[A-Z])", re.I)


def segments(text: str) -> list[Segment]:
    """The text cut into clauses, each marked aside / contrast / negated, with its claims."""
    fences = [(m.start(), m.end()) for m in re.finditer(r"```.*?(?:```|$)", text, re.S)]
    if fences:  # a fenced code block is an example, not a claim: an aside of its own
        out: list[Segment] = []
        pos = 0
        for a, b in fences:
            out += [s for s in _shifted(segments(text[pos:a]), pos, text)]
            out.append(_make(text, a, b, True))
            pos = b
        out += [s for s in _shifted(segments(text[pos:]), pos, text)]
        return out
    spans: list[tuple[int, int, bool]] = []  # (start, end, aside)
    depth, start = 0, 0
    for i, ch in enumerate(text):  # parentheses are asides
        if ch == "(":
            if depth == 0 and i > start:
                spans.append((start, i, False))
                start = i + 1
            elif depth == 0:
                start = i + 1
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0:
                spans.append((start, i, True))
                start = i + 1
    spans.append((start, len(text), depth > 0))
    out: list[Segment] = []
    for a, b, aside in spans:
        piece = text[a:b]
        pos = 0
        cuts = [m for m in _SPLIT.finditer(piece)]
        bounds = []
        for m in cuts:
            bounds.append((pos, m.start()))
            pos = m.end()
        bounds.append((pos, len(piece)))
        for x, y in bounds:
            chunk = piece[x:y]
            if not chunk.strip():
                continue
            out.extend(_segment(text, a + x, a + y, aside))
    _details_after_colon(out, text)
    return out


def _shifted(segs: list[Segment], offset: int, text: str) -> list[Segment]:
    return [_make(text, s.start + offset, s.end + offset, s.aside, s.contrast) for s in segs]


def _segment(text: str, a: int, b: int, aside: bool) -> list[Segment]:
    """One clause, with "not X but Y" split into a contrast X and a claim Y."""
    chunk = text[a:b]
    m = re.search(r"\bnot\s+(.+?)\s*,?\s+but\s+", chunk, re.I)
    if m and not re.match(r"(?:only|just|merely)\b", m.group(1), re.I):
        first = _make(text, a, a + m.end(1), aside, contrast=True)
        rest = _make(text, a + m.end(), b, aside)
        head = _make(text, a, a + m.start(), aside) if chunk[:m.start()].strip() else None
        return [s for s in (head, first, rest) if s is not None]
    ex = _EXAMPLE.search(chunk)
    if ex:
        head = _make(text, a, a + ex.start(), aside) if chunk[:ex.start()].strip() else None
        tail = _make(text, a + ex.start(), b, aside, contrast=True)
        return [s for s in (head, tail) if s is not None]
    m = re.search(r"\s+(?:rather\s+than|instead\s+of|unlike|as\s+opposed\s+to)\s+", chunk, re.I)
    if m:
        return [_make(text, a, a + m.start(), aside), _make(text, a + m.start(), b, aside, contrast=True)]
    return [_make(text, a, b, aside, contrast=bool(_CONTRAST_START.match(chunk)) and not _NEG_VERB.match(chunk))]


_NEG_VERB = re.compile(r"^\s*(?:[-–—,:]\s*)?not\s+(?:completely|fully|entirely|always|necessarily|at\s+all|"
                       r"without|stated|specified|mentioned|given|covered|defined|listed|provided|supported|"
                       r"allowed|permitted|required|applicable|available|really|exactly|precisely|clear|known|"
                       r"sure|certain)\b", re.I)


def _make(text: str, a: int, b: int, aside: bool, contrast: bool = False) -> Segment:
    chunk = text[a:b]
    roles = {ROLE_WORDS[w.lower()] for w in re.findall(r"[A-Za-z]+", chunk) if w.lower() in ROLE_WORDS}
    if re.search(r"\bat\s+(?:least|minimum)\b|\bno\s+(?:less|fewer|smaller)\s+than\b", chunk, re.I):
        roles.add("minimum")
    if re.search(r"\bat\s+most\b|\bup\s+to\b|\bno\s+more\s+than\b|\bno\s+larger\s+than\b", chunk, re.I):
        roles.add("maximum")
    return Segment(chunk, a, b, aside, contrast, negated(chunk), [], identifiers(chunk, a), content_words(chunk),
                   roles)


def _details_after_colon(segs: list[Segment], text: str) -> None:
    """In "256K: 128K for windowBits plus 128K for memLevel" the values after the colon detail the first."""
    for s in segs:
        m = re.search(r":\s+", s.text)
        if m and re.search(r"\d", s.text[:m.start()]) and re.search(r"\d", s.text[m.end():]):
            s.text = s.text  # the split is done by quantity position below
            s.roles.add("_detail_after:" + str(s.start + m.start()))


@dataclass
class Claims:
    text: str
    segments: list[Segment]
    quantities: list[Quantity]
    identifiers: list[Identifier]
    versions: list[str]
    words: list[str]

    def segment_of(self, start: int) -> Segment | None:
        return next((s for s in self.segments if s.start <= start < s.end), None)


def _split_listed(segs: list[Segment], text: str) -> list[Segment]:
    """"Default 50, max 100": a clause listing values each after its own role or name is one claim each."""
    out: list[Segment] = []
    role = "|".join(sorted(ROLE_WORDS, key=len, reverse=True))
    for s in segs:
        cuts = [m.start() for m in re.finditer(rf",\s+(?=(?:the\s+)?(?:{role})\b|[A-Za-z]+[A-Z_]\w*\b)", s.text)]
        if not cuts or len(re.findall(r"\d", s.text)) < 2:
            out.append(s)
            continue
        bounds = [0, *cuts, len(s.text)]
        pieces = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
        if sum(bool(re.search(r"\d", s.text[a:b])) for a, b in pieces) < 2:
            out.append(s)
            continue
        for a, b in pieces:
            lead = len(s.text[a:b]) - len(s.text[a:b].lstrip(", "))
            out.append(_make(text, s.start + a + lead, s.start + b, s.aside, s.contrast))
    return out


def extract(text: str) -> Claims:
    """Everything `lib.grading` compares, read from one text."""
    segs = _split_listed(segments(text), text)
    found = quantities(text)
    for q in found:
        s = next((s for s in segs if s.start <= q.start < s.end), None)
        if s is None:
            continue
        detail = next((int(r.split(":")[1]) for r in s.roles if r.startswith("_detail_after:")), None)
        if detail is not None and q.start > detail:
            q = _as(q, "detail") if q.kind == "value" else q
        s.quantities.append(q)
    for s in segs:
        s.roles = {r for r in s.roles if not r.startswith("_detail_after:")}
    quants = [q for s in segs for q in s.quantities]
    return Claims(text, segs, quants, identifiers(text), versions(text), content_words(text))
