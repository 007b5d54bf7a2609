"""Opening a workspace's IDE or port tells nothing about a workspace one cannot see:
the answer is the one for a name that does not exist (404, the same words), as its page
and the API answer. Someone who can see the workspace but not open it (an auditor) is
told so (403); its owner and those it is shared with get in."""

from __future__ import annotations

import re

from app.db import database
from app.models import Workspace
from app.workspaces import apps
from tests.test_governance import app, shared_ws, tokens  # noqa: F401  (fixtures)
from tests.test_web import login


def _ide_url(app, ws_id: int, name: str | None = None) -> str:  # noqa: F811
    with database.connection_context():
        ws = Workspace.get_by_id(ws_id)
        if name is not None:
            ws.name = name  # the same owner, a name that exists nowhere
        return apps.urls(app.config["BERTH_SETTINGS"], ws)["ide"]


def _page(response, name: str) -> str:
    """The page without what differs per session (its form token) and the name asked."""
    text = re.sub(r'value="[^"]*"', 'value=""', response.get_data(as_text=True))
    return text.replace(f"workspace {name} of", "workspace NAME of")


def _open(app, person: str, url: str):  # noqa: F811
    client = app.test_client()
    login(client, person, f"{person}-password")
    return client.get("/apps/open", query_string={"to": url})


def test_a_workspace_one_cannot_see_answers_like_one_that_does_not_exist(app, shared_ws):  # noqa: F811
    real, made_up = _ide_url(app, shared_ws), _ide_url(app, shared_ws, "nosuch")
    hidden = _open(app, "olga", real)
    missing = _open(app, "olga", made_up)
    assert hidden.status_code == missing.status_code == 404
    assert _page(hidden, "code") == _page(missing, "nosuch")
    assert "may not" not in hidden.get_data(as_text=True)

    # The auditor sees the workspace's page, so being refused the IDE says nothing new.
    audited = _open(app, "aud", real)
    assert audited.status_code == 403 and "may not open" in audited.get_data(as_text=True)
    # Its owner and the group it is shared with are sent on with a ticket.
    for person in ("mia", "sam"):
        assert _open(app, person, real).status_code == 302, person


def test_a_certificate_is_asked_for_only_for_a_host_that_is_there(app, shared_ws):  # noqa: F811
    """Caddy asks before each on-demand certificate: a port's host counts only while
    that port is open (every port number would otherwise be a certificate order)."""
    from urllib.parse import urlsplit

    client = app.test_client()
    with database.connection_context():
        ws = Workspace.get_by_id(shared_ws)
    host = urlsplit(_ide_url(app, shared_ws)).hostname
    assert client.get("/_berth/tls-ask", query_string={"domain": host}).status_code == 200
    port_host = f"8000--{host}"
    assert client.get("/_berth/tls-ask", query_string={"domain": port_host}).status_code == 404
    with database.connection_context():
        apps.open_port(ws, 8000)
    assert client.get("/_berth/tls-ask", query_string={"domain": port_host}).status_code == 200
