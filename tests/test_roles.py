from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

pytestmark = pytest.mark.django_db


def test_it_creates_the_four_roles_with_their_permissions() -> None:
    roles = {
        group.name: set(group.permissions.values_list("codename", flat=True))
        for group in Group.objects.prefetch_related("permissions")
    }
    assert roles == {
        "clinician": {"read_studies", "share_studies"},
        "uploader": {"read_studies", "store_studies", "share_studies"},
        "pacs-admin": {"read_studies", "store_studies", "administer_pacs", "share_studies"},
        "auditor": {"read_audit"},
    }
