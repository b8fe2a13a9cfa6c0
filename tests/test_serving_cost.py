"""Self-hosting cost from capacity and the workshop forecast, against figures worked out by hand."""

from __future__ import annotations

import pytest

from lib.serving_cost import CapacityPoint, choose_point, points_from, serving_cost, workshop_forecast

# One machine: questions per hour, p95 and p50 latency (ms) at each concurrency.
CURVE = [CapacityPoint(1, 600, 2000, 1500), CapacityPoint(2, 1000, 3000, 2200),
         CapacityPoint(4, 1400, 5200, 4000), CapacityPoint(8, 1500, 9000, 7000)]


def test_the_best_throughput_whose_p95_meets_the_target():
    c = serving_cost(CURVE, usd_per_hour=0.5, per_day=10_000, latency_target_ms=6000, measurement="M")
    assert (c.concurrency, c.questions_per_hour_per_machine, c.meets_target) == (4, 1400, True)
    assert c.peak_questions_per_hour == pytest.approx(1250)  # 10,000 / 24 x 3
    assert c.machines == 1  # 1,250 < 1,400
    assert c.monthly_usd == pytest.approx(365.0)  # 1 x $0.50 x 730 h
    assert c.cost_per_question_usd == pytest.approx(365.0 / 300_000)  # 30 days of 10,000
    assert c.capacity_source == "measured: M"
    assert "M" in c.note and "vLLM" in c.note and "1 machine x $0.5000/h x 730 h = $365.00" in c.note


def test_without_a_target_the_best_throughput_and_enough_machines_for_the_peak():
    c = serving_cost(CURVE, usd_per_hour=0.5, per_day=100_000)
    assert (c.concurrency, c.meets_target) == (8, None)
    assert c.peak_questions_per_hour == pytest.approx(12_500)
    assert c.machines == 9  # ceil(12,500 / 1,500 = 8.33)
    assert c.monthly_usd == pytest.approx(3285.0)  # 9 x 0.5 x 730
    assert c.cost_per_question_usd == pytest.approx(3285.0 / 3_000_000)


def test_no_concurrency_meets_the_target_so_the_fastest_is_used_and_said():
    c = serving_cost(CURVE, usd_per_hour=0.5, per_day=10_000, latency_target_ms=1000)
    assert (c.concurrency, c.questions_per_hour_per_machine, c.meets_target) == (1, 600, False)
    assert c.machines == 3  # ceil(1,250 / 600)
    assert c.monthly_usd == pytest.approx(1095.0)
    assert "no concurrency meets the 1 s target" in c.note


def test_an_entered_capacity_overrides_the_measured_one():
    c = serving_cost(CURVE, usd_per_hour=2.0, per_day=10_000, entered_questions_per_hour=36_000,
                     latency_target_ms=1000)
    assert (c.concurrency, c.questions_per_hour_per_machine, c.meets_target) == (None, 36_000, None)
    assert c.capacity_source == "entered" and c.machines == 1
    assert c.monthly_usd == pytest.approx(1460.0)  # 2 x 730
    assert c.cost_per_question_usd == pytest.approx(1460.0 / 300_000)
    assert "the capacity you entered" in c.note


def test_the_peak_exactly_at_capacity_needs_one_machine_and_a_quiet_month_still_pays_for_it():
    assert serving_cost(CURVE, 0.5, per_day=24 * 1500 / 3).machines == 1  # peak = 1,500 = capacity
    assert serving_cost(CURVE, 0.5, per_day=24 * 1500 / 3 + 1).machines == 2
    quiet = serving_cost(CURVE, 0.5, per_day=0)
    assert quiet.machines == 1 and quiet.monthly_usd == pytest.approx(365.0) and quiet.cost_per_question_usd is None
    flat = serving_cost(CURVE, 0.5, per_day=36_000, peak_factor=1)
    assert flat.peak_questions_per_hour == pytest.approx(1500) and flat.machines == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"usd_per_hour": -1, "per_day": 10}, "price per hour"),
    ({"usd_per_hour": 1, "per_day": 10, "peak_factor": 0.5}, "peak-to-average"),
    ({"usd_per_hour": 1, "per_day": -5}, "Questions a day"),
    ({"usd_per_hour": 1, "per_day": 10, "entered_questions_per_hour": 0}, "more than 0"),
])
def test_bad_assumptions_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        serving_cost(CURVE, **kwargs)
    with pytest.raises(ValueError, match="no concurrency"):
        choose_point([CapacityPoint(1, 0.0, 100)])


