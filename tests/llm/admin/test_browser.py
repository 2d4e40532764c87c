"""End to end in a real headless browser (Debian's chromium driven by Playwright): a curator
logs in to the admin, validates a pending summary with the bulk action, sees the badge change on
the run report and the event, with their name, in the summary's audit trail; and the review
list with its quick view under the production stack (gunicorn, WhiteNoise) for a member of the
curators group.

Needs ``/usr/bin/chromium`` (Debian packages ``chromium``) and the ``playwright`` Python package;
the test fails (it does not skip) when either is missing, because CI installs both.
Playwright's own browser download (``playwright install``) is not used.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from tests.support.review_data import PASSWORD, ReviewData, review_data_build, staff_user_create

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(os.environ.get("REPORT_SCREENSHOT", "/tmp/clustersum_run_report.png"))


@contextmanager
def browser_page() -> Iterator[Any]:
    """A Playwright page in headless Debian chromium; fails the test (not an error at setup,
    not a skip) with a clear message when chromium or playwright is missing."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        pytest.fail(
            f"chromium not found at {CHROMIUM}{f' (there is one at {found})' if found else ''}: "
            "install it with `apt-get install -y chromium chromium-driver` "
            "or set CHROMIUM_PATH",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install playwright", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        try:
            yield page
        finally:
            # ORM calls made while Playwright runs get their own connection (Django keeps
            # connections per context, and Playwright's greenlets switch contexts): close it,
            # or dropping the test database would find it still open
            connections.close_all()
            context.close()
            browser.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_curator_validates_a_summary_and_sees_it_on_the_report(
    live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Playwright's sync API runs an event loop in this thread; the ORM calls made here while it
    # runs are synchronous and safe (Django cannot tell)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    data = review_data_build()
    staff_user_create("curator")
    with browser_page() as page:
        _validate_and_check(page, live_server.url, data)


def _validate_and_check(page: Any, base: str, data: ReviewData) -> None:
    from llm.models import ClusterSummary, ValidationEvent

    summary = data.summaries["pending"]
    status_badge = f'.badge[data-summary-id="{summary.pk}"][data-role="status"]'

    # log in to the admin
    page.goto(f"{base}/admin/login/?next=/admin/llm/clustersummary/")
    page.fill("#id_username", "curator")
    page.fill("#id_password", PASSWORD)
    page.click('input[type="submit"]')
    page.wait_for_url("**/admin/llm/clustersummary/")

    # before: the report shows the summary pending
    page.goto(f"{base}/reports/runs/{data.run.pk}/")
    assert "status-pending" in (page.get_attribute(status_badge, "class") or "")
    assert page.locator("svg .cluster-mark").count() == len(data.clusters)

    # select the pending summary in the changelist and run the validate action
    page.goto(f"{base}/admin/llm/clustersummary/?validation_status__exact=pending")
    page.check(f'input[name="_selected_action"][value="{summary.pk}"]')
    page.select_option('select[name="action"]', "validate")
    page.click('button[name="index"]')
    page.wait_for_selector(".messagelist .success")
    assert "1 summary set to validated by curator" in page.inner_text(".messagelist")

    # the report now shows the validated badge (and the curator's lock)
    page.goto(f"{base}/reports/runs/{data.run.pk}/")
    badge = page.locator(status_badge)
    assert "status-validated" in (badge.get_attribute("class") or "")
    assert badge.inner_text().strip() == "validated"
    assert page.locator(f'.badge[data-summary-id="{summary.pk}"][data-role="lock"]').count() == 1
    assert page.locator(f"#summary-{summary.pk}-status").is_visible()
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # the summary's admin page shows the event with the acting user in the audit trail
    page.goto(f"{base}/admin/llm/clustersummary/{summary.pk}/change/")
    trail = page.locator("#events-group").inner_text()
    assert "curator" in trail and "human" in trail
    assert "pending" in trail and "validated" in trail

    summary = ClusterSummary.objects.get(pk=summary.pk)
    assert summary.validation_status == "validated" and summary.human_locked
    event = ValidationEvent.objects.filter(summary=summary).latest("id")
    assert event.user is not None and event.user.username == "curator"


TRIAGE_SCREENSHOT = Path(os.environ.get("TRIAGE_SCREENSHOT", "/tmp/clustersum_review_list.png"))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_curator_triages_from_the_list_with_quick_view_and_one_click_review(
    live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    data = review_data_build()
    staff_user_create("curator")
    with browser_page() as page:
        page.set_viewport_size({"width": 1440, "height": 900})
        _triage(page, live_server.url, data)


def _login(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/llm/clustersummary/")
    page.fill("#id_username", "curator")
    page.fill("#id_password", PASSWORD)
    page.click('input[type="submit"]')
    page.wait_for_url("**/admin/llm/clustersummary/")


def _triage(page: Any, base: str, data: ReviewData) -> None:
    _login(page, base)
    _triage_list(page, base, data)


def _triage_list(page: Any, base: str, data: ReviewData) -> None:
    from llm.models import ClusterSummary

    validated, pending = data.summaries["validated"], data.summaries["pending"]
    row = page.locator("#result_list tr", has=page.locator(f'input[value="{validated.pk}"]'))
    # each row tells its summary apart: first sentence, evidence, confidence, size, date
    assert "Validated clinical picture" in row.locator("a.excerpt").inner_text()
    assert "Focal-onset seizure" in row.locator(".evidence-term").first.inner_text()
    assert row.locator('[data-role="confidence"]').is_visible()
    assert "14 genes" in row.inner_text()
    # the table fits a 1440 px screen without horizontal scrolling
    overflow = page.evaluate(
        "(() => { const r = document.querySelector('#changelist .results');"
        " return r.scrollWidth - r.clientWidth; })()"
    )
    page.screenshot(path=str(TRIAGE_SCREENSHOT), full_page=True)
    assert overflow <= 0, overflow

    # the quick view opens in place with members, evidence, reasoning and audit trail
    quick = row.locator("details.quick-view")
    assert not quick.locator(".quick-view-body").is_visible()
    quick.locator("summary").click()
    body = quick.locator(".quick-view-body")
    assert body.is_visible()
    text = body.inner_text()
    assert "SCN1A" in text and "Focal-onset seizure" in text
    assert "Judge reasoning for cluster 1" in text and "validated" in text
    page.screenshot(path=str(TRIAGE_SCREENSHOT), full_page=True)
    assert TRIAGE_SCREENSHOT.stat().st_size > 20_000

    # one click validates the pending row, with the CSRF token of the list's form
    pending_row = page.locator("#result_list tr", has=page.locator(f'input[value="{pending.pk}"]'))
    pending_row.locator("button.review-validate").click()
    page.wait_for_selector(".messagelist .success")
    assert f"Summary {pending.pk} is now validated" in page.inner_text(".messagelist")
    assert page.url.startswith(f"{base}/admin/llm/clustersummary/")
    pending_row = page.locator("#result_list tr", has=page.locator(f'input[value="{pending.pk}"]'))
    assert pending_row.locator("button.review-validate").count() == 0
    assert "status-validated" in (
        pending_row.locator('[data-role="status"]').get_attribute("class") or ""
    )
    refreshed = ClusterSummary.objects.get(pk=pending.pk)
    assert refreshed.validation_status == "validated" and refreshed.human_locked
    assert refreshed.events.order_by("id").last().user.username == "curator"  # type: ignore[union-attr]


#: The admin's own CSS colours (django/contrib/admin/static/admin/css/base.css, light theme:
#: --header-bg and --button-bg are var(--secondary), #417690).
ADMIN_HEADER_BG = "rgb(65, 118, 144)"
ADMIN_BUTTON_BG = "rgb(65, 118, 144)"
LIST_COLUMNS = ("cluster_short", "excerpt", "evidence", "quality", "review_state", "review")


@pytest.mark.browser
@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
def test_curator_group_member_triages_under_gunicorn_with_whitenoise_static(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review list and quick view in headless chromium against the production stack
    (gunicorn, static files from collectstatic served by WhiteNoise), for a user added with
    ``curator_add``: staff in the curators group, not a superuser."""
    from django.contrib.auth.models import User

    from llm.services.curators import CURATORS_GROUP, curator_add
    from tests.stack import stack_start

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    data = review_data_build()
    curator_add(username="curator", create=True, password=PASSWORD)
    user = User.objects.get(username="curator")
    assert user.is_staff and not user.is_superuser and not user.user_permissions.exists()
    assert list(user.groups.values_list("name", flat=True)) == [CURATORS_GROUP]

    with stack_start(tmp_path) as stack, browser_page() as page:
        static: list[tuple[str, int, str]] = []
        page.on(
            "response",
            lambda r: (
                static.append((r.url, r.status, r.headers.get("content-type", "")))
                if "/static/" in r.url
                else None
            ),
        )
        page.set_viewport_size({"width": 1440, "height": 900})
        _login(page, stack.url)
        _styled_list_checks(page, data, tmp_path)
        _triage_list(page, stack.url, data)

    # every static file the pages asked for came from WhiteNoise: hashed names, all 200
    assert static, "no static file was requested"
    assert all(status == 200 for _, status, _ in static), static
    css = [url for url, _, kind in static if kind.startswith("text/css")]
    assert any("/static/admin/css/base." in url for url in css), css
    assert any("/static/llm/review." in url for url in css), css


def _styled_list_checks(page: Any, data: ReviewData, shots: Path) -> None:
    """Screenshots of the styled list: its columns, a pending row's Validate / Reject buttons
    and the quick view panel, each checked on the page."""
    # the admin's stylesheet is applied (an unstyled page has a transparent header)
    header_bg = page.evaluate("getComputedStyle(document.getElementById('header')).backgroundColor")
    assert header_bg == ADMIN_HEADER_BG, header_bg

    # the list columns, side by side in one header row that fits 1440 px
    header = page.locator("#result_list thead")
    boxes = [header.locator(f"th.column-{name}").bounding_box() for name in LIST_COLUMNS]
    assert all(box is not None and box["width"] > 20 for box in boxes), boxes
    lefts = [box["x"] for box in boxes if box is not None]
    assert lefts == sorted(lefts) and max(b["x"] + b["width"] for b in boxes if b) <= 1440
    assert header.screenshot(path=str(shots / "columns.png"))

    # a pending row has both one-click buttons, styled as admin buttons
    pending = data.summaries["pending"]
    row = page.locator("#result_list tr", has=page.locator(f'input[value="{pending.pk}"]'))
    for kind, label in (("validate", "Validate"), ("reject", "Reject")):
        button = row.locator(f"button.review-{kind}")
        assert button.is_visible() and button.inner_text().strip() == label
        colour = button.evaluate("b => getComputedStyle(b).backgroundColor")
        assert colour == ADMIN_BUTTON_BG, (kind, colour)
        # and llm/review.css (the desk's own stylesheet) is applied too
        assert button.evaluate("b => getComputedStyle(b).padding") == "3px 8px"
    assert row.screenshot(path=str(shots / "pending-row.png"))
    # rows that are not pending have none
    validated = data.summaries["validated"]
    other = page.locator("#result_list tr", has=page.locator(f'input[value="{validated.pk}"]'))
    assert other.locator("button.review-validate, button.review-reject").count() == 0

    # the quick view panel opens in place with the cluster's members and the audit trail
    quick = row.locator("details.quick-view")
    quick.locator("summary").click()
    body = quick.locator(".quick-view-body")
    assert body.is_visible()
    assert body.evaluate("b => getComputedStyle(b).position") == "absolute"  # a panel
    box = body.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 50, box
    assert body.screenshot(path=str(shots / "quick-view.png"))
    page.screenshot(path=str(shots / "list.png"), full_page=True)
    for name in ("columns", "pending-row", "quick-view", "list"):
        assert (shots / f"{name}.png").stat().st_size > 2_000, name
    quick.locator("summary").click()  # closed again for the triage steps
    assert not body.is_visible()
