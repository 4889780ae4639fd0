"""The authenticated caller (a user from a JWT or a platform service from an
HMAC signature) and the one error every authentication failure raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from queue_service.errors import QueueServiceError

Role = Literal["admin", "venue_admin", "user"]
ROLES: frozenset[Role] = frozenset(get_args(Role))

MAX_IDENTIFIER_LENGTH = 200


class AuthError(QueueServiceError):
    """Authentication failed.

    ``detail`` is safe to show the client: it names what was wrong, never the
    token, a signature or a secret. ``status`` is 401 unless said otherwise.
    """

    def __init__(self, detail: str, status: int = 401) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, within which tenant, with which roles.

    A user principal comes from a JWT: ``roles`` are the token's, possibly
    empty (authenticated, but no permission beyond what needs none).

    A service principal (``service`` set, see :meth:`for_service`) carries no
    roles: what a platform service may do is the API's decision per route
    (SPEC §6 lists "service" as its own column), made with :attr:`is_service`,
    never by pretending a service is an admin.
    """

    subject: str
    tenant_id: str
    roles: frozenset[Role]
    service: str | None = None

    @classmethod
    def for_service(cls, service: str, tenant_id: object) -> Principal:
        """The principal of a verified service request naming its tenant in
        ``x-tenant-id``; raises AuthError(401) if that header is unusable."""
        tenant = parse_identifier(tenant_id, "header x-tenant-id")
        return cls(
            subject=f"service:{service}", tenant_id=tenant, roles=frozenset(), service=service
        )

    @property
    def is_service(self) -> bool:
        return self.service is not None

    def has_any_role(self, *roles: Role) -> bool:
        return not self.roles.isdisjoint(roles)


def parse_identifier(value: object, what: str) -> str:
    """A subject or tenant id: a non-empty string of at most 200 printable
    characters, without leading or trailing spaces. ``what`` names the source
    in the error ("claim sub")."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_IDENTIFIER_LENGTH
        or not value.isprintable()
        or value != value.strip()  # " acme" and "acme" must not be two tenants
    ):
        raise AuthError(
            f"{what} must be a non-empty string of at most "
            f"{MAX_IDENTIFIER_LENGTH} printable characters"
        )
    return value
