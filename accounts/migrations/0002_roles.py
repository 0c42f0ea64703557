"""Create the portal's roles as groups holding its custom permissions.

Permissions are normally created after all migrations (post_migrate), so this
migration creates the ones it needs itself; post_migrate then finds them.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

PERMISSIONS = {
    "read_studies": "Read studies through /pacs (QIDO-RS, WADO-RS, WADO-URI)",
    "store_studies": "Store studies through /pacs (STOW-RS)",
    "administer_pacs": "Use Orthanc Explorer and REST API through /pacs-admin",
    "read_audit": "Read and export the audit log",
}

ROLES = {
    "clinician": ["read_studies"],
    "uploader": ["read_studies", "store_studies"],
    "pacs-admin": ["read_studies", "store_studies", "administer_pacs"],
    "auditor": ["read_audit"],
}


def create_roles(apps: Any, schema_editor: Any) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="pacsportal", model="portalpermission")
    permissions = {}
    for codename, name in PERMISSIONS.items():
        permissions[codename], _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
    for group_name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.add(*(permissions[codename] for codename in codenames))


def remove_roles(apps: Any, schema_editor: Any) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    # Applied under the app's first label: see 0005_relabel.
    replaces = [("pacsportal", "0002_roles")]
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
