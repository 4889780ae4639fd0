"""ticket.mint and nft.mint: a ticket's NFT, minted once in effect. Wallet
balance first, a ledger row before the minting call, the service's status
asked before any second call, and the result recorded as the job completes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from queue_service.core.base58 import is_solana_address, short_address
from queue_service.core.jobs import EnqueueRequest, Priority
from queue_service.core.retry import MINT_RETRY
from queue_service.errors import EnqueueError, PermanentError, RetryableError, Snooze
from queue_service.observability.metrics import NFTS_MINTED
from queue_service.processors.base import Payload, Processor, processor
from queue_service.processors.context import JobContext
from queue_service.providers.minting import MintRequest, MintResult

if TYPE_CHECKING:
    from queue_service.store.mints import MintRecord

# A low wallet is fixed by a person topping it up: check again in a minute,
# without using an attempt (the alert on wallet_balances tells them).
LOW_BALANCE_SNOOZE_SECONDS = 60.0
# The minting service accepted but the chain has not confirmed yet.
PENDING_SNOOZE_SECONDS = 5.0
# Past this, a mint still pending is a failure of the attempt (retried, then DLQ).
PENDING_LIMIT_SECONDS = 600.0
MINT_KEY_TTL_SECONDS = 7 * 86_400
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_EMAIL = re.compile(r"^[^\s@<>()\[\],;:\"]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")


class MintMetadata(Payload):
    name: str | None = Field(default=None, max_length=200)
    image: str | None = Field(default=None, max_length=2048)
    # Metaplex style: [{"trait_type": "Section", "value": "A"}, ...]
    attributes: list[dict[str, str | int | float | bool]] = Field(default=[], max_length=50)


class MintPayload(Payload):
    ticket_id: str
    user_id: str
    wallet_address: str
    event_id: str
    metadata: MintMetadata | None = None
    # Optional: where the nft_minted email goes (no address, no email).
    customer_email: str | None = Field(default=None, max_length=254)

    @field_validator("ticket_id", "user_id", "event_id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        # They go into a URL path and an idempotency key: keep them plain.
        if not _IDENTIFIER.fullmatch(value):
            raise ValueError("must be 1 to 128 of letters, digits, '.', '_', ':', '-'")
        return value

    @field_validator("customer_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        # As strict as email.send's own check: an address it would refuse
        # must be refused here, at enqueue, not after the mint.
        if value is not None and not _EMAIL.match(value):
            raise ValueError("not an email address (local@example.com)")
        return value

    @field_validator("wallet_address")
    @classmethod
    def _solana_address(cls, value: str) -> str:
        if not is_solana_address(value):
            raise ValueError("is not a Solana address (base58 of a 32-byte public key)")
        return value


def mint_key(p: MintPayload) -> str:
    """SPEC §4's derived key for mints."""
    return f"mint:{p.ticket_id}:{p.user_id}"


async def mint_ticket(ctx: JobContext, p: MintPayload) -> dict[str, Any]:
    """Mint the ticket's NFT once, then complete and enqueue its email together."""
    store, tenant = ctx.deps.store, ctx.job.tenant_id
    record = await store.mint_get(tenant, p.ticket_id)
    if record is not None:
        _same_owner(p, record)
    if record is not None and record.state == "minted":
        return _already_minted(p, record)
    if record is not None:
        # Asked before (an earlier attempt, a rescued one, another job): the
        # service may have minted even if no one here heard the answer.
        known = await _status(ctx, p.ticket_id)
        if known is not None and known.status != "failed":
            return await _settle(ctx, p, record, known)
    await _check_balance(ctx)
    key = record.idempotency_key if record is not None else await _job_key(ctx, p)
    requested = await store.mint_request(
        tenant=tenant,
        ticket=p.ticket_id,
        user=p.user_id,
        event=p.event_id,
        wallet=p.wallet_address,
        key=key,
        job=ctx.job.id,
    )
    if requested is None:  # another job completed this ticket's mint meanwhile
        minted = await store.mint_get(tenant, p.ticket_id)
        assert minted is not None
        return _already_minted(p, minted)
    result = await _mint(ctx, p, requested)
    return await _settle(ctx, p, requested, result)


async def _job_key(ctx: JobContext, p: MintPayload) -> str:
    job = await ctx.deps.store.get_job(ctx.job.id)
    return job.idempotency_key if job is not None and job.idempotency_key else mint_key(p)


async def _check_balance(ctx: JobContext) -> None:
    wallet = ctx.deps.providers.wallet
    async with ctx.deps.gate.slot("solana", str(ctx.job.id)):
        balance = await wallet.balance_sol()
    minimum = ctx.deps.settings.solana_min_balance_sol
    observed = await ctx.deps.store.wallet_balance_record(wallet.address, balance, minimum)
    if observed.low:
        ctx.log.warning(
            "minting wallet balance below the minimum; mint snoozed",
            wallet=short_address(wallet.address),
            balance_sol=balance,
            minimum_sol=minimum,
        )
        raise Snooze(
            LOW_BALANCE_SNOOZE_SECONDS,
            f"wallet balance {balance:g} SOL is below the minimum {minimum:g} SOL",
        )


async def _status(ctx: JobContext, ticket_id: str) -> MintResult | None:
    async with ctx.deps.gate.slot("internal", str(ctx.job.id)):
        return await ctx.deps.providers.minter.status(ctx.job.tenant_id, ticket_id)


