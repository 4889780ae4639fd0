"""Money as integers of minor units: ISO 4217 currencies with their exponents,
and the idempotency keys money jobs derive (SPEC §4, docs/money-safety.md)."""

from __future__ import annotations

import hashlib

# ISO 4217 active codes (list one, 2024), by the number of minor-unit digits.
# Funds codes (BOV, CHE, ...) are included; precious metals (XAU, XAG, ...),
# the testing code XTS and the "no currency" code are left out: nobody pays
# for a ticket in them.
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD"
    " BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD"
    " EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR"
    " IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP"
    " MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN"
    " QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB"
    " TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW"
    " ZWG"
)

CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_TWO.split(), 2),
    **dict.fromkeys(_ZERO.split(), 0),
    **dict.fromkeys(_THREE.split(), 3),
    **dict.fromkeys(_FOUR.split(), 4),
}


def currency_code(value: str) -> str:
    """The upper-case ISO 4217 code, or ValueError naming the problem."""
    code = value.strip().upper()
    if code not in CURRENCY_EXPONENTS:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (e.g. USD, EUR, JPY)")
    return code


def exponent(currency: str) -> int:
    """Digits after the decimal point: USD 2 (cents), JPY 0, KWD 3."""
    return CURRENCY_EXPONENTS[currency_code(currency)]


def format_minor(amount: int, currency: str) -> str:
    """``1050, "USD"`` -> ``"10.50 USD"``; for people, never for arithmetic."""
    digits = exponent(currency)
    if digits == 0:
        return f"{amount} {currency_code(currency)}"
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d} {currency_code(currency)}"


def payment_job_key(user_id: str, order_id: str, amount: int) -> str:
    """SPEC §4's derived key of a payment job."""
    return f"payment:{user_id}:{order_id}:{amount}"


def refund_job_key(transaction_id: str, order_id: str) -> str:
    """SPEC §4's derived key of a refund job."""
    return f"refund:{transaction_id}:{order_id}"


def provider_key(tenant_id: str, family: str, logical_key: str) -> str:
    """The Idempotency-Key sent to the payment provider for a logical operation.

    A digest, so user and order ids never travel in a header and the length
    stays far below Stripe's 255; scoped by tenant and by family (payment,
    refund, capture), because two tenants' keys are unrelated.
    """
    material = "\x1f".join((tenant_id, family, logical_key)).encode()
    return "qs_" + hashlib.sha256(material).hexdigest()[:40]
