"""Grading an answer against a reference, offline and explainably: the claim, not the words.

Every grade has pass/fail, a score in 0..1, whether the answer was a refusal, a one-line reason that
names what decided it, and (given the retrieved sources) whether its citations hold. The steps:

1. Refusals, by meaning: patterns for negated existence or availability ("the specification describes no
   such thing", "I could not find this", "that is not covered here") and, with the local embedder, similarity
   to examples of refusals against examples of negated facts. A refusal of an answerable question is wrong;
   on a question the documents do not answer it is right, and any other answer there is a fabrication. A
   partial refusal that still asserts a value ("not stated, but probably 30 days") is graded on the value.
2. The answer's claims (`lib.claims`): values with their units and the subject or role they are bound to,
   identifiers, versions, and polarity scoped to the claim. Numbers and words from the question, section
   and clause numbers, range ends, and contrasts ("not 60 but 30 days", "a larger value such as 64 * 1024")
   are not claims.
3. Compared with the reference's claims (or the `keywords`, when given): quantities after unit conversion
   ("36 months" = "three years", "16 KiB" = 16384 bytes; "16384 kilobytes" is not), identifiers exactly
   (case and quotes aside: "/usr/bin/sync" is not "/bin/sync", "Mozilla Corporation" not "Mozilla
   Foundation"), values role by role ("the default is 100 and the maximum 50" swaps them), several values
   for one claim a hedge; yes/no questions by polarity; other answers by the reference's words that the
   question does not already contain (an answer that echoes the question proves nothing), helped by the
   embedder's similarity when given.
4. Citations: correct only when a cited source supports the answer's own claim (its value or identifier
   stated there for the subject asked, or for other claims the same comparison against the source); a
   number that points to no retrieved source is wrong.

`similarity(a, b)` (the local embedder's cosine) is optional: without it refusals are found by patterns
alone and word answers by word overlap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from typing import Any

from lib.claims import (
    Claims,
    Identifier,
    Quantity,
    Segment,
    content_words,
    extract,
    is_year,
    negated,
    norm_id,
    same_number_other_unit,
    same_quantity,
    words_to_number,
)
from lib.claims import quantities as _claim_quantities

Similarity = Callable[[str, str], float]

# ---------------------------------------------------------------- normalising (also used by lib.freshness)

_NUMBER_WORD = re.compile(
    r"\b(?:(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|"
    r"million|a|an)(?:[\s-]+(?:and[\s-]+)?)?)+\b", re.I)


def normalise(text: str) -> str:
    """Lower case, thousands separators dropped, number words as digits, 'percent' as '%'."""
    t = " ".join(text.lower().replace("\u2019", "'").split())
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)

    def spell(m: re.Match[str]) -> str:
        raw = m.group(0)
        words = raw.strip()
        lead = ""
        head = re.match(r"(an?|one)[\s-]+(?!hundred|thousand|million)", words)
        if head:
            lead, words = words[:head.end()], words[head.end():]
        if words in ("a", "an", "one", ""):
            return raw
        value = words_to_number(words)
        if value is None:
            return raw
        return f"{lead}{value:g}{raw[len(raw.rstrip()):]}"

    t = _NUMBER_WORD.sub(spell, t)
    t = re.sub(r"(\d)\s*(?:per cent|percent)\b", r"\1%", t)
    return t


def quantities(text: str) -> list[Quantity]:
    """The quantities in a text (see lib.claims): value, unit, text."""
    return _claim_quantities(text)


# ---------------------------------------------------------------- refusals

_DOC = (r"(?:documents?|sources?|context|passages?|texts?|excerpts?|pages?|spec(?:ification)?s?|licen[cs]es?|"
        r"faq|documentation|docs|materials?|manual|information|snippets?|results?|chunks?|articles?|files?|"
        r"here|retrieved|provided|given|above|notes?|policy|guide|readme|terms|it|they|this|these)")
_SAY = (r"(?:say|says|said|saying|state|states|stated|mention|mentions|mentioned|specify|specifies|specified|cover|"
        r"covers|covered|address|addresses|addressed|describe|describes|described|discuss|discusses|discussed|"
        r"define|defines|defined|tell|tells|told|answer|answers|answered|explain|explains|explained|indicate|"
        r"indicates|indicated|spell|spells|spelled|spelt|detail|details|detailed|document|documents|documented|"
        r"list|lists|listed|name|names|named|reveal|reveals|set\s+out|sets\s+out|touch|touches|clarify|clarifies|"
        r"clarified|identify|identifies|identified|confirm|confirms|confirmed|show|shows|shown|appear|appears|"
        r"given|provide\s+(?:that|this|it|any|such|an?\s+answer|the\s+answer|information|details)|"
        r"include\s+(?:that|this|it|any|such|information|details)|"
        r"contain\s+(?:that|this|it|any|such|information|details)|"
        r"give\s+(?:that|this|it|any|such|a\s+(?:figure|number|value|date)|information|details))")
_REFUSAL_PATTERNS = [re.compile(p, re.I) for p in (
    # first person: cannot find, do not know, not sure
    r"\bI\s*(?:do\s*n[o']t|don't|dont|did\s*n[o']t|didn't|cannot|can't|can\s+not|could\s*n[o']t|couldn't|"
    r"am\s+unable\s+to|'m\s+unable\s+to|am\s+not\s+able\s+to|'m\s+not\s+able\s+to|was\s+unable\s+to|"
    r"was\s+not\s+able\s+to|have\s+no|haven't|have\s+not|wasn't\s+able\s+to)\s+(?:\w+\s+){0,2}?"
    r"(?:know|find|found|see|locate|determine|tell|say|answer|confirm|identify|give|provide|access|have|"
    r"information|idea|data|details|verify|work\s+out|figure|extract)\b",
    r"\bI(?:'m|\s+am)\s+(?:not\s+(?:sure|certain|aware)|unsure|uncertain|unaware|afraid)\b",
    r"\b(?:no|not\s+enough|insufficient)\s+(?:information|idea|data|details?|context|evidence)\b",
    r"\bnot\s+sure\b|\bunsure\b",
    # the documents lack it
    rf"\b{_DOC}\b[^.;!?]{{0,60}}?\b(?:do|does|did|can|could|will|would)\s*(?:n[o']t|\s+not|n't)\s+"
    rf"(?:\w+\s+){{0,2}}?{_SAY}",
    rf"\b{_DOC}\b[^.;!?]{{0,60}}?\b(?:never|nowhere)\s+(?:\w+\s+){{0,2}}?{_SAY}",
    rf"\b{_DOC}\b[^.;!?]{{0,40}}?\b(?:says?|states?|mentions?|specif(?:y|ies)|gives?|lists?|contains?|"
    rf"provides?|offers?|includes?|describes?|holds?|has|have|makes?)\s+(?:nothing|no\s+(?:such|mention|"
    r"information|details?|figure|number|value|indication|reference|data|word)|none)\b",
    rf"\b{_DOC}\b[^.;!?]{{0,40}}?\b(?:is|are|was|were|remains?|stays?)\s+(?:silent|unclear|vague|mute)\b",
    r"\b(?:silent|quiet)\s+(?:on|about|regarding)\b",
    r"\b(?:there\s+is|there's|there\s+are|there\s+were|there\s+was)\s+no\s+(?:\w+\s+){0,3}?(?:information|mention|"
    r"details?|data|reference|indication|record|such|answer|statement|specification|figure|number|value|"
    r"evidence|documentation)\b",
    r"\bno\s+(?:such|mention|indication|record)\b",
    rf"\bnothing\s+in\s+(?:\w+\s+){{0,3}}?{_DOC}\b[^.;!?]{{0,60}}?{_SAY}",
    rf"\b(?:neither|no|none\s+of\s+the)\s+(?:of\s+the\s+)?(?:\w+\s+)?{_DOC}\s+(?:\w+\s+){{0,2}}?{_SAY}",
    rf"\b(?:is|are|was|were)\s*(?:n't|\s+not)\s+(?:anywhere\s+|to\s+be\s+found\s+)?(?:in|among|within)\s+"
    rf"(?:the|these|those|my|any|your|this)\s+(?:\w+\s+)?{_DOC}\b",
    r"\bnone\s+of\s+(?:the\s+|these\s+|those\s+)?(?:\w+\s+)?(?:documents?|sources?|passages?|texts?|excerpts?|"
    r"pages?|results?|snippets?|chunks?)\b",
    r"\b(?:none|nothing)\s+(?:that\s+)?I\s+(?:can|could)\s+(?:find|see|locate)\b",
    # it is not given / cannot be determined
    r"\b(?:cannot|can't|can\s+not|could\s+not|couldn't)\s+be\s+(?:answered|determined|found|known|inferred|"
    r"established|said|told|confirmed|identified|derived|worked\s+out|deduced|located)\b",
    r"(?:^|[.;:!?]\s*)\W*(?:unknown|unclear|not\s+known|not\s+clear|uncertain|n/a|not\s+(?:specified|stated|"
    r"mentioned|given|provided|covered|documented|available|listed|defined|described|found))\b",
    r"\b(?:is|are|was|were|isn't|aren't|wasn't|weren't)\s+(?:not\s+|never\s+)?(?:\w+\s+)?(?:mentioned|specified|"
    r"stated|covered|documented|addressed|discussed|answered|spelled\s+out|spelt\s+out|set\s+out|defined|"
    r"described|detailed|disclosed|listed)\s+(?:in|by|anywhere|here|there)\b",
    r"\bnot\s+(?:something|a\s+(?:thing|detail|point|question))\s+(?:that\s+)?(?:the\s+)?(?:\w+\s+){0,3}?"
    r"(?:covers?|mentions?|says?|discusses?|addresses?|answers?|states?|specifies?)\b",
    r"\bunable\s+to\s+(?:find|answer|determine|locate|tell|say|confirm|identify)\b",
    r"\bbeyond\s+(?:the\s+scope|what)\b.*\b(?:document|source|text|context)",
)]
# isn't/not + availability words, with the documents named in the same clause ("No version number is given
# in the FAQ", "No notice period of that kind appears in the licence", "That isn't covered here")
_AVAILABILITY = re.compile(r"\b(?:given|stated|mentioned|specified|provided|covered|listed|included|described|"
                           r"documented|defined|found|available|known|appears?|shown|determined|named|set\s+out|"
                           r"spelled\s+out|spelt\s+out|answerable|answered|indicated)\b", re.I)
_DOC_WORD = re.compile(r"\b(?:documents?|sources?|context|passages?|texts?|excerpts?|pages?|spec(?:ification)?s?|"
                       r"licen[cs]es?|faq|documentation|docs|materials?|manual|snippets?|results?|chunks?|articles?|"
                       r"files?|here|anywhere|retrieved|provided)\b", re.I)  # no pronouns: "it is not available"

REFUSAL_EXAMPLES = (
    "I don't know.", "I could not find this in the provided documents.", "The documents do not say.",
    "This cannot be answered from the sources.", "The text does not mention that.",
    "There is no information about this in the context.", "The sources are silent on this point.",
    "That is not covered by the documentation.", "The specification describes no such thing.",
    "I'm not able to answer that from the given passages.", "Nothing in the documents addresses this question.",
    "The provided material doesn't give a figure for that.", "No such value is given in the text.",
    "Unfortunately the retrieved excerpts don't include that detail.", "It is not stated anywhere in the sources.",
    "I have no information on that.", "The answer isn't in the documents I was given.",
    "The page doesn't provide this information.", "Not specified in the sources.", "Unknown from the context.",
)
STATEMENT_EXAMPLES = (
    "No, the license does not grant patent rights.", "It is not a law firm.", "They do not satisfy Depends.",
    "The warranty does not cover zips.", "No, it cannot be revoked.", "Web content should not be owned by it.",
    "The licence does not require a fee.", "No one else may publish new versions.", "It is not thread-safe.",
    "Bit fields are not supported.", "It does not terminate their licenses.", "The default is 30 days.",
    "Yes, they survive termination.", "It is a no-op.", "Only occasionally and noncommercially.",
)
# Set before tuning and left there: on eval/labels the patterns alone find every refusal, so the embedder changes no
# grade of that set; it is there for wordings the patterns miss.
REFUSAL_SIMILARITY = 0.62
REFUSAL_MARGIN = 0.08


def _pattern_refusal(text: str) -> bool:
    if any(p.search(text) for p in _REFUSAL_PATTERNS):
        return True
    return negated(text) and bool(_AVAILABILITY.search(text)) and bool(_DOC_WORD.search(text))


def _refusal_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for p in _REFUSAL_PATTERNS for m in p.finditer(text)]


def is_refusal(answer: str, similarity: Similarity | None = None) -> bool:
    """Whether an answer declines or says the documents do not hold the answer, however it is worded."""
    return _refusal_segments(_first_part(answer), extract(_first_part(answer)), similarity) != []


_DOUBT = re.compile(r"\b(?:unknown|unclear|uncertain|unsure|sorry|unfortunately|silent|nothing|none|nowhere|"
                    r"unable|no|not|never|cannot|without|lack|lacks|missing|absent|beyond)\b|n't\b", re.I)


def _refusal_by_meaning(text: str, similarity: Similarity | None) -> bool:
    """Similarity to refusals, against similarity to negated facts (only for clauses with a cue of doubt or
    negation: a refusal says what is not there)."""
    if similarity is None or len(text.split()) > 40 or not text.strip() or not _DOUBT.search(text):
        return False
    refusal = max(similarity(text, e) for e in REFUSAL_EXAMPLES)
    if refusal < REFUSAL_SIMILARITY:
        return False
    statement = max(similarity(text, e) for e in STATEMENT_EXAMPLES)
    return refusal - statement >= REFUSAL_MARGIN


_LACKS = re.compile(r"\b(?:gives?|lists?|states?|provides?|specif(?:y|ies)|mentions?|names?|includes?|contains?|"
                    r"has|have|offers?|shows?|sets?\s+out|places?|puts?|assigns?|defines?)\s+no\s+(?:\w+\s+){0,2}?"
                    r"(\w+)", re.I)


def _lacks_what_was_asked(text: str, question: str) -> bool:
    """"(The page lists www-data but) gives no uid for it": it says the thing asked for is missing."""
    if not question or _YES_NO_QUESTION.match(question):
        return False  # "The licence provides no warranty" answers "Does it provide one?"
    asked = set(content_words(_focus(question)))
    return any(stem_word(m.group(1)) in asked for m in _LACKS.finditer(text))


def stem_word(word: str) -> str:
    from lib.claims import stem

    return stem(word)


def _refusal_segments(text: str, claims: Claims, similarity: Similarity | None, question: str = ""
                      ) -> list[Segment]:
    """The clauses of an answer that decline (empty when it does not decline at all)."""
    segs = [s for s in claims.segments if s.text.strip(" .,;:-")]
    found = [s for s in segs if _pattern_refusal(s.text) or _lacks_what_was_asked(s.text, question)]
    if not found:  # a refusal that spans two clauses: the clauses it covers
        spans = _refusal_spans(text)
        found = [s for s in segs if any(a < s.end and s.start < b for a, b in spans)]
    if not found and similarity is not None:
        found = [s for s in segs if not s.quantities and _refusal_by_meaning(s.text, similarity)]
        if not found and _refusal_by_meaning(text, similarity):
            found = segs[:1]
    return found


# ---------------------------------------------------------------- grades

@dataclass(frozen=True)
class Grade:
    correct: bool
    score: float  # 0..1
    refused: bool
    reason: str
    fabricated: bool = False  # an unanswerable question answered as if the documents said
    method: str = "rules"
    citations: str | None = None  # none | correct | wrong (None: no sources given, not graded)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_part(answer: str) -> str:
    """The answer without its 'Reason:' line (the house style's explanation)."""
    return re.split(r"\n\s*reason\s*:", answer or "", maxsplit=1, flags=re.I)[0]


_YES_NO_QUESTION = re.compile(r"^\s*(?:is|are|was|were|does|do|did|can|could|may|might|must|should|shall|will|"
                              r"would|has|have|had|isn't|aren't|doesn't|don't)\b", re.I)
_LEADING = re.compile(r"^\W*(?:(?:so,?\s+)?the\s+(?:short\s+)?answer(?:\s+to\s+(?:this|your|the)\s+question)?\s+is\s*:?\s*"
                      r"[\"'“]?)?(yes|no|nope|yep|correct|incorrect|true|false)\b", re.I)
_WH = re.compile(r"\b(?:what|which|who|whom|whose|when|where|why|how|in\s+what|at\s+what|by\s+what)\b", re.I)


def _polarity(claims: Claims, text: str) -> str | None:
    m = _LEADING.match(text)
    if m:
        return "yes" if m.group(1).lower() in ("yes", "yep", "correct", "true") else "no"
    main = [s for s in claims.segments if s.claim and s.text.strip(" .,;:-")]
    if main and main[0].negated:
        return "no"
    return None


def _focus(question: str) -> str:
    """The part of a question that asks (from its wh-word on), which the answer's claim should be about."""
    m = _WH.search(question)
    return question[m.start():] if m and m.start() > 0 else question


@dataclass
class _Keys:
    ids: set[str]
    roles: set[str]
    words: set[str]  # what the question asks (its focus), or the reference's own binding
    context: set[str] = dataclass_field(default_factory=set)  # the rest of the question


def _keys(seg: Segment, exclude: set[str] = frozenset()) -> _Keys:  # type: ignore[assignment]
    ids = {i.norm for i in seg.identifiers if i.norm not in exclude}
    ids |= {i.rsplit(".", 1)[-1] for i in ids if "." in i and "/" not in i}  # "options.windowBits" is windowBits
    return _Keys(ids, set(seg.roles), set(seg.words))


def _score(seg: Segment, want: _Keys) -> float:
    k = _keys(seg)
    return (3 * len(k.ids & want.ids) + 2 * len(k.roles & want.roles) + 3 * len(k.words & want.words)
            + len(k.words & (want.context - want.words)))


def _is_echo(q: Quantity, question: Claims, reference: list[Quantity]) -> bool:
    return any(same_quantity(q, x) and x.kind == q.kind for x in question.quantities) and \
        not any(same_quantity(q, r) for r in reference)


def _compatible(ref: Quantity, got: Quantity) -> bool:
    if ref.kind == "date" or got.kind == "date":
        return ref.kind == got.kind
    if ref.dimension and got.dimension:
        return ref.dimension == got.dimension
    return True


@dataclass
class _Fact:
    """One thing the reference (or a keyword) asserts that the answer must assert too."""

    kind: str  # quantity | identifier | version
    text: str
    quantities: list[Quantity]
    identifier: Identifier | None = None
    version: str = ""
    keys: _Keys | None = None
    segment: int = -1  # where in the reference it is stated (facts listed together share one)


def _reference_facts(question: str, reference: str, keywords: Sequence[str], q: Claims, r: Claims
                     ) -> list[_Fact]:
    facts: list[_Fact] = []
    focus = extract(_focus(question))
    focus_keys = _Keys({i.norm for i in focus.identifiers}, {x for s in focus.segments for x in s.roles},
                       set(focus.words))
    if keywords:
        for k in keywords:
            kq = [x for x in _claim_quantities(k) if x.kind in ("value", "date")]
            versionish = re.search(r"\b(?:version|release|v\d)", f"{question} {reference}", re.I) or \
                re.fullmatch(r"\s*v?\d+\.\d+\.\d+(?:\.\d+)*\s*", k)
            if versionish and re.fullmatch(r"\s*v?\d+\.\d+(?:\.\d+)*\s*", k):  # "4.0" of "which version?"
                facts.append(_Fact("version", k, [], version=re.sub(r"(?:\.0)+$", "", k.strip().lstrip("v")),
                                   keys=focus_keys))
            elif kq:
                same = [x for x in r.quantities if same_quantity(x, kq[0])] or kq
                facts.append(_Fact("quantity", k, same, keys=focus_keys))
            else:
                ident = Identifier(k, norm_id(k), "code" if _code_like(k) else "word", 0, 0)
                facts.append(_Fact("identifier", k, [], ident, keys=focus_keys))
        return facts
    ref_q = [x for x in r.quantities if x.kind in ("value", "date", "range-end")]
    primary = [x for x in ref_q if (r.segment_of(x.start) or Segment("", 0, 0)).claim]
    if not primary:
        primary = ref_q
    if not primary and re.search(r"\b(?:section|sections|clause|clauses|article|chapter|paragraph|exhibit|"
                                 r"subsection)\b", _focus(question), re.I):
        primary = [x for x in r.quantities if x.kind == "section"]  # "Sections 1 through 9" is the claim
    non_echo = [x for x in primary if not _is_echo(x, q, [])]
    primary = non_echo or ([] if primary and all(_is_echo(x, q, []) for x in primary) else primary)
    groups: list[list[Quantity]] = []
    for x in primary:
        for g in groups:
            if any(same_quantity(x, y) for y in g):
                g.append(x)
                break
        else:
            groups.append([x])
    q_ids = {i.norm for i in q.identifiers} | set(_question_terms(question))
    for g in groups:
        seg = r.segment_of(g[0].start)
        keys = _keys(seg, {norm_id(x.text) for x in g}) if seg else _Keys(set(), set(), set())
        keys.ids -= {i.norm for i in (seg.identifiers if seg else []) if i.kind == "name" and
                     any(c.isdigit() for c in i.text)}
        if not keys.ids and not keys.roles:
            keys = _Keys(keys.ids | focus_keys.ids, keys.roles | focus_keys.roles, focus_keys.words | keys.words)
        facts.append(_Fact("quantity", g[0].text, g, keys=keys, segment=seg.start if seg else -1))
    short = len(re.findall(r"[A-Za-z0-9]+", reference)) <= 8
    for ident in r.identifiers:
        seg = r.segment_of(ident.start)
        if seg is not None and seg.contrast:
            continue
        if ident.norm in q_ids or any(ident.norm == norm_id(x.text) for x in r.quantities):
            continue
        if ident.kind in ("name", "hyphenated", "word") and not short:
            continue
        if ident.kind == "name" and ident.norm in ("infinity",):
            continue
        if any(f.identifier and f.identifier.norm == ident.norm for f in facts):
            continue
        if any(ident.start < x.end and x.start < ident.end for x in r.quantities):
            continue
        facts.append(_Fact("identifier", ident.text, [], ident, keys=focus_keys))
    q_versions = set(q.versions)
    for v in r.versions:
        if v not in q_versions:
            facts.append(_Fact("version", v, [], version=v, keys=focus_keys))
    if not keywords and not facts and re.fullmatch(r"\s*v?\d+\.\d+(?:\.\d+)*\.?\s*", reference):
        v = re.sub(r"(?:\.0)+$", "", reference.strip().rstrip(".").lstrip("v"))
        facts.append(_Fact("version", v, [], version=v, keys=focus_keys))
    return facts


def _question_terms(question: str) -> list[str]:
    return [norm_id(t) for t in re.findall(r"[\w\-./]+", question)]


def _code_like(text: str) -> bool:
    return bool(re.search(r"[_/\-.]|[a-z][A-Z]|^[A-Z]{2,}$", text.strip()))


def _id_in(text: str, norm: str) -> bool:
    """An identifier as a whole token of `text` (case aside): "/bin/sync" is not in "/usr/bin/sync"; a setting's
    name may follow an object's ("options.windowBits")."""
    low = text.lower()
    before = r"(?<![\w\-/$])(?<![^\w]\.)(?<!^\.)" if not re.search(r"[/\s]|^[.\-]", norm) else \
        r"(?<![\w\-./$])"
    pattern = before + re.escape(norm) + r"(?![\w\-/]|\.\w)"
    for m in re.finditer(pattern, low):
        after = text[m.end():m.end() + 40]
        if " " in norm and re.match(r"\s+(?:[A-Z][\w&'\-]*)", after):
            continue  # "Free Software Foundation Europe" is not the Free Software Foundation
        return True
    return False


@dataclass
class _Check:
    ok: bool
    score: float
    reason: str
    decisive: bool = True


def _check_quantity(fact: _Fact, a: Claims, q: Claims, ref_all: list[Quantity], others: list[_Fact],
                    skip: set[int]) -> _Check:
    ranges = any(x.kind == "range-end" for x in fact.quantities)
    sections = all(x.kind == "section" for x in fact.quantities)
    kinds = {"value", "date", "bound"} | ({"range-end"} if ranges else set()) | ({"section"} if sections else set())
    cands: list[tuple[Quantity, Segment]] = []
    usable = [s for s in a.segments if s.claim and id(s) not in skip and s.quantities]
    if not usable:  # "(generally 32 or 64 bits)": a value given in an aside is still given
        usable = [s for s in a.segments if not s.contrast and id(s) not in skip]
    for s in usable:
        for x in s.quantities:
            if x.kind not in kinds or _is_echo(x, q, ref_all):
                continue
            if not any(_compatible(r, x) for r in fact.quantities):
                if any(same_number_other_unit(r, x) for r in fact.quantities):
                    return _Check(False, 0.0, f"{x.text} is not {fact.quantities[0].text} (another unit)")
                continue
            if is_year(x) and not any(is_year(r) for r in fact.quantities) and \
                    not any(same_quantity(r, x) for r in fact.quantities):
                continue
            cands.append((x if x.kind != "bound" or any(r.kind == "bound" for r in fact.quantities)
                          else _unmatchable(x), s))
    if not cands and re.fullmatch(r"\d+", fact.text.strip()) and _digit_group_in(a, skip, fact.text.strip()):
        return _Check(True, 1.0, f"states {fact.text} (in {fact.text.strip()!r})")
    if not cands:
        wrong_unit = [x for s in a.segments if s.claim for x in s.quantities
                      if any(same_number_other_unit(r, x) for r in fact.quantities)]
        if wrong_unit:
            return _Check(False, 0.0, f"{wrong_unit[0].text} is not {fact.quantities[0].text} (another unit)")
        return _Check(False, 0.0, f"missing: {fact.text}")
    want = fact.keys or _Keys(set(), set(), set())
    # segments about something the question does not ask (a qualifier of their own) are not this claim
    foreign = {id(s) for _, s in cands if _foreign(s, want, q, others)}
    pool = [(x, s) for x, s in cands if id(s) not in foreign] or cands
    best = max(_score(s, want) for _, s in pool)
    claim = [(x, s) for x, s in pool if _score(s, want) == best]
    strong = {"default", "maximum", "minimum"}
    asked = want.roles & strong
    bound = {r for _, s in claim for r in s.roles} & strong
    if asked and bound and not asked & bound and len(claim) == len({id(s) for _, s in claim}):
        x = claim[0][0]
        return _Check(False, 0.0, f"gives {x.text} as the {' and '.join(sorted(bound))}; the question asks for the "
                                  f"{' and '.join(sorted(asked))}")
    matched = [x for x, _ in claim if any(same_quantity(r, x) for r in fact.quantities)]
    # values the reference lists with this one ("32 or 64 bits", "sections 1 through 9") are no rivals
    siblings = [y for o in others if o.segment == fact.segment for y in o.quantities]
    rivals = [x for x, _ in claim if not any(same_quantity(r, x) for r in fact.quantities)
              and not any(same_quantity(y, x) for y in siblings)]
    if matched and not rivals:
        return _Check(True, 1.0, f"states {fact.quantities[0].text}")
    if matched and rivals:
        return _Check(False, 0.5, f"offers conflicting values ({', '.join(dict.fromkeys(x.text for x in rivals))} "
                                  f"besides the reference's {fact.quantities[0].text})")
    elsewhere = [x for x, s in cands if any(same_quantity(r, x) for r in fact.quantities)]
    if elsewhere:
        if any(o.quantities and any(same_quantity(o.quantities[0], y) for y in rivals) for o in others):
            return _Check(False, 0.0, f"swaps values: gives {rivals[0].text} where the reference has "
                                      f"{fact.quantities[0].text}")
        return _Check(False, 0.3, f"offers conflicting values ({', '.join(dict.fromkeys(x.text for x in rivals))} "
                                  f"besides the reference's {fact.quantities[0].text})")
    wrong_unit = [x for x in rivals if any(same_number_other_unit(r, x) for r in fact.quantities)]
    if wrong_unit:
        return _Check(False, 0.0, f"{wrong_unit[0].text} is not {fact.quantities[0].text} (another unit)")
    if not rivals:
        return _Check(False, 0.0, f"missing: {fact.text}")
    return _Check(False, 0.0, f"gives {rivals[0].text} where the reference has {fact.quantities[0].text}")


def _digit_group_in(a: Claims, skip: set[int], digits: str) -> bool:
    """A number keyword as a group of a longer number ("0147" in "1-800-555-0147")."""
    text = " ".join(s.text for s in a.segments if not s.contrast and id(s) not in skip)
    return re.search(r"(?<![\w.])" + re.escape(digits) + r"(?![\w])", text) is not None


def _unmatchable(x: Quantity) -> Quantity:
    """"More than once" names a bound, never the value itself."""
    return Quantity(x.value, x.unit, "bound", (float("nan"),), x.text, x.start, x.end, "bound", (float("nan"),))


def _foreign(seg: Segment, want: _Keys, q: Claims, others: list[_Fact]) -> bool:
    """A clause bound to another subject: it names an identifier, or 'for X', that the claim is not about."""
    own = {i.norm for i in seg.identifiers}
    if own & want.ids:
        return False
    other_keys = set().union(*(o.keys.ids for o in others if o.keys)) if others else set()
    if own & other_keys:
        return True
    if own - {i.norm for i in q.identifiers} and want.ids:
        return True
    m = re.search(r"\bfor\s+(?:the\s+|an?\s+)?([A-Za-z][\w\-]+)", seg.text)
    if m and m.group(1).lower() not in want.words and m.group(1).lower() not in {w.lower() for w in q.words}:
        from lib.claims import stem

        return stem(m.group(1).lower()) not in want.words and stem(m.group(1).lower()) not in set(q.words)
    return False


def _check_identifier(fact: _Fact, a: Claims, q: Claims, skip: set[int]) -> _Check:
    assert fact.identifier is not None
    norm = fact.identifier.norm
    claim_text = " ".join(s.text for s in a.segments if not s.contrast and id(s) not in skip)
    want = fact.keys or _Keys(set(), set(), set())
    for s in a.segments:  # "The default is no": a value bound to the role asked
        if not s.claim or id(s) in skip:
            continue
        for m in _ROLE_VALUE.finditer(s.text):
            role, value = m.group(1).lower(), norm_id(m.group(2))
            role = {"max": "maximum", "min": "minimum", "defaults": "default"}.get(role, role)
            if role in want.roles and value != norm and not _id_in(value, norm) and value not in ("set", "not"):
                return _Check(False, 0.0, f"gives {m.group(2)} as the {role}, not {fact.text}")
    if _id_in(claim_text, norm):
        # a rival of the same family bound to the subject asked ("FFI_BAD_TYPEDEF when the abi is invalid")
        rivals = [(i, s) for s in a.segments if s.claim and id(s) not in skip for i in s.identifiers
                  if i.norm != norm and _related(i.norm, norm) and not _id_in(" ".join(
                      x.text for x in q.segments), i.norm)]
        if rivals:
            want = fact.keys or _Keys(set(), set(), set())
            holder = [s for s in a.segments if s.claim and _id_in(s.text, norm)]
            best_rival = max(_score(s, want) for _, s in rivals)
            best_own = max((_score(s, want) for s in holder), default=0)
            if best_rival > best_own:
                return _Check(False, 0.0, f"binds {rivals[0][0].text} to what was asked, not {fact.text}")
        return _Check(True, 1.0, f"names {fact.text}")
    near = [i.text for s in a.segments if not s.contrast for i in s.identifiers
            if i.norm != norm and (_family(i.norm) == _family(norm) or _similar(i.norm, norm))]
    if near:
        return _Check(False, 0.0, f"names {near[0]}, not {fact.text}")
    return _Check(False, 0.0, f"missing: {fact.text}")


_ROLE_VALUE = re.compile(r"\b(default|maximum|minimum|max|min)\s+(?:value\s+)?(?:is|=|:|will\s+be)\s+"
                         r"[`'\"“]?([\w\-/.]+)", re.I)


def _family(norm: str) -> str:
    parts = [p for p in re.split(r"[/_\-.\s]", norm.strip("/-$")) if p]
    return parts[0] if parts else norm


def _related(a: str, b: str) -> bool:
    """Two identifiers of one family: the same first or last part ("ffi_ok" / "ffi_bad_abi", "update-passwd" /
    "base-passwd")."""
    pa = [p for p in re.split(r"[/_\-.\s]", a.strip("/-$")) if p]
    pb = [p for p in re.split(r"[/_\-.\s]", b.strip("/-$")) if p]
    if not pa or not pb:
        return False
    return pa[0] == pb[0] or (len(pa) > 1 and len(pb) > 1 and pa[-1] == pb[-1])


def _similar(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.75


def _check_version(fact: _Fact, a: Claims, q: Claims, skip: set[int]) -> _Check:
    from lib.claims import versions

    def named(seg: Segment) -> list[str]:
        found = versions(seg.text) + [re.sub(r"(?:\.0)+$", "", x.text) for x in seg.quantities
                                      if x.kind == "value" and re.fullmatch(r"\d+\.\d+", x.text)]
        ranged = {v for m in re.finditer(r"(?i)\b(?:between|from)\s+(?:\w+\s+)?v?([\d.]+)\s+(?:and|to|until)\s+"
                                         r"(?:\w+\s+)?v?([\d.]+)", seg.text) for v in m.groups()}
        return [v for v in dict.fromkeys(found) if re.sub(r"(?:\.0)+$", "", v) not in
                {re.sub(r"(?:\.0)+$", "", r) for r in ranged}] + [re.sub(r"(?:\.0)+$", "", r) for r in ranged]

    asked = set(q.versions)
    segs = [s for s in a.segments if not s.contrast and id(s) not in skip]
    got = [v for s in segs for v in named(s)]
    bare = [x for x in a.quantities if x.kind == "value" and fact.version == re.sub(r"(?:\.0)+$", "", f"{x.value:g}")]
    if fact.version in got or bare:
        rivals = [v for s in segs if not s.aside for v in versions(s.text) + [
            re.sub(r"(?:\.0)+$", "", x.text) for x in s.quantities if x.kind == "value" and "." in x.text]
            if v != fact.version and v not in asked and not _in_range(s.text, v)]
        if rivals:
            return _Check(False, 0.5, f"offers conflicting versions ({', '.join(dict.fromkeys(rivals))} besides "
                                      f"{fact.version})")
        return _Check(True, 1.0, f"names version {fact.version}")
    if got:
        return _Check(False, 0.0, f"names version {got[0]}, not {fact.version}")
    return _Check(False, 0.0, f"missing: {fact.text}")


def _in_range(text: str, version: str) -> bool:
    return any(version in {re.sub(r"(?:\.0)+$", "", g) for g in m.groups()} for m in re.finditer(
        r"(?i)\b(?:between|from)\s+(?:\w+\s+)?v?([\d.]+)\s+(?:and|to|until)\s+(?:\w+\s+)?v?([\d.]+)", text))


def _novel_words(question: str, reference: str, r: Claims) -> list[str]:
    q_words = set(content_words(question))
    main = " ".join(s.text for s in r.segments if not s.contrast) or reference
    words = [w for w in content_words(main) if w not in q_words]
    if not words:  # "You do": the pronoun is the claim
        words = [w.lower() for w in re.findall(r"[A-Za-z]+", main)
                 if w.lower() not in ("the", "a", "an", "do", "does", "did", "is", "are", "it", "so", "yes", "no")
                 and w.lower() not in {x.lower() for x in re.findall(r"[A-Za-z]+", question)}]
    return list(dict.fromkeys(words))


def grade_answer(question: str, reference: str, answer: str, keywords: Sequence[str] = (),
                 answerable: bool = True, similarity: Similarity | None = None,
                 sources: Sequence[Any] | None = None) -> Grade:
    """Grade one answer; see the module docstring for the rules. With `sources` (the texts retrieved for
    it, numbered from 1) the grade also says whether its citations hold."""
    text = (answer or "").strip()
    cites = grade_citations(question, text, sources, similarity)[0] if sources is not None else None
    if not text:
        return Grade(False, 0.0, False, "empty answer", citations=cites)
    body = _first_part(text)
    a, q, r = extract(body), extract(question), extract(reference or "")
    refusing = _refusal_segments(body, a, similarity, question)
    skip = {id(s) for s in refusing}
    asserted = _asserted(a, q, skip, answerable)
    if not answerable:
        if refusing and not asserted:
            return Grade(True, 1.0, True, "correctly said the documents do not answer this", citations=cites)
        what = f": {asserted}" if asserted else ""
        return Grade(False, 0.0, False, f"answered a question the documents do not answer (fabrication){what}",
                     fabricated=True, citations=cites)
    if refusing and not asserted:
        return Grade(False, 0.0, True, "refused an answerable question", citations=cites)
    if not (reference or "").strip() and not keywords:
        return Grade(False, 0.0, False, "no reference answer to grade against", citations=cites)
    ok, score, reason = _grade_claims(question, reference, body, keywords, a, q, r, skip, similarity)
    return Grade(ok, round(max(0.0, min(1.0, score)), 3), False, reason, citations=cites)


def _asserted(a: Claims, q: Claims, skip: set[int], answerable: bool) -> str:
    """What an answer asserts outside its refusing clauses: a value, an identifier, or (answerable questions)
    words of its own; empty when it asserts nothing."""
    for s in a.segments:
        if id(s) in skip or s.contrast:
            continue
        for x in s.quantities:
            if x.kind in ("value", "date") and not _is_echo(x, q, []):
                return x.text
        q_text = " ".join(x.text for x in q.segments)
        for i in s.identifiers:
            if i.kind in ("code", "hyphenated") and not _id_in(q_text, i.norm):
                return i.text
        if answerable:
            own = [w for w in s.words if w not in set(q.words)]
            if len(own) >= 1 and not s.aside:
                return s.text.strip()[:60]
    return ""


def _grade_claims(question: str, reference: str, body: str, keywords: Sequence[str], a: Claims, q: Claims,
                  r: Claims, skip: set[int], similarity: Similarity | None) -> tuple[bool, float, str]:
    yes_no = bool(_YES_NO_QUESTION.match(question)) and not keywords
    if yes_no:
        ref_pol = _polarity(r, reference) or "yes"
        got = _polarity(_without(a, skip), body)
        if got is not None:
            if got == ref_pol:
                return True, 1.0, f"answers {got}, as the reference does"
            return False, 0.0, f"answers {got}; the reference says {ref_pol}"
        if not _novel_words(question, re.sub(r"^\W*(?:yes|no)\b\W*", "", reference, flags=re.I), r):
            return False, 0.0, f"says neither yes nor no; the reference says {ref_pol}"
    facts = _reference_facts(question, reference, keywords, q, r)
    if facts:
        ref_all = [x for f in facts for x in f.quantities]
        checks = []
        for f in facts:
            others = [o for o in facts if o is not f and o.kind == "quantity"]
            if f.kind == "quantity":
                checks.append(_check_quantity(f, a, q, ref_all, others, skip))
            elif f.kind == "identifier":
                checks.append(_check_identifier(f, a, q, skip))
            else:
                checks.append(_check_version(f, a, q, skip))
        score = sum(c.score for c in checks) / len(checks)
        failed = [c for c in checks if not c.ok]
        if not failed and _COMPOUND.search(question) and not keywords:
            # "Where are they kept, and which group can write them?": the reference's other part must be there too
            rest = _outside_facts(reference, r)
            novel = [w for w in content_words(rest) if w not in set(q.words)]
            have = {w for sg in a.segments if not sg.contrast and id(sg) not in skip for w in _words_of(sg.text)}
            if novel and sum(w in have for w in novel) / len(novel) < 0.5:
                failed = [_Check(False, 0.5, f"answers one part only; missing: {', '.join(w for w in novel if w not in have)}")]
                score = 0.5
        if not failed:
            return True, 1.0, "matches the reference: " + "; ".join(c.reason for c in checks) + \
                (" (keywords)" if keywords else "")
        return False, score, "; ".join(c.reason for c in failed)
    return _grade_words(question, reference, body, a, r, skip, similarity)


_COMPOUND = re.compile(r"[,;]?\s+and\s+(?:which|what|who|whom|where|when|how|why)\b", re.I)


def _outside_facts(reference: str, r: Claims) -> str:
    """The reference with the spans of its values and identifiers blanked (what else it says)."""
    chars = list(reference)
    spans = [(x.start, x.end) for x in r.quantities] + [(i.start, i.end) for i in r.identifiers]
    for a, b in spans:
        chars[a:b] = " " * (b - a)
    return "".join(chars)


def _without(a: Claims, skip: set[int]) -> Claims:
    return Claims(a.text, [s for s in a.segments if id(s) not in skip], a.quantities, a.identifiers, a.versions,
                  a.words)


def _grade_words(question: str, reference: str, body: str, a: Claims, r: Claims, skip: set[int],
                 similarity: Similarity | None) -> tuple[bool, float, str]:
    novel = _novel_words(question, reference, r)
    claim_segs = [s for s in a.segments if not s.contrast and id(s) not in skip]
    have = {w for s in claim_segs for w in s.words} | {w.lower() for s in claim_segs
                                                       for w in re.findall(r"[A-Za-z]+", s.text)}
    recall = sum(w in have for w in novel) / len(novel) if novel else 1.0
    sim = similarity(body, reference) if similarity and reference.strip() else None
    score = max(recall, sim or 0.0)
    ok = recall >= 0.5 or (sim is not None and sim >= 0.8 and recall >= 0.25)
    if not novel:
        ok, score = True, 1.0
    ref_carrying = _carrying([s for s in r.segments if s.claim], novel)
    got_carrying = _carrying([s for s in claim_segs if s.claim], novel)
    ref_neg = bool(ref_carrying) and ref_carrying.negated
    got_neg = bool(got_carrying) and got_carrying.negated
    if ok and novel and got_carrying is not None and ref_neg != got_neg:
        return False, min(score, 0.2), "states the opposite of the reference (negation differs)"
    if ok:
        missing = [w for w in novel if w not in have]
        return True, score, (f"covers the reference's claim ({recall:.0%} of its words"
                             + (f", similarity {sim:.2f}" if sim is not None else "") + ")"
                             + (f"; not: {', '.join(missing[:3])}" if missing else ""))
    shown = ", ".join([w for w in novel if w not in have][:4])
    return False, score, (f"covers {recall:.0%} of the reference's claim (missing: {shown})"
                          + (f", similarity {sim:.2f}" if sim is not None else ""))


def _carrying(segs: list[Segment], novel: list[str]) -> Segment | None:
    """The clause that carries most of the claim's words (its negation is the claim's)."""
    scored = [(len(set(s.words) & set(novel)), -i, s) for i, s in enumerate(segs)]
    scored = [x for x in scored if x[0] > 0]
    return max(scored, key=lambda x: (x[0], x[1]))[2] if scored else None


# ---------------------------------------------------------------- citations and groundedness

def cited_numbers(answer: str) -> list[int]:
    """The source numbers an answer cites: [1], [1][2], [1, 2], [1-3]."""
    out: list[int] = []
    for m in re.finditer(r"\[\s*(\d{1,3}(?:\s*(?:,|–|-|and)\s*\d{1,3})*)\s*\]", answer):
        for part in re.split(r"\s*,\s*|\s+and\s+", m.group(1)):
            if re.fullmatch(r"\d+\s*[–-]\s*\d+", part):
                lo, hi = (int(x) for x in re.split(r"\s*[–-]\s*", part))
                out += list(range(lo, hi + 1)) if 0 < hi - lo < 20 else [lo, hi]
            elif part.strip().isdigit():
                out.append(int(part))
    return out


def _source_text(s: Any) -> str:
    return str(getattr(s, "text", s))


def grade_citations(question: str, answer: str, sources: Sequence[Any] | None,
                    similarity: Similarity | None = None) -> tuple[str, str]:
    """("none" | "correct" | "wrong", why): a citation is correct only when a cited source supports the
    claim the answer makes; a number beyond the sources retrieved is wrong."""
    sources = list(sources or [])
    cited = list(dict.fromkeys(cited_numbers(answer or "")))
    if not cited:
        return "none", "cites no source"
    bad = [n for n in cited if not 1 <= n <= len(sources)]
    if bad:
        return "wrong", f"cites [{bad[0]}], which was not retrieved ({len(sources)} source(s))"
    body = _first_part(answer)
    a, q = extract(body), extract(question)
    refusing = _refusal_segments(body, a, similarity, question)
    if refusing and not _asserted(a, q, {id(s) for s in refusing}, True):
        return "wrong", "cites a source for a refusal, which no source supports"
    support = "\n".join(_source_text(sources[n - 1]) for n in cited)
    ok, why = _supports(question, body, a, q, support)
    label = "[" + "][".join(str(n) for n in cited) + "]"
    return ("correct", f"{label} supports {why}") if ok else ("wrong", f"{label} does not support {why}")


_GENERIC = {"source", "sourc", "say", "answer", "document", "passag", "retriev", "text", "question", "cite", "cit",
            "reason", "accord", "mention", "stat", "provid", "given", "giv", "inform", "note", "context", "follow",
            "mean", "also", "therefore", "thu", "case", "exampl", "use", "need", "make"}
_WINDOW = 25  # words either side of a value in a source: the passage that binds it to a subject


def _windows(source: str, spans: list[tuple[int, int]]) -> list[str]:
    """The source's words around each span (a value or identifier found there)."""
    words = list(re.finditer(r"\S+", source))
    out = []
    for a, b in spans:
        i = next((k for k, w in enumerate(words) if w.end() > a), len(words))
        j = next((k for k, w in enumerate(words) if w.end() >= b), len(words) - 1)
        lo, hi = max(0, i - _WINDOW), min(len(words), j + _WINDOW + 1)
        out.append(source[words[lo].start():words[hi - 1].end()] if words else "")
    return out


def _words_of(text: str) -> set[str]:
    """Content words, with the parts of names in code as words too ("server.keepAliveTimeout" -> keepalivetimeout)."""
    words = set(content_words(text))
    return words | {p for w in list(words) for p in re.split(r"[._/\-]", w) if p}


def _about_question(window: str, q_words: set[str], q_ids: set[str]) -> bool:
    """Whether a passage is about what was asked: it names the question's identifiers (when the source names
    them at all: q_ids holds only those) and holds at least 60% of its content words."""
    if q_ids and not any(_mentions(window, i) for i in q_ids):
        return False
    if not q_words:
        return True
    have = _words_of(window)
    return sum(w in have for w in q_words) / len(q_words) >= 0.5


def _supports(question: str, body: str, a: Claims, q: Claims, source: str) -> tuple[bool, str]:
    """Whether a source states the answer's own claim: each value and identifier the answer asserts about what
    was asked, found in the source in a passage about the question (and not given there for something else);
    for claims in words, most of the answer's own words in such a passage; for a bare yes/no, the polarity of
    the passage about the question."""
    s = extract(source)
    focus = extract(_focus(question))
    want = _Keys({i.norm for i in focus.identifiers}, {x for g in focus.segments for x in g.roles},
                 set(focus.words), set(q.words))
    measure = {stem_word(m.group(1)) for m in re.finditer(r"\bhow\s+(\w+)", question, re.I)}
    q_words = {w for w in q.words if w not in _GENERIC and w not in measure}  # "how long" asks, it is no topic
    q_ids = {i.norm for i in q.identifiers if i.kind == "code" and _mentions(source, i.norm)}
    q_opts = {i.norm for i in q.identifiers if i.kind == "code" and _option_like(i.text)}
    claim_segs = [g for g in a.segments if g.claim] or a.segments
    q_text = " ".join(g.text for g in q.segments)
    values = [x for g in claim_segs for x in g.quantities if x.kind in ("value", "date") and not _is_echo(x, q, [])]
    if values:
        best_segs = _best_answer_segments(claim_segs, want)
        values = [x for g in best_segs for x in g.quantities if x in values] or values
        for x in values:
            found = [y for y in s.quantities if same_quantity(x, y)]
            if not found:
                return False, f"{x.text} (not in the source)"
            if not any(_about_question(w, q_words, q_ids) for w in _windows(source, [(y.start, y.end) for y in found])):
                return False, f"{x.text} (the source states it about something else)"
            bound = {_bound_to(source, y.start) for y in found} - {None}
            if q_opts and bound and not any(_names_asked(b, q_opts) for b in bound):
                return False, f"{x.text} (the source gives it for {sorted(bound)[0]})"
            holders = [g for g in s.segments if any(same_quantity(x, y) for y in g.quantities)]
            rivals = [g for g in s.segments if any(_compatible(x, y) and not same_quantity(x, y) and
                                                    y.kind in ("value", "date") for y in g.quantities)]
            if rivals and max(_density(g, want) for g in rivals) > max(_density(g, want) for g in holders):
                return False, f"{x.text} (the source gives it for something else)"
        return True, ", ".join(x.text for x in values)
    ids = [i for g in claim_segs for i in g.identifiers if i.kind in ("code", "hyphenated", "name")
           and not _id_in(q_text, i.norm)]
    if ids:
        for i in ids:
            spans = _id_spans(source, i.norm)
            if not spans:
                return False, f"{i.text} (not in the source)"
            if not any(_about_question(w, q_words, q_ids) for w in _windows(source, spans)):
                return False, f"{i.text} (the source names it for something else)"
        return True, ", ".join(i.text for i in ids)
    pol = _polarity(a, body)
    words = [w for g in claim_segs for w in g.words if w not in set(q.words) and w not in _GENERIC]
    if pol is not None and bool(_YES_NO_QUESTION.match(question)) and not words:
        relevant = max(s.segments, key=lambda g: _score(g, want), default=None)
        if relevant is None or not _about_question(relevant.text, q_words, q_ids):
            return False, f"'{pol}' (the source is not about the question)"
        src_pol = "no" if relevant.negated else "yes"
        if src_pol != pol:
            return False, f"'{pol}' (the source says {src_pol})"
        return True, f"'{pol}'"
    if not words:
        return False, "no claim of the answer's own"
    best = 0.0
    for g in s.segments:  # the passage (a clause and its neighbours) holding most of the answer's words
        window = " ".join(x.text for x in s.segments[max(0, s.segments.index(g) - 1):s.segments.index(g) + 2])
        have = set(content_words(window))
        share = sum(w in have for w in words) / len(words)
        if share > best and _about_question(window, q_words, q_ids):
            best = share
    if best >= 0.6:
        return True, "the answer's words"
    return False, f"the answer (at most {best:.0%} of its words in a passage about the question)"


def _mentions(text: str, norm: str) -> bool:
    """A name anywhere in a text as a whole token, also inside a dotted one ("server.keepAliveTimeout")."""
    return re.search(r"(?<![\w])" + re.escape(norm) + r"(?![\w])", text.lower()) is not None


def _option_like(token: str) -> bool:
    """A setting's name: camelCase or with underscores ("keepAliveTimeout", "max_connections")."""
    t = token.strip("`'\"")
    return bool(re.search(r"[a-z][A-Z]", t) or re.search(r"[a-z]_[a-z]", t))


def _bound_to(source: str, pos: int) -> str | None:
    """The setting a value in a source belongs to: the last setting's name since the start of its list item,
    heading or paragraph ("* `requestTimeout`: ... **Default:** `300000`" -> requesttimeout)."""
    head = source[:pos]
    starts = [m.end() for m in re.finditer(r"\n\s*\n|\n\s*(?:[*•#-]\s|\d+\.\s)|(?:^|\s)\*\s+(?=`)", head)]
    scope = head[starts[-1] if starts else 0:]
    names = [t for t in re.findall(r"[A-Za-z_][\w.]*", scope) if _option_like(t.split(".")[-1])]
    return names[-1].split(".")[-1].lower() if names else None


def _names_asked(name: str, asked: set[str]) -> bool:
    return any(name == a or name.endswith(a) or a.endswith(name) for a in asked)


def _id_spans(text: str, norm: str) -> list[tuple[int, int]]:
    low = text.lower()
    return [(m.start(), m.end()) for m in re.finditer(r"(?<![\w\-./$])" + re.escape(norm) + r"(?![\w\-/]|\.\w)", low)]


def _density(seg: Segment, want: _Keys) -> float:
    """How much a source clause is about what was asked, for its length (a long clause matches more words)."""
    return _score(seg, want) / max(2.0, len(seg.words)) ** 0.5


def _best_answer_segments(segs: list[Segment], want: _Keys) -> list[Segment]:
    with_values = [g for g in segs if g.quantities]
    if not with_values:
        return []
    best = max(_score(g, want) for g in with_values)
    return [g for g in with_values if _score(g, want) == best]


def check_citations(answer: str, sources: Sequence[Any], reference: str = "", keywords: Sequence[str] = (),
                    question: str = "") -> tuple[bool | None, str]:
    """(None when nothing is cited; else whether the citations hold, and why): see grade_citations."""
    label, why = grade_citations(question, answer, sources)
    return {"none": None, "correct": True, "wrong": False}[label], why


def grounded(answer: str, sources: Sequence[Any]) -> tuple[bool, str]:
    """Every number in the answer appears in the retrieved sources (the answer's own claims, not the reference)."""
    have = _claim_quantities(" ".join(_source_text(s) for s in sources))
    missing = [x.text for x in _claim_quantities(_first_part(answer)) if x.kind in ("value", "date")
               and not any(same_quantity(x, h) for h in have)]
    if missing:
        return False, f"not in the sources: {', '.join(dict.fromkeys(missing))}"
    return True, "every number in the answer is in the sources"
