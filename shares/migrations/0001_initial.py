"""The Share model moves here from the accounts app, with its table and its content type.

The model's state is created here and deleted from accounts (accounts.0006)
without touching the table; the table is then renamed, and its content type
moved in place, so the permissions on it stay where they were given.
"""

from __future__ import annotations

import importlib

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

# The one way content types change label here (it keeps the roles' permissions held).
relabel = importlib.import_module("accounts.migrations.0005_relabel").relabel


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0005_relabel"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Share",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "study_uid",
                            models.CharField(
                                editable=False, max_length=64, verbose_name="Study Instance UID"
                            ),
                        ),
                        (
                            "digest",
                            models.CharField(
                                editable=False,
                                max_length=64,
                                unique=True,
                                verbose_name="SHA-256 of the secret",
                            ),
                        ),
                        (
                            "note",
                            models.CharField(
                                blank=True, editable=False, help_text="who it is for", max_length=200
                            ),
                        ),
                        (
                            "allow_download",
                            models.BooleanField(
                                default=False,
                                editable=False,
                                help_text="whole studies, series and instances, not only the viewer",
                            ),
                        ),
                        (
                            "created_at",
                            models.DateTimeField(
                                default=django.utils.timezone.now, editable=False, verbose_name="created"
                            ),
                        ),
                        ("expires_at", models.DateTimeField(editable=False, verbose_name="expires")),
                        (
                            "revoked_at",
                            models.DateTimeField(
                                blank=True, editable=False, null=True, verbose_name="revoked"
                            ),
                        ),
                        (
                            "owner",
                            models.ForeignKey(
                                editable=False,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="shares",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        # The table as accounts left it (accounts.0005_relabel); renamed below.
                        "db_table": "accounts_share",
                        "ordering": ["-created_at", "-id"],
                        "indexes": [
                            models.Index(fields=["owner", "-created_at"], name="share_owner_created")
                        ],
                    },
                ),
            ]
        ),
        migrations.AlterModelTable(name="share", table=None),
        migrations.RunPython(
            relabel("accounts", "shares", ("share",)), relabel("shares", "accounts", ("share",))
        ),
    ]
