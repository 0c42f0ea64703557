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

from collections.abc import Callable
from typing import Any

from django.db import migrations

OLD_LABEL = "pacsportal"
NEW_LABEL = "accounts"


def relabel(old: str, new: str, models: tuple[str, ...] | None = None) -> Callable[[Any, Any], None]:
    """Move the content types of label `old` (those of `models` only, if given) to label `new`."""

    def move(apps: Any, schema_editor: Any) -> None:
        db = schema_editor.connection.alias
        ContentType = apps.get_model("contenttypes", "ContentType")
        moving = ContentType.objects.using(db).filter(app_label=old)
        if models is not None:
            moving = moving.filter(model__in=models)
        for content_type in moving:
            twin = ContentType.objects.using(db).filter(app_label=new, model=content_type.model).first()
            if twin is not None:
                merge(apps, db, twin, content_type)
            content_type.app_label = new
            content_type.save(using=db, update_fields=["app_label"])

    return move


def merge(apps: Any, db: str, twin: Any, content_type: Any) -> None:
    """Whoever holds a permission of `twin` gets the same one of `content_type`; `twin` goes.

    A twin under the new label exists when post_migrate ran in between (after a
    backwards migration), or a process of the new code asked for the content type
    before `migrate` ran: the old one's permissions are the ones the roles hold.
    """
    Permission = apps.get_model("auth", "Permission")
    for permission in Permission.objects.using(db).filter(content_type=twin):
        kept, _ = Permission.objects.using(db).get_or_create(
            content_type=content_type, codename=permission.codename, defaults={"name": permission.name}
        )
        kept.group_set.add(*permission.group_set.all())
        kept.user_set.add(*permission.user_set.all())
    twin.delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_shares"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.AlterModelTable(name="accesstoken", table=None),
        migrations.AlterModelTable(name="share", table=None),
        migrations.RunPython(relabel(OLD_LABEL, NEW_LABEL), relabel(NEW_LABEL, OLD_LABEL)),
    ]
