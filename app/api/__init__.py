"""The REST API, ``/api/v2``: bearer tokens only, JSON in and out."""

from flask import Blueprint

from app.http.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v2")
# Bearer tokens are never sent by a browser on its own, so cross-site forgery does not
# apply; the API ignores the session cookie entirely.
csrf.exempt(bp)

from app.api import (  # noqa: E402,F401  (views register on bp)
    audit,
    costs,
    git_credentials,
    me,
    openapi,
    people,
    sandbox,
    ssh,
    tokens,
    workspaces,
)
