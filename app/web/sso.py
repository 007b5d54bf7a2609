"""Single sign-on over the browser with authlib: OpenID Connect (any provider by its
issuer's discovery document) and GitHub OAuth. What the identity becomes is app.sso's
business; this module runs the redirects and reads the provider's answer."""

from __future__ import annotations

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import login_user

from app import audit, sso
from app.http.extensions import LoginUser
from app.web.forms import safe_next

bp = Blueprint("sso", __name__)


def providers(settings) -> list[tuple[str, str]]:
    """(name, label) of the sign-in buttons this instance offers."""
    found = []
    if settings.oidc_issuer:
        found.append(("oidc", settings.oidc_name))
    if settings.github_client_id:
        found.append(("github", "GitHub"))
    return found


def init_app(app, settings) -> None:
    oauth = OAuth(app)
    if settings.oidc_issuer:
        discovery = settings.oidc_issuer
        if not discovery.endswith("/.well-known/openid-configuration"):
            discovery = discovery.rstrip("/") + "/.well-known/openid-configuration"
        oauth.register(
            "oidc",
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            server_metadata_url=discovery,
            client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256"},
        )
    if settings.github_client_id:
        oauth.register(
            "github",
            client_id=settings.github_client_id,
            client_secret=settings.github_client_secret,
            authorize_url=settings.github_url + "/login/oauth/authorize",
            access_token_url=settings.github_url + "/login/oauth/access_token",
            api_base_url=settings.github_api_url + "/",
            client_kwargs={"scope": "read:user user:email"},
        )
    app.extensions["berth_oauth"] = oauth


def _client(provider: str):
    client = current_app.extensions["berth_oauth"].create_client(provider)
    if client is None:
        abort(404, "This sign-in method is not set up here.")
    return client


def _settings():
    return current_app.config["BERTH_SETTINGS"]


@bp.route("/login/sso/<provider>")
def start(provider):
    client = _client(provider)
    session["sso_next"] = safe_next(request.args.get("next"), url_for("dashboard.index"))
    # From the public URL, not the request: behind Caddy the two can differ.
    callback = _settings().public_url + url_for("sso.callback", provider=provider)
    return client.authorize_redirect(callback)


def _oidc_identity(client, token: dict) -> sso.Identity:
    claims = dict(token.get("userinfo") or {})
    # Many providers put email and groups in the userinfo answer only.
    claims.update(client.userinfo(token=token))
    settings = _settings()
    group_claim = claims.get(settings.oidc_groups_claim)
    if isinstance(group_claim, str):
        group_claim = [group_claim]
    issuer = client.load_server_metadata().get("issuer", settings.oidc_issuer)
    return sso.Identity(
        provider="oidc",
        subject=f"{issuer}|{claims['sub']}",
        email=claims.get("email"),
        email_verified=bool(claims.get("email_verified")),
        username_hint=claims.get("preferred_username") or claims.get("nickname"),
        groups=[str(g) for g in group_claim] if isinstance(group_claim, list) else None,
    )


def _github_identity(client, token: dict) -> sso.Identity:
    user = client.get("user", token=token).json()
    emails = client.get("user/emails", token=token).json()
    primary = next((e for e in emails if e.get("primary") and e.get("verified")), None)
    return sso.Identity(
        provider="github",
        subject=f"github|{user['id']}",
        email=primary["email"] if primary else None,
        email_verified=primary is not None,
        username_hint=user.get("login"),
        groups=None,
    )


@bp.route("/login/sso/<provider>/callback")
def callback(provider):
    client = _client(provider)
    identity = None
    try:
        token = client.authorize_access_token()
        identity = (_oidc_identity if provider == "oidc" else _github_identity)(client, token)
        user = sso.sign_in(
            identity, sso.Policy.from_settings(_settings()), source_ip=request.remote_addr
        )
    except (OAuthError, sso.SsoRefused, KeyError, ValueError) as exc:
        message = (
            f"Sign-in refused: {exc}."
            if isinstance(exc, sso.SsoRefused)
            else f"Sign-in with {provider} failed: {getattr(exc, 'description', None) or exc}."
        )
        current_app.logger.info("sso sign-in failed from %s: %s", request.remote_addr, exc)
        audit.record(
            "login",
            actor=(identity.email or identity.username_hint or "unknown")
            if identity
            else "unknown",
            source_ip=request.remote_addr,
            outcome="failure",
            method=provider,
            subject=identity.subject if identity else None,
            reason=str(exc),
        )
        return render_template(
            "auth/login.html", error=message, next=url_for("dashboard.index")
        ), 403
    session.permanent = True
    login_user(LoginUser(user))
    audit.record("login", actor=user.username, source_ip=request.remote_addr, method=provider)
    return redirect(session.pop("sso_next", None) or url_for("dashboard.index"))
