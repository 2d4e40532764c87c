"""The production stack as ``make up`` runs it (Procfile under honcho: gunicorn, a Celery
worker, Celery beat), against the test database and Redis: the admin is styled (its CSS
served by WhiteNoise from collectstatic's hashed files), /api/docs/ gets its JavaScript, a
curator added with ``curator_add`` can use the review desk, beat's schedule reaches the worker,
and Ctrl-C stops all three.
"""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from llm.services.curators import CURATOR_PERMISSIONS, curator_add
from tests.stack import ROOT, Stack, stack_start

PASSWORD = "a curator's long password"


class Browser:
    """Cookies and CSRF like a browser, with the standard library."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        url = path if path.startswith("http") else self.base + path
        with self.opener.open(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, str, bytes]:
        token = next(c.value for c in self.jar if c.name == "csrftoken")
        request = urllib.request.Request(
            self.base + path,
            data=urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token}).encode(),
            headers={"Referer": self.base + path},
        )
        with self.opener.open(request, timeout=30) as response:
            return response.status, response.url, response.read()


def _asset(html: str, pattern: str) -> str:
    found = re.search(pattern, html)
    assert found, f"{pattern!r} not in the page"
    return found.group(1)


@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
def test_make_up_stack_serves_a_styled_admin_api_docs_and_runs_beat_tasks(
    tmp_path: Path,
) -> None:
    curator_add(username="curator", create=True, password=PASSWORD)
    with stack_start(tmp_path) as stack:
        _check_web(stack)
        # beat sends the reconciler (due at once: never run) and the worker runs it
        stack.wait_for_log(r"beat\.1 +\| .*Sending due task .*\(llm\.reconcile\)")
        stack.wait_for_log(r"worker\.1 +\| .*Task llm\.reconcile\[[^\]]+\] succeeded")
        code = stack.stop()
    log = stack.log()
    for name in ("web.1", "worker.1", "beat.1"):
        assert re.search(rf"system +\| {re.escape(name)} stopped", log), log[-3000:]
    assert code == 130  # honcho's exit code for SIGINT (Ctrl-C), after stopping the three


def _check_web(stack: Stack) -> None:
    browser = Browser(stack.url)
    status, _, body = browser.get("/admin/login/?next=/admin/")
    assert status == 200
    status, url, body = browser.post(
        "/admin/login/?next=/admin/",
        {"username": "curator", "password": PASSWORD, "next": "/admin/"},
    )
    html = body.decode()
    assert url.endswith("/admin/") and "Site administration" in html, html[:2000]
    assert "have permission to view or edit anything" not in html
    for model in (
        "llm/clustersummary",
        "llm/generationjob",
        "llm/summarytask",
        "llm/llmcall",
        "clustering/cluster",
        "clustering/clusteringrun",
        "clustering/dataset",
    ):
        assert f'href="/admin/{model}/"' in html, model
    for hidden in ("llm/providerbatch", "auth/user", "django_celery_beat/periodictask"):
        assert f'href="/admin/{hidden}/"' not in html, hidden

    status, _, body = browser.get("/admin/llm/clustersummary/")
    html = body.decode()
    assert status == 200 and 'id="changelist"' in html
    for pattern in (
        r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"',  # hashed by collectstatic
        r'href="(/static/llm/review\.[0-9a-f]{12}\.css)"',  # the review desk's own CSS
    ):
        status, headers, css = browser.get(_asset(html, pattern))
        assert status == 200 and headers["Content-Type"].startswith("text/css"), headers
        assert "immutable" in headers.get("Cache-Control", "")
        assert len(css) > 200

    status, _, body = browser.get("/api/docs/")
    html = body.decode()
    assert status == 200
    sidecar = '/static/drf_spectacular_sidecar/[^"]+'
    script = _asset(html, rf'src="({sidecar}/swagger-ui-bundle\.[^"]+\.js)"')
    status, headers, js = browser.get(script)
    assert status == 200 and "javascript" in headers["Content-Type"], headers
    assert len(js) > 100_000
    status, headers, _ = browser.get(_asset(html, rf'href="({sidecar}/swagger-ui\.[^"]+\.css)"'))
    assert status == 200 and headers["Content-Type"].startswith("text/css")


def test_readme_production_steps_are_what_make_up_runs() -> None:
    """Every command of README's Production block is a step of scripts/up or the Procfile."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\nProduction", 1)[1].split("\n\n", 3)
    block = next(part for part in section if part.startswith("    "))
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    script = (ROOT / "scripts" / "up").read_text(encoding="utf-8")
    procfile = (ROOT / "Procfile").read_text(encoding="utf-8")
    steps = [line.strip() for line in script.splitlines() if line and not line.startswith("#")]
    steps += [line.split(":", 1)[1].strip() for line in procfile.splitlines() if line.strip()]
    assert commands, block
    for command in commands:
        assert any(command in step or step.endswith(command) for step in steps), command
    for process in ("gunicorn config.wsgi", "celery -A config worker", "celery -A config beat"):
        assert any(process in c for c in commands), process


@pytest.mark.stack
def test_scripts_up_from_a_fresh_database_then_ctrl_c(tmp_path: Path) -> None:
    """`make up`'s script itself: services checked, a database that does not exist yet created,
    migrated (the curators group and beat schedules registered), static files collected, the
    three processes up; Ctrl-C stops them. The database is dropped afterwards."""
    import os
    import signal
    import subprocess
    import time
    import uuid

    import psycopg
    from django.conf import settings

    from tests.stack import VENV_BIN, _group_alive, http_status
    from tests.support.net import free_port

    db = settings.DATABASES["default"]
    assert "postgresql" in db["ENGINE"], "needs DATABASE_URL on PostgreSQL"
    name = f"clustersum_up_{uuid.uuid4().hex[:8]}"
    server = {
        key: str(db[field])
        for key, field in (("host", "HOST"), ("port", "PORT"), ("user", "USER"))
        if db.get(field)
    }
    if db.get("PASSWORD"):
        server["password"] = str(db["PASSWORD"])
    auth = server.get("user", "")
    if "password" in server:
        auth += ":" + server["password"]
    url = f"postgres://{auth}@{server.get('host', '127.0.0.1')}:{server.get('port', '5432')}/{name}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=url,
        REDIS_URL=str(settings.REDIS_URL),
        PORT=str(port),
        STATIC_ROOT=str(tmp_path / "static"),
        VENV=str(VENV_BIN.parent),
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", "scripts/up"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        end = time.monotonic() + 400
        while http_status(f"http://127.0.0.1:{port}/admin/login/") != 200:
            assert process.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < end, log_path.read_text()[-4000:]
            time.sleep(1)
        text = log_path.read_text()
        assert f"created database {name}" in text
        assert "Applying llm.0001_initial... OK" in text
        with psycopg.connect(dbname=name, autocommit=True, **server) as conn:  # type: ignore[arg-type]
            perms = conn.execute(
                "SELECT count(*) FROM auth_group g JOIN auth_group_permissions p "
                "ON p.group_id = g.id WHERE g.name = 'curators'"
            ).fetchone()
            assert perms is not None and perms[0] == len(CURATOR_PERMISSIONS)
        process.send_signal(signal.SIGINT)  # Ctrl-C: bash passes it on to honcho (exec)
        assert process.wait(timeout=90) == 130
        assert not _group_alive(process.pid), log_path.read_text()[-3000:]
    finally:
        if process.poll() is None or _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
