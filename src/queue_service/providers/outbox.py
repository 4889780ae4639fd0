"""Development stand-ins for email and SMS: every message is written as a
readable file under the outbox folder (QUEUE_SERVICE_OUTBOX_DIR), nothing is
sent, and each says so in the log when it is built."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import structlog

from queue_service.providers.email import EmailReceipt, OutgoingEmail, mask_address, to_mime
from queue_service.providers.sms import SmsReceipt, check_body, check_e164, mask_number, twiml_say

log = structlog.get_logger("queue_service.providers.outbox")


def _stamp() -> str:
    """A sortable, unique file stem: UTC time to the microsecond plus randomness."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"


def _write(path: Path, data: bytes) -> None:
    # Write then rename, so a reader (or a crash) never sees half a message.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class OutboxEmailProvider:
    """Writes each email as an .eml file (RFC 5322 text, opens in any mail client)."""

    name = "outbox"
    is_development = True

    def __init__(self, directory: Path, sender: str) -> None:
        self.directory = directory / "email"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sender = sender
        log.warning(
            "development email provider: messages are written to the outbox, not sent"
            " (set SMTP_HOST to send)",
            provider="outbox",
            directory=str(self.directory),
        )

    async def send(self, email: OutgoingEmail) -> EmailReceipt:
        path = self.directory / f"{_stamp()}.eml"
        await asyncio.to_thread(_write, path, bytes(to_mime(email, self.sender)))
        log.info(
            "email written to the development outbox",
            to=mask_address(email.to),
            file=path.name,
            message_id=email.message_id,
        )
        return EmailReceipt(email.message_id, self.name, str(path))

    async def aclose(self) -> None:
        """Nothing held."""


class OutboxSmsProvider:
    """Writes each SMS as a .txt file and each call as a .json file."""

    name = "outbox"
    is_development = True

    def __init__(self, directory: Path, from_number: str) -> None:
        self.sms_directory = directory / "sms"
        self.call_directory = directory / "calls"
        for folder in (self.sms_directory, self.call_directory):
            folder.mkdir(parents=True, exist_ok=True)
        self.from_number = from_number
        log.warning(
            "development SMS provider: messages and calls are written to the outbox, not sent"
            " (set TWILIO_ACCOUNT_SID to send)",
            provider="outbox",
            directory=str(directory),
        )

    async def send_sms(self, to: str, body: str) -> SmsReceipt:
        check_e164(to)
        check_body(body)
        path = self.sms_directory / f"{_stamp()}.txt"
        text = (
            f"From: {self.from_number}\nTo: {to}\nDate: {datetime.now(UTC).isoformat()}\n\n{body}\n"
        )
        await asyncio.to_thread(_write, path, text.encode())
        log.info("SMS written to the development outbox", to=mask_number(to), file=path.name)
        return SmsReceipt(str(path), self.name, "written")

    async def call(self, to: str, say: str) -> SmsReceipt:
        check_e164(to)
        path = self.call_directory / f"{_stamp()}.json"
        record = {
            "from": self.from_number,
            "to": to,
            "date": datetime.now(UTC).isoformat(),
            "say": say,
            "twiml": twiml_say(say),
        }
        await asyncio.to_thread(_write, path, json.dumps(record, indent=2).encode() + b"\n")
        log.info("call written to the development outbox", to=mask_number(to), file=path.name)
        return SmsReceipt(str(path), self.name, "written")

    async def aclose(self) -> None:
        """Nothing held."""
