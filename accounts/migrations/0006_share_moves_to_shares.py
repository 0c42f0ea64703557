"""The Share model now lives in the shares app (shares.0001_initial took its table)."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_relabel"),
        ("shares", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="Share")]),
    ]
