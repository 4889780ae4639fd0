"""Keyset cursors: an opaque token for (timestamp, id), the position after
which the next page starts."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

from queue_service.api.problems import Problem


def encode_cursor(at: datetime, item_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{item_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        at, _, item_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), UUID(item_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "cursor is not one this API returned") from None
