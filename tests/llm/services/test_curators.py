"""The curators group and ``curator_add``: exactly the review desk's permissions, created by
``migrate`` (post_migrate) and by the command, idempotently; a member who is not a superuser
can review; bad input exits 2 with one line and writes nothing."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from llm.models import ClusterSummary, ValidationEvent
from llm.services.curators import CURATOR_PERMISSIONS, CURATORS_GROUP, curators_group_ensure
from tests.support.review_data import PASSWORD, ReviewData, review_data_build

pytestmark = pytest.mark.django_db


def _perms(group: Group) -> set[str]:
    return {
        f"{app}.{codename}"
        for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    }


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("curator_add", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_migrate_created_the_group_with_exactly_the_desk_permissions() -> None:
    # the test database was built by `migrate`: its post_migrate handler made the group
    group = Group.objects.get(name=CURATORS_GROUP)
    assert _perms(group) == set(CURATOR_PERMISSIONS)
    assert not any(p.split(".")[1].startswith("delete_") for p in CURATOR_PERMISSIONS)
    assert "clustering.change_clusteringrun" not in CURATOR_PERMISSIONS


def test_ensuring_again_is_idempotent_and_resets_extra_permissions() -> None:
    group = Group.objects.get(name=CURATORS_GROUP)
    group.permissions.add(Permission.objects.get(codename="delete_clustersummary"))
    group.permissions.remove(Permission.objects.get(codename="change_clustersummary"))
    again = curators_group_ensure()
    assert again.pk == group.pk and Group.objects.filter(name=CURATORS_GROUP).count() == 1
    assert _perms(again) == set(CURATOR_PERMISSIONS)


def test_curator_add_creates_a_staff_member_with_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Group.objects.filter(name=CURATORS_GROUP).delete()  # the command creates it if missing
    monkeypatch.setenv("CURATOR_PASSWORD", PASSWORD)
    code, out, err = _run("alice", "--create", "--password-from-env", "CURATOR_PASSWORD")
    assert code == 0 and err == ""
    assert out.strip() == (
        "created alice: staff, member of 'curators' (password set from CURATOR_PASSWORD)"
    )
    alice = User.objects.get(username="alice")
    assert alice.is_staff and not alice.is_superuser and alice.check_password(PASSWORD)
    assert list(alice.groups.values_list("name", flat=True)) == [CURATORS_GROUP]
    assert _perms(Group.objects.get(name=CURATORS_GROUP)) == set(CURATOR_PERMISSIONS)
    # again: same state, one membership
    code, out, _ = _run("alice")
    assert code == 0 and out.startswith("updated alice: staff, member of 'curators'")
    assert alice.groups.count() == 1 and User.objects.filter(username="alice").count() == 1


def test_curator_add_makes_an_existing_user_a_curator_keeping_its_password() -> None:
    User.objects.create_user("bob", password=PASSWORD)
    code, out, _ = _run("bob")
    assert code == 0 and out.strip() == "updated bob: staff, member of 'curators'"
    bob = User.objects.get(username="bob")
    assert bob.is_staff and bob.check_password(PASSWORD)


def test_curator_add_without_password_says_how_to_set_one() -> None:
    code, out, _ = _run("carol", "--create")
    assert code == 0 and "no usable password" in out and "changepassword" in out
    assert not User.objects.get(username="carol").has_usable_password()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody"], "error: no user 'nobody'; pass --create to create it"),
        (["bad name!", "--create"], "error: 'bad name!' is not a valid username"),
        (
            ["dave", "--create", "--password-from-env", "NO_SUCH_VARIABLE_SET"],
            "error: --password-from-env: NO_SUCH_VARIABLE_SET is not set or empty",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(args: list[str], message: str) -> None:
    users, groups = User.objects.count(), Group.objects.count()
    code, out, err = _run(*args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.strip().startswith(message), err
    assert (User.objects.count(), Group.objects.count()) == (users, groups)


# --- a curator (group member, not a superuser) at the review desk ----------------------------


@pytest.fixture
def data() -> ReviewData:
    return review_data_build()


@pytest.fixture
def curator_client(client: Client) -> Client:
    assert _run("curator", "--create")[0] == 0
    client.force_login(User.objects.get(username="curator"))
    return client


DESK_PAGES = [
    "admin:index",
    "admin:llm_clustersummary_changelist",
    "admin:llm_generationjob_changelist",
    "admin:llm_summarytask_changelist",
    "admin:llm_llmcall_changelist",
    "admin:clustering_clusteringrun_changelist",
    "admin:clustering_cluster_changelist",
    "admin:clustering_dataset_changelist",
]


def test_a_curator_sees_every_page_of_the_desk_and_nothing_else(
    curator_client: Client, data: ReviewData
) -> None:
    for name in DESK_PAGES:
        assert curator_client.get(reverse(name)).status_code == 200, name
    summary = data.summaries["validated"]
    for name, pk in (
        ("admin:llm_clustersummary_change", summary.pk),
        ("admin:clustering_cluster_change", data.clusters[0].pk),
        ("admin:clustering_dataset_change", data.hpo.pk),
        ("admin:clustering_clusteringrun_change", data.run.pk),
    ):
        assert curator_client.get(reverse(name, args=[pk])).status_code == 200, name
    for name in (
        "admin:llm_providerbatch_changelist",
        "admin:auth_user_changelist",
        "admin:django_celery_beat_periodictask_changelist",
    ):
        assert curator_client.get(reverse(name)).status_code == 403, name
    page = curator_client.get(reverse("admin:llm_clustersummary_change", args=[summary.pk]))
    assert b"audit trail" in page.content
    assert (
        curator_client.get(
            reverse("admin:llm_clustersummary_delete", args=[summary.pk])
        ).status_code
        == 403
    )
    # run management is not a curator's: the runs list offers no rerun or cancel action
    runs = curator_client.get(reverse("admin:clustering_clusteringrun_changelist"))
    assert b'value="rerun' not in runs.content and b'value="cancel' not in runs.content


def test_a_curator_validates_and_rejects_with_an_audit_entry(
    curator_client: Client, data: ReviewData
) -> None:
    pending = data.summaries["pending"]
    response = curator_client.post(
        reverse("admin:llm_clustersummary_review", args=[pending.pk]),
        {"decision": "rejected", "note": "off topic"},
    )
    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.validation_status == "rejected" and pending.human_locked
    event = ValidationEvent.objects.filter(summary=pending).latest("id")
    assert event.user is not None and event.user.username == "curator"
    assert event.note == "off topic"
    response = curator_client.post(
        reverse("admin:llm_clustersummary_changelist"),
        {"action": "validate", "_selected_action": [str(pending.pk)], "index": "0"},
        follow=True,
    )
    assert b"1 summary set to validated by curator" in response.content
    assert ClusterSummary.objects.get(pk=pending.pk).validation_status == "validated"
