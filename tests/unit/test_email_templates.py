"""The packaged email templates: every one renders an HTML and a text part
with its subject, escapes hostile values in HTML, and refuses a context it
cannot render with a PermanentError (validation)."""

from __future__ import annotations

from typing import Any

import pytest

from queue_service.errors import PermanentError
from queue_service.providers.email import compose, message_id_for, to_mime
from queue_service.providers.templates import SPECS, TEMPLATE_NAMES, render_email

HOSTILE = "<script>alert('x')</script>"
CONTEXTS: dict[str, dict[str, Any]] = {
    "payment_confirmation": {"order_id": "ord-7", "amount": 12345, "currency": "usd"},
    "refund_confirmation": {"order_id": "ord-7", "amount": 500, "currency": "JPY"},
    "nft_minted": {"ticket_id": "tkt-1", "event_id": "evt-1", "mint_address": "Mint111"},
    "admin_alert": {"alert": "money queue depth", "severity": "critical", "message": "51 > 50"},
}
SUBJECTS = {
    "payment_confirmation": "Payment confirmed: order ord-7",
    "refund_confirmation": "Refund issued: order ord-7",
    "nft_minted": "Your ticket NFT is ready: tkt-1",
    "admin_alert": "[CRITICAL] money queue depth",
}
HOSTILE_KEYS = {
    "payment_confirmation": "customer_name",
    "refund_confirmation": "reason",
    "nft_minted": "event_name",
    "admin_alert": "message",
}


def test_every_template_has_a_context_here() -> None:
    assert set(CONTEXTS) == set(TEMPLATE_NAMES) == set(SPECS)


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_each_template_renders_a_subject_a_text_part_and_an_html_part(template: str) -> None:
    rendered = render_email(template, CONTEXTS[template])
    assert rendered.subject == SUBJECTS[template]
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>")
    assert "<html" not in rendered.text and rendered.text.strip()


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_each_template_escapes_a_hostile_value_in_html_and_keeps_it_readable_in_text(
    template: str,
) -> None:
    rendered = render_email(template, {**CONTEXTS[template], HOSTILE_KEYS[template]: HOSTILE})
    assert HOSTILE not in rendered.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in rendered.html
    assert HOSTILE in rendered.text


def test_amounts_render_from_minor_units_with_the_currency_exponent() -> None:
    assert (
        "123.45 USD" in render_email("payment_confirmation", CONTEXTS["payment_confirmation"]).text
    )
    assert "500 JPY" in render_email("refund_confirmation", CONTEXTS["refund_confirmation"]).text
    kwd = {"order_id": "o", "amount": 1500, "currency": "KWD"}
    assert "1.500 KWD" in render_email("payment_confirmation", kwd).text


@pytest.mark.parametrize(
    ("template", "context", "problem"),
    [
        (
            "payment_confirmation",
            {"order_id": "o", "currency": "USD"},
            "needs context keys: amount",
        ),
        ("payment_confirmation", {"order_id": "o", "amount": "1.50", "currency": "USD"}, "integer"),
        ("payment_confirmation", {"order_id": "o", "amount": True, "currency": "USD"}, "integer"),
        ("refund_confirmation", {"order_id": "o", "amount": 1, "currency": "XYZ"}, "ISO 4217"),
        ("admin_alert", {"alert": "a", "severity": "info"}, "needs context keys: message"),
        (
            "nft_minted",
            {"ticket_id": "t", "event_id": "e", "explorer_url": "javascript:alert(1)"},
            "http(s) URL",
        ),
        ("no_such_template", {}, "unknown email template"),
    ],
)
def test_a_context_the_template_cannot_render_is_a_permanent_validation_error(
    template: str, context: dict[str, Any], problem: str
) -> None:
    with pytest.raises(
        PermanentError, match=problem.replace("(", r"\(").replace(")", r"\)")
    ) as err:
        render_email(template, context)
    assert err.value.reason == "validation"


def test_an_optional_key_sent_as_null_is_left_out() -> None:
    text = render_email("refund_confirmation", {**CONTEXTS["refund_confirmation"], "reason": None})
    assert "Reason" not in text.text and "None" not in text.text


def test_a_newline_in_the_data_cannot_add_a_header_to_the_subject() -> None:
    rendered = render_email("admin_alert", {**CONTEXTS["admin_alert"], "alert": "a\nBcc: x@y.z"})
    assert "\n" not in rendered.subject


def test_a_composed_message_is_multipart_alternative_with_a_message_id_from_its_key() -> None:
    sender = "tickets@example.org"
    email = compose(
        "admin_alert", CONTEXTS["admin_alert"], to="ops@example.org", key="t1/k", sender=sender
    )
    assert email.message_id == message_id_for("t1/k", sender)
    assert (
        email.message_id
        == compose(
            "admin_alert", CONTEXTS["admin_alert"], to="ops@example.org", key="t1/k", sender=sender
        ).message_id
    )
    assert email.message_id.endswith("@example.org>")
    assert message_id_for("t2/k", sender) != email.message_id
    mime = to_mime(email, sender)
    assert mime.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in mime.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
