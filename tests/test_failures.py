"""Failure modes of wrong answers (Barnett et al. 2024), on constructed cases."""

import pytest

from lib.failures import classify, counts, format_ok, rank_of, retrieval_share


def test_correct_answers_and_correct_refusals_have_no_mode():
    assert classify(correct=True, answerable=True, context="retrieved") is None
    assert classify(correct=False, answerable=False, fabricated=False) is None  # declined an unanswerable one


def test_fabrication_on_an_unanswerable_question_is_missing_content_for_every_arm():
    for context in ("none", "retrieved", "all"):
        assert classify(correct=False, answerable=False, fabricated=True, context=context) == "missing_content"


def test_retrieval_misses_are_told_apart_by_the_top_20():
    common = {"correct": False, "answerable": True, "context": "retrieved", "expected_source": "refund.md",
              "prompt_documents": ["faq.md"]}
    assert classify(**common, expected_rank=7) == "missed_top_ranked"
    assert classify(**common, expected_rank=None) == "missed_retrieval"
    # the source was in the prompt: the model did not read it out
    assert classify(**{**common, "prompt_documents": ["refund.md"]}) == "not_extracted"
    assert classify(**{**common, "prompt_documents": ["refund.md"]}, partial=True) == "incomplete"
    # a retrieval miss is the root cause even when the answer is partly right
    assert classify(**common, expected_rank=3, partial=True) == "missed_top_ranked"
    assert classify(**{**common, "expected_source": ""}) == "unclassified"


def test_arms_without_retrieval_and_the_long_context_arm():
    assert classify(correct=False, answerable=True, context="none") == "not_known"
    assert classify(correct=False, answerable=True, context="none", partial=True) == "incomplete"
    assert classify(correct=False, answerable=True, context="all") == "not_extracted"
    assert classify(correct=False, answerable=True, error="boom") == "request_failed"


def test_wrong_format_is_a_right_answer_that_breaks_the_required_format():
    assert classify(correct=True, answerable=True, format_ok=False) == "wrong_format"
    assert classify(correct=True, answerable=True, format_ok=True) is None
    assert format_ok("45 days [1]\nReason: the policy says so.", "house") is True
    assert format_ok("It is 45 days, as the policy says.", "house") is False
    assert format_ok("45", "number") is True and format_ok("about 45", "number") is False
    assert format_ok("45 days", "re:\\d+ days") is True and format_ok("x", "") is None
    assert format_ok("one\ntwo", "one-line") is False


def test_ranks_counts_and_the_share_retrieval_missed():
    assert rank_of("b.md", ["a.md", "a.md", "b.md"]) == 3 and rank_of("z.md", ["a.md"]) is None
    assert counts(["not_extracted", None, "missed_top_ranked", "not_extracted"]) == {
        "missed_top_ranked": 1, "not_extracted": 2}
    per_arm = {"rag": {"failure_modes": {"missed_top_ranked": 3, "not_extracted": 1, "request_failed": 2}},
               "hybrid": {"failure_modes": {"missed_retrieval": 1, "incomplete": 3}}}
    assert retrieval_share(per_arm) == (4, 8)
    assert retrieval_share({}) == (0, 0)


@pytest.mark.parametrize("mode", ["missing_content", "missed_top_ranked", "missed_retrieval", "not_extracted",
                                  "wrong_format", "incomplete", "not_known"])
def test_every_mode_is_named_and_explained(mode):
    from lib.failures import LABELS, MODES

    assert MODES[mode] and LABELS[mode]
