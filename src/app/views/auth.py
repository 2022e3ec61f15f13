"""Log in and out (Flask-Login; passwords are checked against werkzeug hashes)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required, login_user, logout_user
from sqlalchemy import select

from src.app.extensions import db
from src.app.forms import ActionForm, LoginForm
from src.app.models import User

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(select(User).where(User.username == form.username.data))
        if user is not None and user.check_password(form.password.data):
            login_user(user)
            nxt = request.args.get("next", "")
            parts = urlsplit(nxt)
            if not nxt.startswith("/") or nxt.startswith("//") or parts.netloc or parts.scheme:
                nxt = url_for("studio.index")  # only local redirects
            return redirect(nxt)
        flash("wrong user name or password", "error")
    return render_template("login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    if ActionForm().validate_on_submit():
        logout_user()
    return redirect(url_for("auth.login"))
