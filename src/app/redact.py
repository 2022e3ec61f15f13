"""What a user sees of a job's log and errors: sentences, no server paths, no exception class names.

The job folder's ``job.log`` keeps every detail for the operator. Pages, the API and the log a user
downloads go through :func:`redact`: absolute paths become their last part (``.../uploads/<id>/video.mp4``
-> ``video.mp4``), Python tracebacks are dropped (the error's own line stays), and an exception's class
name in front of its message (``NoFaceError: no face ...``) or after it (``... (NoFaceError)``) is removed,
and so are terminal control sequences (progress bars' colours).
"""

from __future__ import annotations

import re

_PATH = re.compile(r"(?<![\w.:/])(?:/[\w.@+-]+)+/?")  # /a/b/c.txt (not URLs: '://' is excluded)
_CLASS_PREFIX = re.compile(r"^(\s*)(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Interrupt)(?::\s*|$)")
_CLASS_SUFFIX = re.compile(r"\s*\((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception)\)")
_CLASS_ANY = re.compile(r"\b(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception)\b")
_TRACE_FILE = re.compile(r'^\s+File "')
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")  # terminal colours, progress-bar control
# a hint to change a config key (the operator's, not the user's)
_CONFIG_HINT = re.compile(r"[,;]? or (?:lower|raise|set|change) [a-z_]+(?:\.[a-z_0-9]+)+")


def _short_path(m: re.Match) -> str:
    parts = [p for p in m.group(0).split("/") if p]
    return parts[-1] if parts else ""


def redact(text: str | None) -> str:
    """``text`` (a log or a message) without server paths, tracebacks or exception class names."""
    if not text:
        return ""
    out: list[str] = []
    skip_code = False
    for line in _ANSI.sub("", text).splitlines():
        if line.startswith("Traceback (most recent call last)") or line.strip().startswith(
            ("The above exception", "During handling of")
        ):
            continue
        if _TRACE_FILE.match(line):
            skip_code = True  # the source line printed under it goes too
            continue
        if line.strip() and set(line.strip()) <= set("^~"):
            continue  # the caret markers under a traceback's source line
        if skip_code and line.startswith("    "):
            skip_code = False
            continue
        skip_code = False
        line = _CLASS_SUFFIX.sub("", line)
        line = _CLASS_PREFIX.sub(r"\1error: ", line)
        line = _CLASS_ANY.sub("error", line)
        out.append(_PATH.sub(_short_path, line).rstrip())
    return "\n".join(out)


def user_error(message: str | None) -> str | None:
    """A job's one-line error as a user reads it (see :func:`redact`); None stays None."""
    if message is None:
        return None
    text = _CONFIG_HINT.sub("", redact(message)).strip()
    return text[len("error: ") :] if text.startswith("error: ") else text
