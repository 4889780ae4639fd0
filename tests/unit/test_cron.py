"""Cron rules of schedules: validation messages, time zones and DST, and the
plan of a leader pass under each misfire policy (a fixed clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from queue_service.core.cron import CronError, CronSpec, Misfire, RunStatus, plan_pass

T0 = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("* * *", "has 3 fields"),
        ("0 0 * * * *", "has 6 fields"),  # cronsim's seconds field is not ours
        ("61 * * * *", "Bad minute"),
        ("0 25 * * *", "Bad hour"),
        ("0 0 31 2 *", "Bad day-of-month"),
        ("0 0 * * FUNDAY", "Bad day-of-week"),
    ],
)
def test_a_bad_cron_is_refused_with_cronsims_reason_and_a_hint(cron: str, says: str) -> None:
    with pytest.raises(CronError) as caught:
        CronSpec.parse(cron)
    assert says in str(caught.value)
    assert "minute hour day-of-month month day-of-week" in str(caught.value)


def test_an_unknown_time_zone_is_refused_with_a_suggestion() -> None:
    with pytest.raises(CronError, match="did you mean 'Europe/Paris'"):
        CronSpec.parse("0 * * * *", "Europe/Pariss")
    with pytest.raises(CronError, match="IANA name"):
        CronSpec.parse("0 * * * *", "../../etc/passwd")


def test_explain_reads_the_expression_in_its_time_zone() -> None:
    spec = CronSpec.parse("0  *  * * *")
    assert spec.cron == "0 * * * *"
    assert spec.explain() == "At the start of every hour (UTC)"


def test_a_wall_clock_time_skipped_by_dst_fires_at_the_first_minute_after_the_gap() -> None:
    # Europe/Berlin springs forward on 2026-03-29 at 02:00 -> 03:00 local.
    spec = CronSpec.parse("30 2 * * *", "Europe/Berlin")
    ticks = spec.ticks_after(datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert [next(ticks) for _ in range(2)] == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST, once
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),  # 02:30 CEST
    ]


def test_a_wall_clock_time_repeated_by_dst_fires_once_at_its_first_pass() -> None:
    # Europe/Berlin falls back on 2026-10-25 at 03:00 CEST -> 02:00 CET.
    spec = CronSpec.parse("30 2 * * *", "Europe/Berlin")
    ticks = spec.ticks_after(datetime(2026, 10, 24, 12, tzinfo=UTC))
    assert [next(ticks) for _ in range(2)] == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST; not again at 02:30 CET
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]
    # Asked from inside the repeated hour, the first pass is not offered again.
    after_first = spec.ticks_after(datetime(2026, 10, 25, 1, 10, tzinfo=UTC))
    assert next(after_first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_an_interval_expression_ticks_in_real_time_through_the_repeated_hour() -> None:
    spec = CronSpec.parse("*/30 * * * *", "Europe/Berlin")
    ticks = spec.ticks_after(datetime(2026, 10, 25, 0, 0, tzinfo=UTC))
    got = [next(ticks) for _ in range(4)]
    assert got == [
        T0.replace(month=10, day=25, hour=0, minute=30) + timedelta(minutes=30) * i
        for i in range(4)
    ]


def test_run_once_enqueues_one_job_for_every_missed_tick_and_records_each_miss() -> None:
    spec = CronSpec.parse("0 * * * *")
    plan = plan_pass(spec, Misfire.RUN_ONCE, T0, T0 + timedelta(hours=5, minutes=30))
    assert [r.fire_at for r in plan.runs] == [T0 + timedelta(hours=h) for h in range(6)]
    assert {r.status for r in plan.runs} == {RunStatus.MISSED}
    assert plan.job_ticks == [T0 + timedelta(hours=5)]
    assert {r.job_at for r in plan.runs} == {T0 + timedelta(hours=5)}
    assert plan.next_run_at == T0 + timedelta(hours=6)


def test_skip_enqueues_nothing_for_missed_ticks_and_records_each_one() -> None:
    spec = CronSpec.parse("0 * * * *")
    plan = plan_pass(spec, Misfire.SKIP, T0, T0 + timedelta(hours=5, minutes=30))
    assert len(plan.runs) == 6
    assert {r.status for r in plan.runs} == {RunStatus.SKIPPED}
    assert plan.job_ticks == []
    assert plan.next_run_at == T0 + timedelta(hours=6)


@pytest.mark.parametrize("misfire", list(Misfire))
def test_a_tick_reached_within_the_grace_fires_under_either_policy(misfire: Misfire) -> None:
    spec = CronSpec.parse("*/5 * * * *")
    plan = plan_pass(spec, misfire, T0, T0 + timedelta(seconds=20))
    assert [(r.fire_at, r.status, r.job_at) for r in plan.runs] == [(T0, RunStatus.FIRED, T0)]
    assert plan.job_ticks == [T0]
    assert plan.next_run_at == T0 + timedelta(minutes=5)


def test_a_schedule_far_behind_is_caught_up_in_bounded_passes() -> None:
    spec = CronSpec.parse("* * * * *")
    now = T0 + timedelta(minutes=25)
    first = plan_pass(spec, Misfire.RUN_ONCE, T0, now, limit=10)
    assert len(first.runs) == 10 and first.job_ticks == []  # the job waits for the last pass
    assert first.next_run_at == T0 + timedelta(minutes=10)
    assert first.next_run_at is not None
    last = plan_pass(spec, Misfire.RUN_ONCE, first.next_run_at, now, limit=100)
    assert len(last.runs) == 16 and last.job_ticks == [now]
    assert last.runs[-1].status is RunStatus.FIRED
