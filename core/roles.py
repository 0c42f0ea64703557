"""Permission names, as Django spells them: the roles (Django groups) hold these.

The app label stays `pacsportal` (see AccountsConfig) so that stored
permissions, groups and content types did not move when the code did.
"""

from __future__ import annotations

READ_STUDIES = "pacsportal.read_studies"
STORE_STUDIES = "pacsportal.store_studies"
ADMINISTER_PACS = "pacsportal.administer_pacs"
READ_AUDIT = "pacsportal.read_audit"
SHARE_STUDIES = "pacsportal.share_studies"
