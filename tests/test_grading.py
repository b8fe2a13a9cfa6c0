"""The offline grader: paraphrased numbers, conflicting values, units, negation, refusals, fabrications."""

import pytest

from lib.grading import check_citations, grade_answer, grounded, is_refusal, normalise
from lib.store import Source


@pytest.mark.parametrize(("reference", "answer"), [
    ("30 days", "You have thirty days to return it."),
    ("45 days from the delivery date.", "Forty-five days after delivery [1]."),
    ("The context window is 16K (16384 tokens).", "It reads up to 16384 tokens."),
    ("The context window is 16K (16384 tokens).", "16K tokens."),
    ("1,250 kg", "It holds 1250 kg."),
    ("13% of the purchase price.", "A restocking fee of 13 percent applies."),
    ("€120", "It costs 120 euros."),
])
def test_paraphrased_numbers_are_correct(reference, answer):
    g = grade_answer("q", reference, answer)
    assert g.correct and g.score == 1.0 and not g.refused, g


def test_an_answer_with_conflicting_values_is_not_correct():
    g = grade_answer("What is the default?", "50", "100 by default, or sometimes 50.")
    assert not g.correct and "conflicting" in g.reason and "100" in g.reason
    days = grade_answer("How long is the refund window?", "45 days", "45 days, or maybe 21 days.")
    assert not days.correct and "21" in days.reason
    # a value bound to something else the answer names is no rival ("21 days for e-bikes" qualifies another case)
    assert grade_answer("How long is the refund window?", "45 days", "45 days, or 21 days for e-bikes.").correct
    # a different kind of number beside the right one is no conflict
    fine = grade_answer("How long is the refund window?", "45 days", "45 days, with a 13% restocking fee.")
    assert fine.correct
    assert grade_answer("Which version?", "4.0", "Version 4.0, released in 2025.", keywords=["4.0"]).correct
    assert not grade_answer("Which version?", "4.0", "Version 3.4 or 4.0.", keywords=["4.0"]).correct
    assert not grade_answer("Founded when?", "2014", "In 2014, or maybe 2016.").correct  # years rival years


def test_the_wrong_unit_does_not_match():
    g = grade_answer("q", "30 days", "30 months.")
    assert not g.correct and "another unit" in g.reason


def test_negation_counts():
    ref = "No. The license does not grant any patent rights."
    assert not grade_answer("Does it grant patent rights?", ref, "Yes, it grants patent rights.").correct
    assert grade_answer("Does it grant patent rights?", ref, "No, the license does not grant patent rights.").correct
    flipped = grade_answer("q", "The warranty covers zips and seams.", "The warranty does not cover zips or seams.")
    assert not flipped.correct and "negation" in flipped.reason


def test_refusals_and_fabrications():
    refused = grade_answer("How long is the refund window?", "45 days", "I don't know; the sources do not say.")
    assert refused.refused and not refused.correct and refused.reason == "refused an answerable question"
    honest = grade_answer("What is the CEO's shoe size?", "", "The documents do not mention that.", answerable=False)
    assert honest.correct and honest.refused
    made_up = grade_answer("What is the CEO's shoe size?", "", "Size 44 [1].", answerable=False)
    assert not made_up.correct and made_up.fabricated and "fabrication" in made_up.reason
    assert is_refusal("I'm sorry, I cannot find that in the documents.")
    assert not is_refusal("The refund window is 45 days.")


def test_keywords_when_given_and_the_reason_names_what_is_missing():
    g = grade_answer("q", "RQ- followed by 8 digits.", "Every RMA starts with RQ-.", keywords=["RQ-"])
    assert g.correct
    miss = grade_answer("q", "45 days, 13% fee", "45 days.", keywords=["45", "13"])
    assert not miss.correct and miss.score == 0.5 and miss.reason == "missing: 13"
    assert not grade_answer("q", "12", "The window is 120 days.", keywords=["12"]).correct  # 12 is not 120
    assert not grade_answer("q", "45", "").correct


def test_house_style_reason_line_is_not_graded_as_the_answer():
    answer = "45 days from delivery.\nReason: unlike the 21 days for e-bikes, the general window is longer."
    assert grade_answer("How long is the refund window?", "45 days", answer).correct


def test_word_references_use_recall_and_optional_similarity():
    ref = "Customers pay the return postage unless the item is faulty."
    assert grade_answer("Who pays return postage?", ref, "The customer pays return postage unless faulty.").correct
    assert not grade_answer("Who pays return postage?", ref, "Shipping is free.").correct
    helped = grade_answer("q", ref, "Buyers cover the cost of sending it back.", similarity=lambda a, b: 0.9)
    assert helped.score >= 0.9


def test_citations_must_contain_the_supporting_text():
    sources = [Source("refund_policy.md", 0, 0.8, "Refunds are accepted within 45 days of delivery."),
               Source("warranty.pdf", 2, 0.5, "The warranty lasts two years.")]
    assert check_citations("45 days [1].", sources, "45 days")[0] is True
    ok, why = check_citations("45 days [2].", sources, "45 days")
    assert ok is False and "[2]" in why
    ok, why = check_citations("45 days [7].", sources, "45 days")
    assert ok is False and "not retrieved" in why
    assert check_citations("45 days.", sources, "45 days")[0] is None
    assert grounded("45 days [1].", sources)[0]
    ok, why = grounded("60 days [1].", sources)
    assert not ok and "60" in why


def test_normalise_keeps_ordinary_words():
    assert normalise("One of the two tents weighs 1,380 g") == "one of the 2 tents weighs 1380 g"
