"""Flask-WTF forms (each carries a CSRF token; CSRFProtect also guards every other POST)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import IntegerField, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange

from src.app.pipeline import QUALITY, RESOLUTIONS


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=80)])
    password = PasswordField("Password", validators=[DataRequired()])
    submit = SubmitField("Log in")


def _choices(pairs) -> list[SelectChoice]:
    """(value, label) pairs as the select options wtforms 3.3 expects."""
    return [SelectChoice(value, label) for value, label in pairs]


class UploadForm(FlaskForm):
    video = FileField("Video (mp4, mov or webm)", validators=[FileRequired()])
    resolution = SelectField(
        "Crop resolution (px)", choices=_choices((r, str(r)) for r in RESOLUTIONS), coerce=int, default=256
    )
    submit = SubmitField("Upload and preprocess")


class AvatarForm(FlaskForm):
    name = StringField("Name", default="my avatar", validators=[Length(max=120)])
    family = SelectField(
        "Family",
        choices=_choices(
            [
                ("mesh", "Mesh avatar (3D mesh + texture, exportable)"),
                ("image", "Image avatar (StyleGAN2 generator)"),
            ]
        ),
    )
    quality = SelectField(
        "Training length", choices=_choices((q, q) for q in QUALITY["mesh"]), default="standard"
    )
    n_identity = IntegerField("Identity shapes", default=100, validators=[NumberRange(1, 100)])
    texture_size = SelectField(
        "Texture size (mesh export)",
        choices=_choices((s, str(s)) for s in (256, 512, 1024, 2048)),
        coerce=int,
        default=1024,
    )
    submit = SubmitField("Build the avatar")


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    new = PasswordField("New password (at least 8 characters)", validators=[DataRequired(), Length(min=8)])
    confirm = PasswordField("New password again", validators=[DataRequired(), EqualTo("new")])
    submit = SubmitField("Change the password")


class DeleteAccountForm(FlaskForm):
    password = PasswordField("Your password", validators=[DataRequired()])
    submit = SubmitField("Delete my account and all my data")


class ActionForm(FlaskForm):
    """A button-only form (cancel, delete): just the CSRF token."""

    submit = SubmitField("Go")


class CrossForm(FlaskForm):
    video = FileField("Driving video", validators=[FileRequired()])
    submit = SubmitField("Upload and reenact")
