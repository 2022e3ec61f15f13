"""Studio login under guessing: how many of 100 wrong passwords are checked, and known vs unknown timing.

Runs the real app (temporary folder, SQLite) through Flask's test client with the default throttle
settings: 100 wrong passwords against one user (counting the answers that checked a password, HTTP 200,
against the lockout's 429), then the median answer time of wrong passwords for a known and an unknown
user name (fresh names per attempt, so no lockout is involved). Writes
``bench/results/app_login_cpu.json`` and prints a table.

Usage: ``python -m bench.bench_app_login [--repeats 21]``
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from src.utils.io import write_json

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "a long password 1"


def _login(client, name: str, password: str) -> tuple[int, float]:
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)
    t = time.perf_counter()
    r = client.post("/login", data={"username": name, "password": password, "csrf_token": token})
    return r.status_code, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "app_login_cpu.json")
    args = ap.parse_args()
    from src.app import create_app
    from src.app.accounts import create_user

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATA_DIR": tmp})
        with app.app_context():
            create_user("victim", PASSWORD)
            for i in range(args.repeats):
                create_user(f"known{i}", PASSWORD)
        client = app.test_client()
        codes = [_login(client, "victim", f"guess {i}")[0] for i in range(100)]
        known, unknown = [], []
        for i in range(args.repeats):  # interleaved, so a change of machine load hits both alike
            known.append(_login(client, f"known{i}", "wrong password")[1])
            unknown.append(_login(client, f"nobody{i}", "wrong password")[1])
    result = {
        "date": date.today().isoformat(),
        "command": "python -m bench.bench_app_login",
        "wrong_logins": 100,
        "answered_before_lockout": codes.count(200),
        "locked_out": codes.count(429),
        "known_name_ms": round(1000 * statistics.median(known), 1),
        "unknown_name_ms": round(1000 * statistics.median(unknown), 1),
        "repeats": args.repeats,
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    result["difference_ms"] = round(abs(result["known_name_ms"] - result["unknown_name_ms"]), 1)
    write_json(args.out, result)
    print("| wrong logins | answered | locked out | known name ms | unknown name ms | difference ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| 100 | {result['answered_before_lockout']} | {result['locked_out']} | {result['known_name_ms']} "
        f"| {result['unknown_name_ms']} | {result['difference_ms']} |"
    )


if __name__ == "__main__":
    main()