def test_a_round_lasts_as_long_as_its_slowest_answer():
    from lib.serving_cost import round_seconds

    assert round_seconds(CURVE, 1) == pytest.approx(1.5)  # alone: the p50
    # 8 at once: the 8/9 quantile, (8/9 - 0.5) / 0.45 = 0.8642 of the way from p50 7,000 to p95 9,000 ms
    assert round_seconds(CURVE, 8) == pytest.approx((7000 + 2000 * (8 / 9 - 0.5) / 0.45) / 1000)
    assert round_seconds([CapacityPoint(30, 100, 9000, 5000)], 30) == pytest.approx(9.0)  # 30/31 > 0.95: the p95
    assert round_seconds([CapacityPoint(1, 100, None, 5000)], 4) == pytest.approx(20.0)  # no p95: the p50


def test_workshop_forecast_in_waves_when_participants_outnumber_the_batch():
    f = workshop_forecast(CURVE, participants=10, arms=3)
    answer = (7000 + 2000 * (8 / 9 - 0.5) / 0.45) / 1000  # 8.728 s
    assert f.served_at_once == 8 and f.answer_s == pytest.approx(answer)
    assert f.wait_p50_s == pytest.approx(3 * answer)  # the first 8: 3 arms, one round each
    assert f.wait_max_s == pytest.approx(6 * answer)  # the last 2 wait for a second wave
    assert f.questions_per_minute == pytest.approx(25.0) and f.best_questions_per_minute == pytest.approx(25.0)


def test_workshop_forecast_interpolates_between_measured_concurrencies_and_extrapolates_past_them():
    f = workshop_forecast(CURVE, participants=3, arms=3)
    # at 3: p50 halfway between 2,200 and 4,000 = 3,100 ms; p95 halfway between 3,000 and 5,200 = 4,100 ms;
    # the 3/4 quantile: (0.75 - 0.5) / 0.45 = 0.5556 of the way
    answer = (3100 + 1000 * 0.25 / 0.45) / 1000
    assert f.served_at_once == 3 and f.answer_s == pytest.approx(answer)
    assert f.wait_p50_s == pytest.approx(3 * answer) and f.wait_max_s == pytest.approx(3 * answer)
    assert f.questions_per_minute == pytest.approx(20.0)  # 1,200 an hour
    big = workshop_forecast(CURVE, participants=16, arms=1, max_batch=16)
    # beyond 8, latency grows with the load (p50 14,000, p95 18,000 ms at 16) and throughput stays 1,500/h
    assert big.answer_s == pytest.approx((14000 + 4000 * (16 / 17 - 0.5) / 0.45) / 1000)
    assert big.questions_per_minute == pytest.approx(25.0)
    one = workshop_forecast(CURVE, participants=1, arms=1)
    assert (one.served_at_once, one.wait_p50_s) == (1, pytest.approx(1.5))


def test_points_come_from_a_stored_measurement():
    record = {"levels": [{"concurrency": 2, "questions_per_hour": 10.0, "latency_p95_ms": 5.0,
                          "latency_p50_ms": 4.0, "tokens_per_s": 1.0},
                         {"concurrency": 1, "questions_per_hour": 6.0, "latency_p95_ms": 3.0, "latency_p50_ms": 2.0}]}
    assert points_from(record) == [CapacityPoint(1, 6.0, 3.0, 2.0), CapacityPoint(2, 10.0, 5.0, 4.0)]


def test_the_forecast_counts_the_default_arms_that_run_locally():
    from lib.serving_cost import local_default_arms
    from lib.settings import ModelSpec, load_settings

    local = load_settings(env={}, secrets_file=None).with_overrides(finetuned=ModelSpec("local", "m", "a.gguf"))
    assert local_default_arms(local) == 3  # RAG, fine-tuned, hybrid
    assert local_default_arms(local.with_overrides(finetuned=ModelSpec("openai", "ft:x"))) == 1  # RAG only
    assert local_default_arms(load_settings(env={}, secrets_file=None)) == 1  # no fine-tuned model yet
