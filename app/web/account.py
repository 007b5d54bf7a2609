"""The account page: password, API tokens and SSH keys of the signed-in person."""

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required, login_user

from app import accounts, authz
from app.credentials import store as git_store
from app.durations import parse_duration
from app.http.extensions import LoginUser
from app.models import TOKEN_SCOPES, ApiToken
from app.ssh import keys as ssh_keys
from app.workspaces import dotfiles, service

bp = Blueprint("account", __name__, url_prefix="/account")

TOKEN_LIFETIMES = [
    ("7d", "7 days"),
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("365d", "1 year"),
    ("never", "never expires"),
]
# What someone signed in with a one-time password may open before choosing a new one.
_BEFORE_NEW_PASSWORD = {"account.index", "account.change_password", "auth.logout", "static"}


@bp.before_app_request
def _require_new_password():
    if (
        current_user.is_authenticated
        and current_user.password_change_required
        and request.endpoint not in _BEFORE_NEW_PASSWORD
        and request.blueprint != "api"  # bearer tokens only; it ignores the session
    ):
        flash("You signed in with a one-time password: choose your own to continue.", "info")
        return redirect(url_for("account.index"))
    return None


def _page(**extra):
    # The admin scope opens the admin routes, which a member's role never may: not offered.
    scopes = [s for s in TOKEN_SCOPES if s != "admin" or current_user.role != "member"]
    return render_template(
        "account/index.html",
        tokens=accounts.tokens_of(current_user.row),
        lifetimes=TOKEN_LIFETIMES,
        scopes=scopes,
        workspaces=service.visible_to(current_user.row).order_by(service.Workspace.name),
        ssh_keys=ssh_keys.keys_of(current_user.row),
        git_credentials=list(
            git_store.GitCredential.select()
            .where(git_store.GitCredential.user == current_user.row)
            .order_by(git_store.GitCredential.kind, git_store.GitCredential.host)
        ),
        **extra,
    )


@bp.route("/")
@login_required
def index():
    return _page()


@bp.route("/keys", methods=["POST"])
@login_required
def add_key():
    try:
        key = ssh_keys.add(
            current_user.row, request.form.get("public_key", ""), request.form.get("name") or None
        )
    except ssh_keys.SshKeyError as refusal:
        flash(f"Key not added: {refusal}.", "error")
    else:
        flash(f"SSH key {key.name} ({key.fingerprint}) added.", "success")
    return redirect(url_for("account.index"))


@bp.route("/keys/<int:key_id>/remove", methods=["POST"])
@login_required
def remove_key(key_id):
    try:
        key = ssh_keys.remove(current_user.row, key_id)
    except ssh_keys.SshKeyError:
        abort(404, "There is no such key.")
    flash(f"SSH key {key.name} removed.", "success")
    return redirect(url_for("account.index"))


@bp.route("/git/tokens", methods=["POST"])
@login_required
def add_git_token():
    try:
        row = git_store.add_token(
            current_user.row,
            request.form.get("host", ""),
            request.form.get("token", ""),
            request.form.get("username") or None,
            source_ip=request.remote_addr,
        )
    except git_store.CredentialError as refusal:
        flash(f"Token not kept: {refusal.message}.", "error")
    else:
        flash(f"Berth keeps your token for {row.host}.", "success")
    return redirect(url_for("account.index"))


@bp.route("/git/key", methods=["POST"])
@login_required
def make_git_key():
    row = git_store.make_key(current_user.row, source_ip=request.remote_addr)
    flash(
        f"Berth made your SSH key {row.fingerprint}: add its public half to your account on "
        "each git host.",
        "success",
    )
    return redirect(url_for("account.index"))


@bp.route("/git/<int:credential_id>/remove", methods=["POST"])
@login_required
def remove_git_credential(credential_id):
    try:
        git_store.remove(current_user.row, credential_id, source_ip=request.remote_addr)
    except git_store.CredentialError:
        abort(404, "There is no such git credential.")
    flash("The git credential was removed; Berth no longer uses it.", "success")
    return redirect(url_for("account.index"))


@bp.route("/dotfiles", methods=["POST"])
@login_required
def set_dotfiles():
    url = "" if request.form.get("remove") else request.form.get("url", "")
    try:
        user = dotfiles.choose(
            current_user.row,
            url,
            current_app.config["BERTH_SETTINGS"],
            source_ip=request.remote_addr,
        )
    except service.WorkspaceError as refusal:
        flash(f"Dotfiles not set: {refusal.message}.", "error")
    else:
        flash(
            f"Your new workspaces get the dotfiles of {user.dotfiles_url}."
            if user.dotfiles_url
            else "Your new workspaces get no dotfiles.",
            "success",
        )
    return redirect(url_for("account.index"))


@bp.route("/password", methods=["POST"])
@login_required
def change_password():
    new = request.form.get("new_password", "")
    if new != request.form.get("confirm_password", ""):
        flash("Password not changed: the two new passwords differ.", "error")
        return redirect(url_for("account.index"))
    try:
        accounts.change_password(current_user.row, request.form.get("current_password", ""), new)
    except accounts.AccountError as refusal:
        flash(f"Password not changed: {refusal}", "error")
    else:
        # Every other session ended with the change; this one goes on under the new version.
        login_user(LoginUser(current_user.row))
        flash("Your password was changed. Your other sessions are signed out.", "success")
    return redirect(url_for("account.index"))


@bp.route("/tokens", methods=["POST"])
@login_required
def create_token():
    expires = request.form.get("expires", "30d")
    if expires not in dict(TOKEN_LIFETIMES):
        flash(f"Token not created: {expires!r} is not one of the offered lifetimes.", "error")
        return redirect(url_for("account.index"))
    lifetime = None if expires == "never" else parse_duration(expires)
    workspace = None
    if request.form.get("workspace"):
        try:
            workspace = service.get_visible(
                current_user.row, request.form["workspace"], needed=authz.USE
            )
        except service.WorkspaceError as refusal:
            flash(f"Token not created: {refusal.message}.", "error")
            return redirect(url_for("account.index"))
    try:
        row, plaintext = accounts.create_token(
            current_user.row,
            request.form.get("name", ""),
            lifetime,
            scopes=request.form.getlist("scopes"),
            workspace=workspace,
            max_lifetime=current_app.config["BERTH_SETTINGS"].max_token_lifetime,
            source_ip=request.remote_addr,
        )
    except accounts.AccountError as refusal:
        flash(f"Token not created: {refusal}.", "error")
        return redirect(url_for("account.index"))
    # Rendered directly, never stored in the session: the plaintext is shown exactly once.
    return _page(new_token=plaintext, new_token_name=row.name)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id):
    token = ApiToken.get_or_none((ApiToken.id == token_id) & (ApiToken.user == current_user.row.id))
    if token is None:
        abort(404, "There is no such token.")
    accounts.revoke_token(token, source_ip=request.remote_addr)
    flash(f"Token {token.name} ({token.prefix}…) was revoked.", "success")
    return redirect(url_for("account.index"))
