"""AccessSummary, and the trigger that keeps it as audit rows arrive, filled from the rows
already there.

A trigger rather than Python: every insert counts, whoever makes it (the proxy's raw
INSERT, bulk_create, a restore), in the same transaction as the row. The lines match
`audit.views.accesses_of` over the rows: successful reads and writes naming a patient
or a study, grouped by patient, study, username, credential, address and action.
"""

from typing import Any

from django.db import migrations, models

# Written out in full for each database, one statement per string, to be read as it runs.
SQLITE = [
    """
INSERT INTO audit_accesssummary
    (patient_id, study_uid, username, credential, client_ip, action, first, last, rows)
SELECT patient_id, study_uid, username, credential, COALESCE(client_ip, ''), action,
       MIN(action_time), MAX(action_time), COUNT(*)
FROM audit_auditevent
WHERE success AND action IN ('query', 'retrieve', 'admin-read', 'store', 'admin-write')
      AND (patient_id <> '' OR study_uid <> '')
GROUP BY patient_id, study_uid, username, credential, COALESCE(client_ip, ''), action
""",
    """
CREATE TRIGGER audit_access_summary_count AFTER INSERT ON audit_auditevent
WHEN NEW.success AND NEW.action IN ('query', 'retrieve', 'admin-read', 'store', 'admin-write')
     AND (NEW.patient_id <> '' OR NEW.study_uid <> '')
BEGIN
    INSERT INTO audit_accesssummary
        (patient_id, study_uid, username, credential, client_ip, action, first, last, rows)
    VALUES (NEW.patient_id, NEW.study_uid, NEW.username, NEW.credential, COALESCE(NEW.client_ip, ''),
            NEW.action, NEW.action_time, NEW.action_time, 1)
    ON CONFLICT (patient_id, study_uid, username, credential, client_ip, action) DO UPDATE SET
        first = MIN(first, excluded.first), last = MAX(last, excluded.last), rows = rows + 1;
END
""",
]

# The address is inet in PostgreSQL: host() is its text without a mask.
POSTGRESQL = [
    # No audit row may be written between the count and the trigger, or it would never
    # be counted: writers wait here until the migration's transaction ends.
    "LOCK TABLE audit_auditevent IN SHARE ROW EXCLUSIVE MODE",
    """
INSERT INTO audit_accesssummary
    (patient_id, study_uid, username, credential, client_ip, action, first, last, rows)
SELECT patient_id, study_uid, username, credential, COALESCE(host(client_ip), ''), action,
       MIN(action_time), MAX(action_time), COUNT(*)
FROM audit_auditevent
WHERE success AND action IN ('query', 'retrieve', 'admin-read', 'store', 'admin-write')
      AND (patient_id <> '' OR study_uid <> '')
GROUP BY patient_id, study_uid, username, credential, COALESCE(host(client_ip), ''), action
""",
    """
CREATE FUNCTION audit_access_summary_count() RETURNS trigger AS $$
BEGIN
    INSERT INTO audit_accesssummary
        (patient_id, study_uid, username, credential, client_ip, action, first, last, rows)
    VALUES (NEW.patient_id, NEW.study_uid, NEW.username, NEW.credential, COALESCE(host(NEW.client_ip), ''),
            NEW.action, NEW.action_time, NEW.action_time, 1)
    ON CONFLICT (patient_id, study_uid, username, credential, client_ip, action) DO UPDATE SET
        first = LEAST(audit_accesssummary.first, EXCLUDED.first),
        last = GREATEST(audit_accesssummary.last, EXCLUDED.last),
        rows = audit_accesssummary.rows + 1;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
""",
    """
CREATE TRIGGER audit_access_summary_count AFTER INSERT ON audit_auditevent
FOR EACH ROW WHEN (NEW.success AND NEW.action IN ('query', 'retrieve', 'admin-read', 'store', 'admin-write')
                   AND (NEW.patient_id <> '' OR NEW.study_uid <> ''))
EXECUTE FUNCTION audit_access_summary_count()
""",
    # As the audit rows themselves (0002): lines change only through the trigger above
    # (nested in an insert) or in prune_audit's transaction.
    """
CREATE FUNCTION audit_access_summary_guard() RETURNS trigger AS $$
BEGIN
    IF pg_trigger_depth() > 1 OR current_setting('pacsportal.audit_prune', true) = 'on' THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'the audit summary changes only as audit rows arrive or are pruned: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql
""",
    """
CREATE TRIGGER audit_access_summary_guard BEFORE UPDATE OR DELETE ON audit_accesssummary
FOR EACH ROW EXECUTE FUNCTION audit_access_summary_guard()
""",
    """
CREATE TRIGGER audit_access_summary_no_truncate BEFORE TRUNCATE ON audit_accesssummary
FOR EACH STATEMENT EXECUTE FUNCTION audit_access_summary_guard()
""",
]

