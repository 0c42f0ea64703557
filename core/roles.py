"""Permission names, as Django spells them: the roles (Django groups) hold these."""

from __future__ import annotations

READ_STUDIES = "accounts.read_studies"
STORE_STUDIES = "accounts.store_studies"
ADMINISTER_PACS = "accounts.administer_pacs"
READ_AUDIT = "accounts.read_audit"
SHARE_STUDIES = "accounts.share_studies"
