"""The study admin's console pages in a browser, at a laptop's size: invitations listed
at once after creating, a link copied, one revoked after its confirmation; a draft
opened and then closed through the confirmations the lifecycle page asks for."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from cases.models import Invitation, Study
from tests.factories import build_study

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_invitations_appear_at_once_copy_and_revoke(admin_page, live_server):
    page = admin_page
    study = build_study(1)
    page.goto(f"{live_server.url}/admin/cases/study/{study.pk}/invitations/")
    page.fill("input[name=count]", "3")
    page.fill("input[name=label]", "ward 5")
    with page.expect_navigation():
        page.get_by_role("button", name="Create invitations").click()
    assert "3 invitation(s) created" in page.locator("ul.messagelist").inner_text()
    rows = page.locator("tr[data-testid=invitation]")
    assert rows.count() == 3 and page.locator("tr.new").count() == 3
    assert page.get_by_test_id("download-new").is_visible()
    # Copy puts the row's link on the clipboard
    first = rows.first
    link = first.locator("input.link").input_value()
    first.get_by_role("button", name="Copy").click()
    page.wait_for_function("document.querySelector('button.copy').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == link
    # Revoke asks first; the row then says revoked and offers nothing
    token = link.rstrip("/").rsplit("/", 1)[1]
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        first.get_by_role("button", name="Revoke").click()
    assert "1 invitation(s) revoked" in page.locator("ul.messagelist").inner_text()
    assert Invitation.objects.get(token=token).revoked
    assert page.locator("td.status-revoked").count() == 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.INVITATIONS_REVOKE).count() == 1


def test_a_draft_opened_and_closed_through_its_confirmations(admin_page, live_server):
    page = admin_page
    study = build_study(2, status=Study.Status.DRAFT)
    page.goto(f"{live_server.url}/admin/cases/study/{study.pk}/overview/")
    page.get_by_role("link", name="Open the study…").click()
    page.wait_for_url(f"**/admin/cases/study/{study.pk}/lifecycle/")
    with page.expect_navigation():
        page.get_by_test_id("confirm-open").click()
    assert "is open" in page.locator("ul.messagelist").inner_text()
    assert page.get_by_test_id("lifecycle").inner_text().startswith("Status: Open")
    page.get_by_role("link", name="Close or set a closing date…").click()
    page.wait_for_url(f"**/admin/cases/study/{study.pk}/lifecycle/")
    with page.expect_navigation():
        page.get_by_test_id("confirm-close").click()
    assert "is closed" in page.locator("ul.messagelist").inner_text()
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED
