"""How the auditor's pages name a credential."""

from __future__ import annotations

from django import template

register = template.Library()
SHARE = "share:"


@register.filter
def via_share(credential: str) -> str:
    """'visitor of shared link #N' for an access through a share (credential share:N), else ''."""
    if credential.startswith(SHARE):
        return f"visitor of shared link #{credential.removeprefix(SHARE)}"
    return ""


@register.filter
def credential_label(credential: str) -> str:
    return via_share(credential) or credential
