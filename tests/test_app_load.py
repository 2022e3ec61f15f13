"""Avatar studio under load on loopback: 20 concurrent uploads and status polls against a real server.

Nothing is lost (20 uploads, 20 queued jobs, every poll answered) and the queue keeps its order: jobs are
claimed in enqueue order, each exactly once, even by concurrent claimers. Bounded: 20 requests of each kind,
every request with a timeout; no worker runs, so nothing is preprocessed.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from waitress import create_server

from tests.app_fixtures import PASSWORD, VIDEOS, make_app

pytestmark = pytest.mark.integration  # the studio's web server and worker under load

N = 20
TIMEOUT_S = 120


@pytest.fixture()
def server(tmp_path):
    app = make_app(tmp_path, users=("alice",), QUEUE_PER_USER=N)  # one user's 20 uploads all wait
    srv = create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{srv.effective_port}"
    srv.close()
    thread.join(10)


def _session(base: str) -> requests.Session:
    s = requests.Session()
    token = re.search(
        r'name="csrf_token"[^>]*value="([^"]+)"', s.get(f"{base}/login", timeout=TIMEOUT_S).text
    )
    r = s.post(
        f"{base}/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token.group(1)},
        timeout=TIMEOUT_S,
        allow_redirects=False,
    )
    assert r.status_code == 302
    return s


def _upload(base: str, s: requests.Session, i: int) -> str:
    token = re.search(
        r'name="csrf_token"[^>]*value="([^"]+)"', s.get(f"{base}/upload", timeout=TIMEOUT_S).text
    )
    with open(VIDEOS / "single_face.mp4", "rb") as f:
        r = s.post(
            f"{base}/upload",
            files={"video": (f"clip{i}.mp4", f, "video/mp4")},
            data={"resolution": "64", "csrf_token": token.group(1)},
            timeout=TIMEOUT_S,
            allow_redirects=False,
        )
    assert r.status_code == 302, r.text[:500]
    page = s.get(base + r.headers["Location"], timeout=TIMEOUT_S).text
    return re.search(r'data-job="([0-9a-f-]{36})"', page).group(1)


def test_concurrent_uploads_and_polls(server):
    from src.app import jobs
    from src.app.extensions import db
    from src.app.models import Job, Upload

    app, base = server
    # log in one after the other (20 logins of one name at the same instant would trip the login throttle,
    # which counts an attempt before its password is checked), then upload all at once
    sessions = [_session(base) for _ in range(N)]
    with ThreadPoolExecutor(N) as pool:
        job_ids = list(pool.map(lambda i: _upload(base, sessions[i], i), range(N)))
    assert len(set(job_ids)) == N
    poller = _session(base)

    def poll(job_id: str) -> str:
        r = poller.get(f"{base}/api/jobs/{job_id}", timeout=TIMEOUT_S)
        assert r.status_code == 200
        return r.json()["status"]

    with ThreadPoolExecutor(N) as pool:
        statuses = list(pool.map(poll, job_ids))
    assert statuses == ["queued"] * N

    with app.app_context():
        assert db.session.query(Upload).count() == N and db.session.query(Job).count() == N
        expected = [j.id for j in db.session.scalars(db.select(Job).order_by(Job.seq)).all()]
        assert sorted(expected) == sorted(job_ids)

    claimed: list[tuple[float, str]] = []
    lock = threading.Lock()

    def claimer(k: int) -> None:
        with app.app_context():
            while (job := jobs.claim_next(f"w{k}")) is not None:
                with lock:
                    claimed.append((job.seq, job.id))

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S)
    ids = [c[1] for c in claimed]
    assert sorted(ids) == sorted(expected) and len(ids) == N  # each job claimed exactly once
    with app.app_context():  # requeue all: one claimer takes them strictly in enqueue order
        for j in db.session.scalars(db.select(Job)).all():
            j.status = "queued"
        db.session.commit()
        one = []
        while (job := jobs.claim_next("single")) is not None:
            one.append(job.id)
    assert one == expected
