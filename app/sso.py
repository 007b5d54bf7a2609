"""Single sign-on: what an identity from OpenID Connect or GitHub becomes in Berth.

The web layer (app.web.sso) talks to the provider and hands over an ``Identity``; this
module finds, links or creates the account and applies the group-to-role and group
mappings. Every refusal says why, in words meant for the person signing in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app import accounts, audit, groups
from app.config import Settings
from app.db import write_transaction
from app.models import ROLES, User

# The strongest role wins when several provider groups map to roles.
_ROLE_ORDER = {role: rank for rank, role in enumerate(("admin", "template-admin", "auditor"))}


class SsoRefused(Exception):
    """Sign-in refused; the message says why."""


@dataclass
class Identity:
    provider: str  # "oidc" or "github"
    subject: str  # unique at the provider: "<issuer>|<sub>" or "github|<id>"
    email: str | None
    email_verified: bool
    username_hint: str | None
    # None when the provider sent no groups at all (then memberships stay as they are).
    groups: list[str] | None = field(default=None)


@dataclass
class Policy:
    allowed_domains: set[str]
    allowed_groups: set[str]
    role_map: dict[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        def names(text: str) -> set[str]:
            return {n.strip() for n in text.split(",") if n.strip()}

        pairs = (p.partition("=") for p in settings.sso_role_map.split(",") if p.strip())
        return cls(
            allowed_domains={d.lstrip("@") for d in names(settings.sso_allowed_domains)},
            allowed_groups=names(settings.sso_allowed_groups),
            role_map={group.strip(): role.strip() for group, _, role in pairs},
        )

    def role_for(self, provider_groups: list[str]) -> str | None:
        """The role the groups give, or None when no role mapping is configured."""
        if not self.role_map:
            return None
        mapped = [self.role_map[g] for g in provider_groups if g in self.role_map]
        return min(mapped, key=lambda r: _ROLE_ORDER.get(r, len(ROLES)), default="member")


def _domain(email: str | None) -> str | None:
    return email.rsplit("@", 1)[1].lower() if email and "@" in email else None


def _username(hint: str | None, email: str | None) -> str:
    """A free, valid username from the provider's preferred name or the email."""
    raw = (hint or (email or "").split("@")[0] or "user").lower()
    base = re.sub(r"[^a-z0-9]+", "-", raw).strip("-")
    if not base or not base[0].isalpha():
        base = "u-" + base if base else "user"
    base = base[:28].strip("-")
    name, suffix = base, 1
    while User.select().where(User.username == name).exists():
        suffix += 1
        name = f"{base}-{suffix}"
    return accounts.validate_username(name)


def _allowed(identity: Identity, policy: Policy) -> None:
    """Refuse a first sign-in unless the verified email's domain or a group is allowed."""
    domain = _domain(identity.email) if identity.email_verified else None
    if domain and domain in policy.allowed_domains:
        return
    if policy.allowed_groups & set(identity.groups or []):
        return
    if not policy.allowed_domains and not policy.allowed_groups:
        raise SsoRefused(
            "there is no Berth account for you yet and this instance does not create "
            "accounts at sign-in; ask an administrator to add you"
        )
    if identity.email and not identity.email_verified:
        raise SsoRefused(
            f"your email {identity.email} is not verified by the identity provider, so it "
            "cannot give you access; verify it there or ask an administrator"
        )
    raise SsoRefused(
        f"the email domain {domain or '(none)'} is not allowed to sign in here"
        + (
            f" (allowed: {', '.join(sorted(policy.allowed_domains))})"
            if policy.allowed_domains
            else ""
        )
        + (" and you are in none of the allowed groups" if policy.allowed_groups else "")
    )


def sign_in(identity: Identity, policy: Policy, source_ip: str | None = None) -> User:
    """The account for ``identity``: found by subject, else linked by verified email,
    else created when the policy allows; roles and groups mapped at every sign-in."""
    with write_transaction():
        user = User.get_or_none(User.sso_subject == identity.subject)
        created = False
        if user is None and identity.email and identity.email_verified:
            user = User.get_or_none(User.email == identity.email.lower())
            if user is not None and user.sso_subject is None:
                user.sso_subject = identity.subject
                user.save(only=[User.sso_subject])
                audit.record(
                    "user.link",
                    actor=user.username,
                    source_ip=source_ip,
                    target=f"user:{user.username}",
                    provider=identity.provider,
                    subject=identity.subject,
                )
        if user is None:
            _allowed(identity, policy)
            user = accounts.create_user(
                _username(identity.username_hint, identity.email), None, "member"
            )
            user.sso_subject = identity.subject
            user.email = (
                identity.email.lower() if identity.email_verified and identity.email else None
            )
            user.save(only=[User.sso_subject, User.email])
            created = True
            audit.record(
                "user.create",
                actor="sso",
                source_ip=source_ip,
                target=f"user:{user.username}",
                provider=identity.provider,
                email=user.email,
            )
        if user.is_disabled:
            raise SsoRefused("this account is disabled; ask an administrator to re-enable it")
        _map_groups_and_role(user, identity, policy, source_ip, created)
    return user


def _map_groups_and_role(
    user: User, identity: Identity, policy: Policy, source_ip: str | None, created: bool
) -> None:
    if identity.groups is None:
        return
    before = [g.name for g in groups.of(user)]
    groups.set_memberships(user, identity.groups)
    after = [g.name for g in groups.of(user)]
    if before != after:
        audit.record(
            "user.groups",
            actor="sso",
            source_ip=source_ip,
            target=f"user:{user.username}",
            before=before,
            after=after,
        )
    role = policy.role_for(identity.groups)
    if role is not None and role != user.role:
        previous = user.role
        try:
            accounts.set_role(user, role)
        except accounts.AccountError:
            return  # the last admin stays admin, whatever the provider says
        audit.record(
            "user.role",
            actor="sso",
            source_ip=source_ip,
            target=f"user:{user.username}",
            before=None if created else previous,
            after=role,
        )
