"""Vendor the studio's 3D viewer: Google's ``<model-viewer>`` from the npm registry, at install time.

Downloads the pinned release tarball, checks it against the registry's published SHA-512 integrity,
and writes ``dist/model-viewer.min.js`` (the bundle with three.js inside) and its licence to
``src/app/static/vendor/model-viewer/`` (git-ignored; the app serves it from its own static files, no
CDN at run time). ``make install`` runs it; run it again with ``python scripts/vendor_viewer.py``.
Without network access it says so and leaves the studio without the viewer (the GLB download stays).
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "4.4.0"
URL = f"https://registry.npmjs.org/@google/model-viewer/-/model-viewer-{VERSION}.tgz"
INTEGRITY = "sha512-8z1SB5sPlzKoak5mdx/D31brBakPYm3Qi31EfAucHAUrtrHHCbabypkKvSwReYhUpPaxyJ46oT47uWE/hrs1Zw=="
OUT = Path(__file__).resolve().parents[1] / "src" / "app" / "static" / "vendor" / "model-viewer"
MEMBERS = {"package/dist/model-viewer.min.js": "model-viewer.min.js", "package/LICENSE": "LICENSE"}


def vendor(out: Path = OUT) -> Path:
    """Fetch, verify and unpack the viewer into ``out``; the bundle's path."""
    target = out / "model-viewer.min.js"
    if target.is_file() and (out / "VERSION").is_file() and (out / "VERSION").read_text().strip() == VERSION:
        return target
    with urllib.request.urlopen(URL, timeout=60) as r:
        data = r.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        raise SystemExit(f"the downloaded model-viewer {VERSION} does not match its published checksum")
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, name in MEMBERS.items():
            f = tar.extractfile(member)
            tmp = out / f".{name}.tmp"
            tmp.write_bytes(f.read())
            tmp.replace(out / name)
    (out / "VERSION").write_text(VERSION + "\n")
    return target


if __name__ == "__main__":
    try:
        print(f"model-viewer {VERSION}: {vendor()}")
    except OSError as e:
        print(f"model-viewer not vendored ({e}); the studio shows no 3D viewer until this is run again")
        sys.exit(0)
