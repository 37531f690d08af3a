"""Production sign-in through OpenID Connect (Authlib's Starlette client), configured by settings.

The identity provider decides who someone is and, through two claims, what they may do: the
roles claim (the first of admin, supervisor, auditor, operator found wins) and, for operators,
the deployments claim. Anyone without a known role is refused. Authlib checks the ID token on
the callback: its RS256 signature against the provider's JWKS (from discovery), the issuer, the
audience (this client), expiry and the nonce sent with the sign-in; any failure refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.common.settings import ReviewSettings

from .users import User

ROLE_PRECEDENCE = ("admin", "supervisor", "auditor", "operator", "national")


def user_from_claims(claims: Mapping[str, Any], roles_claim: str, deployments_claim: str, force_claim: str = "lfr_force") -> User | None:
    """The console user an ID token describes, or None when it grants no role (or an operator no
    deployment, or names a force that is no force id). No force claim: force default."""
    from services.governance.forces.naming import FORCE_ID_PATTERN  # noqa: PLC0415
    subject = str(claims.get("preferred_username") or claims.get("email") or claims.get("sub") or "")
    roles = claims.get(roles_claim) or []
    roles = [roles] if isinstance(roles, str) else list(roles)
    role = next((r for r in ROLE_PRECEDENCE if r in roles), None)
    deployments = claims.get(deployments_claim) or []
    deployments = tuple([deployments] if isinstance(deployments, str) else deployments)
    force = claims.get(force_claim) or "default"
    if not subject or role is None or (role == "operator" and not deployments):
        return None
    if not isinstance(force, str) or not re.match(FORCE_ID_PATTERN, force):
        return None
    return User(subject[:128], role, deployments if role == "operator" else (), force)


def oauth_client(settings: ReviewSettings):
    """The registered Authlib client, or None when OIDC is not configured (local users file)."""
    if not settings.oidc_issuer:
        return None
    from authlib.integrations.starlette_client import OAuth

    client_kwargs: dict[str, Any] = {"scope": "openid profile email"}
    if settings.oidc_ca_file is not None:
        import ssl

        # Discovery, the JWKS and the token endpoint are all fetched over TLS checked against these CAs.
        client_kwargs["verify"] = ssl.create_default_context(cafile=settings.oidc_ca_file)
    oauth = OAuth()
    oauth.register(
        name="oidc",
        server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None,
        client_kwargs=client_kwargs,
    )
    return oauth.oidc
