"""The signed-in home: the person's workspaces, and the templates they can start from."""

from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("dashboard", __name__)


@bp.route("/")
@login_required
def index():
    return render_template("dashboard/workspaces.html", workspaces=[])


@bp.route("/templates")
@login_required
def templates():
    return render_template("dashboard/templates.html", templates=[])
