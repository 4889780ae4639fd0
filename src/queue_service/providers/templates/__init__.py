"""The email templates (Jinja2, packaged beside this module): each an HTML
part (autoescaped) and a text part with a subject, its required context keys
checked before rendering so bad data is a PermanentError, never a crash."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    import jinja2

from queue_service.core.money import currency_code, format_minor
from queue_service.errors import PermanentError

TemplateName = Literal["payment_confirmation", "refund_confirmation", "nft_minted", "admin_alert"]
TEMPLATE_NAMES: tuple[str, ...] = get_args(TemplateName)

_URL_KEYS = ("explorer_url", "runbook_url")


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    subject: str  # a Jinja2 expression over the context, rendered as plain text
    required: tuple[str, ...]
    amount_keys: tuple[str, ...] = ()  # integer minor units, with "currency"


SPECS: dict[str, TemplateSpec] = {
    "payment_confirmation": TemplateSpec(
        "Payment confirmed: order {{ order_id }}",
        ("order_id", "amount", "currency"),
        ("amount",),
    ),
    "refund_confirmation": TemplateSpec(
        "Refund issued: order {{ order_id }}",
        ("order_id", "amount", "currency"),
        ("amount",),
    ),
    "nft_minted": TemplateSpec(
        "Your ticket NFT is ready: {{ name | default(ticket_id) }}",
        ("ticket_id", "event_id"),
    ),
    "admin_alert": TemplateSpec(
        "[{{ severity | upper }}] {{ alert }}",
        ("alert", "severity", "message"),
    ),
}


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@functools.cache
def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    """The HTML and the text environment, made on first render: declaring
    email.send (the API, producers) never loads Jinja2."""
    import jinja2

    loader = jinja2.PackageLoader("queue_service.providers", "templates")
    html = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    # Text parts and subjects are not HTML: escaping would show "&lt;" to readers.
    text = jinja2.Environment(
        loader=loader,
        autoescape=False,  # noqa: S701 (text/plain and a header, never HTML)
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return html, text


def missing_keys(template: str, context: Mapping[str, Any]) -> list[str]:
    """The required context keys of ``template`` that ``context`` lacks."""
    return [k for k in SPECS[template].required if context.get(k) in (None, "")]


def _prepare(template: str, context: Mapping[str, Any]) -> dict[str, Any]:
    if template not in SPECS:
        raise PermanentError(f"unknown email template {template!r}", reason="validation")
    missing = missing_keys(template, context)
    if missing:
        raise PermanentError(
            f"template {template!r} needs context keys: {', '.join(missing)}",
            reason="validation",
        )
    # An optional key sent as null is an absent key, not the word "None".
    values = {k: v for k, v in context.items() if v is not None}
    for key in _URL_KEYS:
        url = values.get(key)
        # Autoescaping does not stop a javascript: link; only web links go in href.
        if url is not None and not (
            isinstance(url, str) and url.startswith(("https://", "http://"))
        ):
            raise PermanentError(
                f"template {template!r}: {key} must be an http(s) URL", reason="validation"
            )
    spec = SPECS[template]
    if spec.amount_keys:
        try:
            values["currency"] = currency = currency_code(str(values["currency"]))
        except ValueError as exc:
            raise PermanentError(f"template {template!r}: {exc}", reason="validation") from None
        for key in spec.amount_keys:
            amount = values[key]
            # bool is an int subclass; True is no amount.
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise PermanentError(
                    f"template {template!r}: {key} must be an integer in minor units",
                    reason="validation",
                )
            values[f"{key}_display"] = format_minor(amount, currency)
    return values


def render_email(template: str, context: Mapping[str, Any]) -> RenderedEmail:
    """Subject, text and HTML of ``template``; PermanentError (validation) when
    the context cannot fill it."""
    import jinja2

    values = _prepare(template, context)
    _html, _text = _environments()
    try:
        subject = _text.from_string(SPECS[template].subject).render(values)
        text = _text.get_template(f"{template}.txt").render(values)
        html = _html.get_template(f"{template}.html").render(values)
    except (jinja2.UndefinedError, TypeError, ValueError) as exc:
        raise PermanentError(
            f"template {template!r} cannot render this context: {exc}", reason="validation"
        ) from None
    # A header must be one line: a newline in the data must not add headers.
    return RenderedEmail(" ".join(subject.split()), text, html)
