"""The accounts app's label becomes `accounts` (it was `pacsportal`, now the project's).

A database made under the old label keeps working:
- its django_migrations rows name ("pacsportal", "000x"). Django reads that table
  and checks the history's consistency before any migration runs, so no migration
  can rename those rows. Instead 0001-0004 each declare `replaces` the row of
  their old name, the squashing mechanism: the loader counts a migration applied
  when everything it replaces is, and `migrate` then records it under its new
  name (MigrationExecutor.check_replacements). The old rows stay, and are needed
  as long as `replaces` names them; the project app (label `pacsportal` now) must
  therefore never have migrations of those four names.
- its tables are renamed here (0003 and 0004 give their first names, so a new
  database takes the same path);
- its content types move to the new label in place, so the permissions on them,
  and the groups and users holding those, stay as they are: the roles' permissions
  are spelled `accounts.<codename>` from now on.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

OLD_LABEL = "pacsportal"
NEW_LABEL = "accounts"


def relabel(old: str, new: str) -> Any:
    def move(apps: Any, schema_editor: Any) -> None:
        ContentType = apps.get_model("contenttypes", "ContentType")
        ContentType.objects.using(schema_editor.connection.alias).filter(app_label=old).update(app_label=new)

    return move


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_shares"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelTable(name="accesstoken", table=None),
        migrations.AlterModelTable(name="share", table=None),
        migrations.RunPython(relabel(OLD_LABEL, NEW_LABEL), relabel(NEW_LABEL, OLD_LABEL)),
    ]