INSTALL = {"sqlite": SQLITE, "postgresql": POSTGRESQL}
REMOVE = {
    "sqlite": ["DROP TRIGGER IF EXISTS audit_access_summary_count"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS audit_access_summary_no_truncate ON audit_accesssummary",
        "DROP TRIGGER IF EXISTS audit_access_summary_guard ON audit_accesssummary",
        "DROP FUNCTION IF EXISTS audit_access_summary_guard()",
        "DROP TRIGGER IF EXISTS audit_access_summary_count ON audit_auditevent",
        "DROP FUNCTION IF EXISTS audit_access_summary_count()",
    ],
}


def install(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in INSTALL:
        raise RuntimeError(f"the audit summary's trigger is written for SQLite and PostgreSQL, not {vendor}")
    for statement in INSTALL[vendor]:
        schema_editor.execute(statement, params=None)


def remove(apps: Any, schema_editor: Any) -> None:
    for statement in REMOVE[schema_editor.connection.vendor]:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0005_shares"),
    ]

    operations = [
        migrations.CreateModel(
            name="AccessSummary",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("patient_id", models.CharField(editable=False, max_length=64, verbose_name="Patient ID")),
                (
                    "study_uid",
                    models.CharField(editable=False, max_length=64, verbose_name="Study Instance UID"),
                ),
                ("username", models.CharField(editable=False, max_length=150)),
                ("credential", models.CharField(editable=False, max_length=64)),
                ("client_ip", models.CharField(editable=False, max_length=45, verbose_name="client address")),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("login", "login"),
                            ("login-failed", "failed login"),
                            ("logout", "logout"),
                            ("lockout", "lockout"),
                            ("query", "query (QIDO-RS)"),
                            ("retrieve", "retrieve (WADO)"),
                            ("store", "store (STOW-RS)"),
                            ("admin-read", "PACS admin read"),
                            ("admin-write", "PACS admin write"),
                            ("audit-view", "audit log viewed"),
                            ("audit-export", "audit log exported"),
                            ("audit-prune", "audit log pruned"),
                            ("token-created", "access token created"),
                            ("token-revoked", "access token revoked"),
                            ("share-created", "shared link created"),
                            ("share-opened", "shared link opened"),
                            ("share-revoked", "shared link revoked"),
                        ],
                        editable=False,
                        max_length=20,
                    ),
                ),
                ("first", models.DateTimeField(editable=False)),
                ("last", models.DateTimeField(editable=False)),
                ("rows", models.PositiveBigIntegerField(editable=False)),
            ],
            options={
                "indexes": [
                    models.Index(fields=["study_uid", "-last"], name="audit_access_study_last"),
                    models.Index(
                        fields=["username", "patient_id", "study_uid", "-last"], name="audit_access_username"
                    ),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("patient_id", "study_uid", "username", "credential", "client_ip", "action"),
                        name="audit_access_summary_key",
                    )
                ],
            },
        ),
        migrations.RunPython(install, remove),
    ]
