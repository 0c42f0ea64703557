from __future__ import annotations

from django.db import models


class PortalPermission(models.Model):
    """Anchor for the portal's custom permissions; holds no rows.

    Roles are Django groups (created by migration 0002) holding these
    permissions, so a site can also grant them to single users in Django admin.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("read_studies", "Read studies through /pacs (QIDO-RS, WADO-RS, WADO-URI)"),
            ("store_studies", "Store studies through /pacs (STOW-RS)"),
            ("administer_pacs", "Use Orthanc Explorer and REST API through /pacs-admin"),
            ("read_audit", "Read and export the audit log"),
        ]

    def __str__(self) -> str:
        return "portal permission"
