"""SMS and voice calls: the narrow interface and the Twilio adapter, a small
httpx client on Messages.json and Calls.json that maps Twilio's answers to
permanent, retryable or snoozed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol
from xml.sax.saxutils import escape

import httpx
import structlog
from pydantic import SecretStr

from queue_service.errors import PermanentError, RetryableError, Snooze
from queue_service.observability.redaction import redact_text
from queue_service.providers.http_failures import retry_after_seconds
from queue_service.providers.status import kind_status
from queue_service.settings import Settings

log = structlog.get_logger("queue_service.providers.sms")

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
MAX_SMS_CHARS = 1600  # Twilio's limit for one (concatenated) message body
DEFAULT_TIMEOUT_SECONDS = 10.0
# When a 429 names no Retry-After: long enough for Twilio's queue to drain a little.
DEFAULT_RATE_LIMIT_SNOOZE_SECONDS = 5.0
VOICE = "alice"
DEV_FROM = "+15005550006"  # Twilio's magic test sender, for the outbox's From line


@dataclass(frozen=True, slots=True)
class SmsReceipt:
    """What the provider calls the message or call (a Twilio SID, an outbox file)."""

    sid: str
    provider: str
    status: str


class SmsProvider(Protocol):
    """What sends SMS and places voice calls: Twilio or the development outbox."""

    name: str
    is_development: bool

    async def send_sms(self, to: str, body: str) -> SmsReceipt:
        """Send ``body`` to ``to`` (E.164); PermanentError, RetryableError or
        Snooze if refused."""

    async def call(self, to: str, say: str) -> SmsReceipt:
        """Call ``to`` (E.164) and read ``say`` aloud once."""

    async def aclose(self) -> None: ...


def check_e164(number: str) -> str:
    """``number`` if it is an E.164 phone number, else PermanentError (validation)."""
    if not E164.match(number):
        raise PermanentError(
            f"{redact_text(number)!r} is not an E.164 number (+ and 2-15 digits)",
            reason="validation",
        )
    return number


def check_body(body: str) -> str:
    """``body`` if Twilio would take it as one message, else PermanentError (validation)."""
    if not body or len(body) > MAX_SMS_CHARS:
        raise PermanentError(
            f"an SMS body has 1 to {MAX_SMS_CHARS} characters, not {len(body)}",
            reason="validation",
        )
    return body


def mask_number(number: str) -> str:
    """``+14155550123`` -> ``+1415***0123``, for logs and results."""
    return redact_text(number)


def twiml_say(text: str) -> str:
    """TwiML that reads ``text`` aloud (escaped: it is XML)."""
    return f'<Response><Say voice="{VOICE}">{escape(text)}</Say></Response>'


class TwilioSmsProvider:
    """Twilio's REST API (2010-04-01), basic auth with the account SID and token."""

    name = "twilio"
    is_development = False

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: SecretStr,
        from_number: str,
        api_base: str = "https://api.twilio.com",
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.from_number = check_e164(from_number)
        self._client = httpx.AsyncClient(
            base_url=api_base.rstrip("/"),
            auth=httpx.BasicAuth(account_sid, auth_token.get_secret_value()),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )

    async def send_sms(self, to: str, body: str) -> SmsReceipt:
        form = {"To": check_e164(to), "Body": check_body(body)}
        return await self._create("Messages.json", form)

    async def call(self, to: str, say: str) -> SmsReceipt:
        return await self._create("Calls.json", {"To": check_e164(to), "Twiml": twiml_say(say)})

    async def _create(self, resource: str, form: dict[str, str]) -> SmsReceipt:
        path = f"/2010-04-01/Accounts/{self.account_sid}/{resource}"
        try:
            response = await self._client.post(path, data={**form, "From": self.from_number})
        except httpx.HTTPError as exc:
            raise RetryableError(f"Twilio {type(exc).__name__}: {redact_text(str(exc))}") from None
        if response.status_code >= 300:
            raise twilio_error(response)
        body = _json(response)
        return SmsReceipt(str(body.get("sid", "")), self.name, str(body.get("status", "")))

    async def aclose(self) -> None:
        await self._client.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def twilio_error(response: httpx.Response) -> Exception:
    """The job error for a Twilio error answer (its JSON: code, message, more_info).
    Messages are redacted: Twilio quotes the number it refused."""
    body = _json(response)
    status = response.status_code
    text = f"Twilio {status}"
    if body.get("code"):
        text += f" (code {body['code']})"
    if body.get("message"):
        text += f": {redact_text(str(body['message']))}"
    if status == 429:
        delay = retry_after_seconds(response.headers)
        return Snooze(DEFAULT_RATE_LIMIT_SNOOZE_SECONDS if delay is None else delay, text)
    if status >= 500:
        return RetryableError(text, delay_seconds=retry_after_seconds(response.headers))
    if status == 401:
        return PermanentError(text, reason="authentication")
    if status == 403:
        return PermanentError(text, reason="forbidden")
    if status == 404:
        return PermanentError(text, reason="not_found")
    return PermanentError(text, reason="invalid_request")


def build_sms_provider(settings: Settings) -> SmsProvider:
    """Twilio when TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or its _FILE) are
    set, else the development outbox. Reads the token now, not before."""
    development = kind_status(settings, "sms").development
    token = None if development else settings.secret("TWILIO_AUTH_TOKEN")
    if token is None or not settings.twilio_account_sid:
        from queue_service.providers.outbox import OutboxSmsProvider

        return OutboxSmsProvider(settings.outbox_dir, settings.twilio_from_number or DEV_FROM)
    if not settings.twilio_from_number:
        raise ValueError("TWILIO_ACCOUNT_SID is set, so TWILIO_FROM_NUMBER (E.164) must be too")
    log.info("sms provider: Twilio", api_base=settings.twilio_api_base)
    return TwilioSmsProvider(
        account_sid=settings.twilio_account_sid,
        auth_token=token,
        from_number=settings.twilio_from_number,
        api_base=settings.twilio_api_base,
    )
