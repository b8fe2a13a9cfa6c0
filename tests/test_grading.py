"""The offline grader: paraphrased numbers, conflicting values, units, negation, refusals, fabrications."""

import pytest

from lib.grading import check_citations, grade_answer, grounded, is_refusal, normalise
from lib.records import Source


@pytest.mark.parametrize(("reference", "answer"), [
    ("30 days", "You have thirty days to return it."),
    ("45 days from the delivery date.", "Forty-five days after delivery [1]."),
    ("45 days from the delivery date.", "The refund window is forty-five days [1]."),
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


# ---------------------------------------------------------------- the claim, not the words (issue: grades you can trust)

@pytest.mark.parametrize("answer", [
    "I could not find this in the provided documents.",
    "This cannot be answered from them.",
    "The specification describes no such thing.",
    "Nothing in these pages states a limit.",
    "Neither source mentions it.",
    "The licence is silent on this.",
    "That isn't covered here.",
])
def test_refusals_are_recognised_however_they_are_worded(answer):
    g = grade_answer("What is the maximum number of keywords?", "", answer, answerable=False)
    assert g.correct and g.refused and not g.fabricated, g


def test_a_partial_refusal_is_graded_on_the_value_it_asserts():
    right = grade_answer("What is the default timeout?", "60000 milliseconds.",
                         "The excerpt doesn't say so explicitly, but it is 60000 ms.")
    assert right.correct and not right.refused
    wrong = grade_answer("What is the default timeout?", "60000 milliseconds.", "I can't find it; probably 2 minutes.")
    assert not wrong.correct and not wrong.refused
    invented = grade_answer("What fee is charged?", "", "The text doesn't mention a fee, but it is usually $500.",
                            answerable=False)
    assert invented.fabricated and "$500" in invented.reason


@pytest.mark.parametrize(("question", "reference", "answer"), [
    ("Which tool keeps the files in sync?", "update-passwd", "update-passwds"),
    ("What is the shell of user sync?", "/bin/sync", "/usr/bin/sync"),
    ("Who is the license steward?", "The Mozilla Foundation.", "The Mozilla Corporation."),
    ("Who may publish revised versions?", "The Free Software Foundation.", "The Free Software Foundation Europe."),
    ("What is the old name of the variable?", "DPKG_GAIN_ROOT_CMD", "DEB_GAIN_ROOT_CMD"),
])
def test_near_miss_identifiers_fail(question, reference, answer):
    g = grade_answer(question, reference, answer)
    assert not g.correct, g


def test_identifiers_compare_exactly_but_case_and_quotes_aside():
    assert grade_answer("Which variable?", "DEB_RULES_REQUIRES_ROOT", "`deb_rules_requires_root`").correct
    assert grade_answer("Who is the steward?", "The Mozilla Foundation.", "the mozilla foundation").correct


def test_wrong_units_and_swapped_roles_fail():
    assert not grade_answer("What is the default size?", "16384 bytes", "16384 kilobytes").correct
    swapped = grade_answer("What are the default and maximum?", "The default is 50 and the maximum is 100.",
                           "The default is 100 and the maximum 50.")
    assert not swapped.correct and "swap" in swapped.reason
    asked = grade_answer("What is the default headersTimeout?", "60000 milliseconds.",
                         "headersTimeout defaults to 300000 ms and requestTimeout to 60000 ms.")
    assert not asked.correct and "300000" in asked.reason
    assert grade_answer("What is the default headersTimeout?", "60000 milliseconds.",
                        "requestTimeout defaults to 300000 ms; headersTimeout to 60000 ms.").correct


@pytest.mark.parametrize(("reference", "answer"), [
    ("At least three years.", "36 months."),
    ("16384 bytes (16 KiB).", "16 KiB"),
    ("1024 * 1024 bytes.", "1 MiB"),
    ("5000 milliseconds.", "Five seconds."),
    ("Fifty percent (50%) or more.", "Half or more."),
])
def test_the_same_quantity_in_another_unit_is_correct(reference, answer):
    assert grade_answer("How much?", reference, answer).correct


def test_incidental_numbers_and_contrasts_are_no_claims():
    q = "If it is the first notice, within how many days must you cure the violation under GPL version 3?"
    for answer in ["Section 8 says 30 days.", "Under GPL version 3, 30 days.", "Not 60 but 30 days.",
                   "30 days, rather than the 60 days the holder has to notify you."]:
        assert grade_answer(q, "30 days", answer).correct, answer
    assert not grade_answer(q, "30 days", "Not 30 but 60 days.").correct
    assert grade_answer("What is the default chunk size?", "16 * 1024 bytes",
                        "16 * 1024 bytes; a larger value such as 64 * 1024 may be set.").correct
    assert grade_answer("What is the highest level?", "9", "Levels run from 1 to 9; the highest is 9.").correct


def test_negation_is_scoped_to_the_claim():
    ref = "Only the license steward (the Mozilla Foundation)."
    assert grade_answer("Who may publish new versions?", ref,
                        "The Mozilla Foundation; no one else may publish new versions.").correct
    assert grade_answer("Does termination end the licenses of those who got copies from you?", "No.",
                        "No. Termination of your rights doesn't terminate their licenses.").correct
    assert not grade_answer("Does termination end the licenses of those who got copies from you?", "No.",
                            "Yes, their licenses end too.").correct


def test_an_answer_that_echoes_the_question_proves_nothing():
    q = "Which text file's attribution notices must Derivative Works include a readable copy of?"
    assert not grade_answer(q, "The NOTICE file.", "A readable copy of the attribution notices.").correct
    assert not grade_answer(q, "x", "They must keep the notices.", keywords=["NOTICE"]).correct
    assert grade_answer(q, "The NOTICE file.", "The attribution notices in the NOTICE file.").correct


def test_citations_are_checked_against_the_answers_own_claim():
    from lib.grading import grade_citations

    sources = ["If you fail to comply, rights are reinstated unless the holder notifies you within 60 days after "
               "you come back into compliance. If this is the first notice, you must cure the violation within 30 "
               "days of receiving it.", "New versions are published by the license steward."]
    q = "If it is the first notice, within how many days must you cure the violation?"
    assert grade_citations(q, "30 days [1].", sources)[0] == "correct"
    assert grade_citations(q, "60 days [1].", sources)[0] == "wrong"  # [1] gives 60 days to something else
    assert grade_citations(q, "30 days [2].", sources)[0] == "wrong"
    label, why = grade_citations(q, "30 days [3].", sources)
    assert label == "wrong" and "[3]" in why
    assert grade_citations(q, "30 days.", sources)[0] == "none"
    g = grade_answer(q, "30 days", "60 days [1].", sources=sources)
    assert not g.correct and g.citations == "wrong"
