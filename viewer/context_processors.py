from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, str]:
    """The site's name for the pages around the viewer, as the viewer's header shows it.

    Not `site_name`: Django's login view sets that to the host name.
    """
    return {"portal_site_name": settings.PORTAL_SITE_NAME}