async def _mint(ctx: JobContext, p: MintPayload, record: MintRecord) -> MintResult:
    request = MintRequest(
        tenant_id=ctx.job.tenant_id,
        ticket_id=p.ticket_id,
        user_id=p.user_id,
        event_id=p.event_id,
        wallet_address=p.wallet_address,
        idempotency_key=record.idempotency_key,
        metadata=p.metadata.model_dump(exclude_none=True) if p.metadata else {},
    )
    ctx.log.info(
        "minting",
        ticket_id=p.ticket_id,
        wallet=short_address(p.wallet_address),
        request=record.requests,
    )
    async with ctx.deps.gate.slot("internal", str(ctx.job.id)):
        return await ctx.deps.providers.minter.mint(request)


async def _settle(
    ctx: JobContext, p: MintPayload, record: MintRecord, result: MintResult
) -> dict[str, Any]:
    """Act on the service's answer: finish, wait, or fail."""
    if result.status == "pending":
        _still_pending(record, "the minting service has not finished the mint")
    if result.status == "failed":
        error = result.error or "the minting service reported the mint failed"
        await ctx.deps.store.mint_mark_failed(ctx.job.tenant_id, p.ticket_id, error)
        if result.retryable:
            raise RetryableError(f"mint failed: {error}")
        raise PermanentError(f"mint failed: {error}", reason="mint_failed")
    assert result.mint_address is not None  # _result refuses a minted answer without them
    assert result.signature is not None
    async with ctx.deps.gate.slot("solana", str(ctx.job.id)):
        [chain] = await ctx.deps.providers.wallet.signature_statuses([result.signature])
    if chain is not None and chain.err is not None:
        raise PermanentError(
            f"the mint's transaction failed on chain: {str(chain.err)[:200]}", reason="chain_failed"
        )
    if chain is None or not chain.settled:
        _still_pending(record, "the mint's transaction is not confirmed yet")
    return await _finish(ctx, p, result.mint_address, result.signature)


def _still_pending(record: MintRecord, why: str) -> None:
    age = (datetime.now(UTC) - record.requested_at).total_seconds()
    if age < PENDING_LIMIT_SECONDS:
        raise Snooze(PENDING_SNOOZE_SECONDS, why)
    raise RetryableError(f"{why} after {age:.0f} s")


async def _finish(
    ctx: JobContext, p: MintPayload, mint_address: str, signature: str
) -> dict[str, Any]:
    result = {"ticket_id": p.ticket_id, "mint_address": mint_address, "signature": signature}
    async with ctx.transaction() as tx:
        await ctx.deps.store.mint_mark_minted(
            ctx.job.tenant_id, p.ticket_id, mint_address, signature, conn=tx.conn
        )
        if p.customer_email:
            try:
                await tx.enqueue(_minted_email(ctx, p, mint_address, signature))
            except EnqueueError as exc:
                # Refused before any write (unknown type, payload, key in use):
                # the mint is the effect that matters; failing now would
                # leave it made and unrecorded. Said in the result and the log.
                ctx.log.warning("nft_minted email not enqueued", error=str(exc))
                result["email"] = f"not enqueued: {exc}"
        tx.result = result
    ctx.log.info("minted", ticket_id=p.ticket_id, mint=short_address(mint_address))
    NFTS_MINTED.inc()
    return result


def _minted_email(
    ctx: JobContext, p: MintPayload, mint_address: str, signature: str
) -> EnqueueRequest:
    assert p.customer_email is not None
    # The nft_minted template's context (providers/templates): a key left out
    # falls back to its default there, where a None would print "None".
    context = {
        "ticket_id": p.ticket_id,
        "event_id": p.event_id,
        "wallet_address": p.wallet_address,
        "mint_address": mint_address,
        "signature": signature,
    }
    if p.metadata is not None and p.metadata.name:
        context["name"] = p.metadata.name
    return EnqueueRequest(
        type="email.send",
        data={
            "to": p.customer_email,
            "template": "nft_minted",
            "context": context,
        },
        tenant_id=ctx.job.tenant_id,
        # One email per ticket's mint, whichever job completes it.
        idempotency_key=f"email:nft_minted:{p.ticket_id}",
        request_id=ctx.job.request_id,
        trace_context=ctx.job.trace_context,
    )


def _same_owner(p: MintPayload, record: MintRecord) -> None:
    """A ticket is minted for one user and wallet: whatever state its ledger
    row is in, the service may have minted (or be minting) to that wallet."""
    if (record.user_id, record.wallet_address) != (p.user_id, p.wallet_address):
        raise PermanentError(
            f"ticket {p.ticket_id} was asked to be minted for another user or wallet",
            reason="conflict",
        )


def _already_minted(p: MintPayload, record: MintRecord) -> dict[str, Any]:
    _same_owner(p, record)
    return {
        "ticket_id": p.ticket_id,
        "mint_address": record.mint_address,
        "signature": record.signature,
        "already_minted": True,
    }


def _declare(job_type: str) -> Processor[MintPayload]:
    return processor(
        job_type,
        payload=MintPayload,
        queue="money",
        derive_key=mint_key,
        priority=Priority.HIGH,
        concurrency=3,
        lease_seconds=120,
        max_stalled=1,
        timeout_seconds=60,
        retry=MINT_RETRY,
        idempotency_ttl_seconds=MINT_KEY_TTL_SECONDS,
    )(mint_ticket)


ticket_mint = _declare("ticket.mint")
nft_mint = _declare("nft.mint")

# QUEUE_SERVICE_PROCESSORS=queue_service.processors.mints:PROCESSORS
PROCESSORS: list[object] = [ticket_mint, nft_mint]
