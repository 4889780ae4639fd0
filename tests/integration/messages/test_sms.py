"""sms.send and voice calls through a Twilio-shaped HTTP server: the right
form body and basic auth, 429 snoozes without using an attempt, 400 is
permanent, 5xx is retried; numbers never appear raw in the logs."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from queue_service.core.jobs import JobStatus
from queue_service.errors import PermanentError, RetryableError, Snooze
from queue_service.providers.sms import TwilioSmsProvider
from queue_service.runtime.service import Runtime
from tests.integration.conftest import WorkerFactory
from tests.integration.messages.conftest import reaches, sms_job
from tests.support.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio

BASIC = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()


def twilio_provider(twilio: FakeTwilio, token: str = AUTH_TOKEN) -> TwilioSmsProvider:
    return TwilioSmsProvider(
        account_sid=ACCOUNT_SID,
        auth_token=SecretStr(token),
        from_number=FROM_NUMBER,
        api_base=twilio.base_url,
    )


async def test_an_sms_reaches_twilio_with_its_form_body_and_basic_auth(
    runtime: Runtime, run_worker: WorkerFactory, twilio: FakeTwilio
) -> None:
    done = await runtime.manager.enqueue(sms_job("+14155550123", "Doors open at 7 pm"))
    run_worker(queues=("communication",))
    job = await reaches(runtime, done.job_id, JobStatus.COMPLETED)

    [sent] = twilio.of("Messages")
    assert sent.form == {"To": "+14155550123", "From": FROM_NUMBER, "Body": "Doors open at 7 pm"}
    assert sent.authorization == BASIC
    assert job.result == {"to": "+1415***0123", "sid": f"SM{1:032x}", "already_sent": False}


async def test_a_voice_call_reads_its_text_through_twiml(twilio: FakeTwilio) -> None:
    provider = twilio_provider(twilio)
    try:
        receipt = await provider.call("+14155550123", "Money queue depth is 51 & rising <now>")
    finally:
        await provider.aclose()

    [call] = twilio.of("Calls")
    assert call.form["To"] == "+14155550123" and call.form["From"] == FROM_NUMBER
    assert call.form["Twiml"] == (
        '<Response><Say voice="alice">Money queue depth is 51 &amp; rising &lt;now&gt;</Say>'
        "</Response>"
    )
    assert receipt.sid.startswith("CA") and receipt.provider == "twilio"


async def test_a_429_snoozes_the_job_without_using_an_attempt(
    runtime: Runtime, run_worker: WorkerFactory, twilio: FakeTwilio
) -> None:
    twilio.answer_next(429, code=20429, retry_after="0")
    done = await runtime.manager.enqueue(sms_job())
    run_worker(queues=("communication",))
    job = await reaches(runtime, done.job_id, JobStatus.COMPLETED)

    assert twilio.refused == [429] and len(twilio.of("Messages")) == 1
    assert job.attempts == 1
    events = await runtime.store.job_events(done.job_id)
    assert [(e.event, e.attempt) for e in events] == [("snoozed", 1), ("completed", 1)]
    assert "Twilio 429" in (events[0].error or "")


async def test_a_400_for_an_invalid_number_fails_the_job_at_once(
    runtime: Runtime, run_worker: WorkerFactory, twilio: FakeTwilio
) -> None:
    twilio.answer_next(400, code=21211)
    done = await runtime.manager.enqueue(sms_job("+14155550100"))
    run_worker(queues=("communication",))
    job = await reaches(runtime, done.job_id, JobStatus.FAILED)

    assert job.attempts == 1 and twilio.of("Messages") == []
    assert "permanent (invalid_request)" in (job.last_error or "")
    assert "code 21211" in (job.last_error or "")
    # Twilio's message quoted the number; the stored error must not.
    assert "+14155550100" not in (job.last_error or "")
    [dead] = await runtime.store.list_dead_letters("t1", 10)
    assert dead.original_job_id == done.job_id


async def test_twilio_answers_map_to_permanent_retryable_or_snooze(twilio: FakeTwilio) -> None:
    provider = twilio_provider(twilio)
    try:
        twilio.answer_next(500, retry_after="3")
        with pytest.raises(RetryableError, match="Twilio 500") as retry:
            await provider.send_sms("+14155550123", "hi")
        assert retry.value.delay_seconds == 3.0

        twilio.answer_next(429)
        with pytest.raises(Snooze) as snooze:
            await provider.send_sms("+14155550123", "hi")
        assert snooze.value.delay_seconds > 0

        with pytest.raises(PermanentError, match=r"E\.164") as invalid:
            await provider.send_sms("4155550123", "hi")
        assert invalid.value.reason == "validation"
        with pytest.raises(PermanentError, match="1600") as long:
            await provider.send_sms("+14155550123", "x" * 1601)
        assert long.value.reason == "validation"
        assert twilio.of("Messages") == []
    finally:
        await provider.aclose()

    wrong = twilio_provider(twilio, token="not-the-token")
    try:
        with pytest.raises(PermanentError) as auth:
            await wrong.send_sms("+14155550123", "hi")
        assert auth.value.reason == "authentication"
    finally:
        await wrong.aclose()

    gone = TwilioSmsProvider(
        account_sid=ACCOUNT_SID,
        auth_token=SecretStr(AUTH_TOKEN),
        from_number=FROM_NUMBER,
        api_base="http://127.0.0.1:9",  # discard port: nothing listens
    )
    try:
        with pytest.raises(RetryableError, match="Twilio"):
            await gone.send_sms("+14155550123", "hi")
    finally:
        await gone.aclose()


async def test_sms_logs_mask_the_phone_number(
    runtime: Runtime, run_worker: WorkerFactory, twilio: FakeTwilio
) -> None:
    with capture_logs() as logs:
        done = await runtime.manager.enqueue(sms_job("+14155550123"))
        run_worker(queues=("communication",))
        await reaches(runtime, done.job_id, JobStatus.COMPLETED)
    sent = [e for e in logs if e["event"] == "SMS sent"]
    assert sent and sent[0]["to"] == "+1415***0123"
    assert "+14155550123" not in repr(logs) and "4155550123" not in repr(logs)
