"""Log in and out (Flask-Login; throttled logins, see :mod:`src.app.accounts`; sessions revoked at logout)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from src.app import accounts
from src.app.accounts import LoginLockedError, authenticate
from src.app.deletion import BusyError
from src.app.deletion import delete_account as delete_account_data
from src.app.extensions import db
from src.app.forms import ActionForm, DeleteAccountForm, LoginForm, PasswordForm

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = authenticate(form.username.data, form.password.data)
        except LoginLockedError as e:
            flash(str(e), "error")
            return render_template("login.html", form=form), 429
        if user is not None:
            login_user(user)
            session.permanent = True  # expires after PERMANENT_SESSION_LIFETIME without activity
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
        current_user.revoke_sessions()  # a copy of the cookie stops working too
        db.session.commit()
        logout_user()
    return redirect(url_for("auth.login"))


@bp.route("/account")
@login_required
def account():
    """The account page: change the password, delete the account with all its data."""
    return render_template("account.html", pw=PasswordForm(), delete=DeleteAccountForm())


@bp.route("/account/token", methods=["POST"])
@login_required
def api_token():
    """Make a new API token (the old one stops working) and show it once."""
    if not ActionForm().validate_on_submit():
        return redirect(url_for("auth.account"))
    token = current_user.new_api_token()
    db.session.commit()
    return render_template("account.html", pw=PasswordForm(), delete=DeleteAccountForm(), token=token)


@bp.route("/account/password", methods=["POST"])
@login_required
def change_password():
    form = PasswordForm()
    if not form.validate_on_submit():
        flash("type the current password and the new one twice (at least 8 characters)", "error")
        return redirect(url_for("auth.account"))
    try:
        accounts.change_password(current_user, form.current.data, form.new.data)
    except ValueError as e:
        flash(str(e), "error")
        return redirect(url_for("auth.account"))
    login_user(current_user)  # this browser stays logged in with the new token; every other session ended
    session.permanent = True
    flash("password changed; every other login of yours was ended", "info")
    return redirect(url_for("auth.account"))


@bp.route("/account/delete", methods=["POST"])
@login_required
def delete_account():
    form = DeleteAccountForm()
    if not form.validate_on_submit() or not current_user.check_password(form.password.data):
        flash("type your password to delete the account", "error")
        return redirect(url_for("auth.account"))
    try:
        delete_account_data(current_user._get_current_object())
    except BusyError as e:
        flash(str(e), "error")
        return redirect(url_for("auth.account"))
    logout_user()
    flash("your account and all its videos, avatars and files were deleted", "info")
    return redirect(url_for("auth.login"))
