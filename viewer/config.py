"""OHIF's app-config.js, generated for the user who asks: same-origin data source,
no demo server, and the portal around the viewer (viewer/portal.js)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.shortcuts import resolve_url
from django.urls import reverse

from accounts.permissions import has_perm
from core.roles import STORE_STUDIES
from shares.links import visit_of

VIEWER_ROUTES = ("viewer", "segmentation", "tmtv", "microscopy", "dynamic-volume", "usAnnotation", "basic")
PORTAL_SCRIPT = Path(__file__).with_name("portal.js")
# OHIF's onboarding tour (eleven steps over the first image) is the default
# customization `ohif.tours`; an empty list of tours shows none.
NO_TOURS: dict[str, Any] = {"ohif.tours": {"$set": []}}


@functools.lru_cache(maxsize=1)
def portal_script() -> str:
    return PORTAL_SCRIPT.read_text()


def portal(request: HttpRequest) -> dict[str, str]:
    """What viewer/portal.js needs to put the portal around OHIF for this user, or for a
    shared link's visitor: home is the shared study, and a refused /pacs request (the
    link revoked or expired) leads to the page that says so, not to the login page."""
    user = request.user
    visit = visit_of(request) if not user.is_authenticated else None
    if visit is not None and visit.share is not None:
        home = reverse("viewer-viewer") + "?" + urlencode({"StudyInstanceUIDs": visit.share.study_uid})
        login, name = reverse("share-ended"), "Visitor of a shared link"
    else:
        home, login = reverse("home"), resolve_url(settings.LOGIN_URL)
        # Signed in: the middleware turned away anonymous requests and ended visits.
        name = user.get_full_name() or user.get_username()  # type: ignore[union-attr]
    return {
        "siteName": settings.PORTAL_SITE_NAME,
        "homeUrl": home,
        "studyListUrl": reverse("viewer"),
        "viewerUrl": reverse("viewer-viewer"),
        "loginUrl": login,
        "logoutUrl": reverse("logout"),
        "userName": name,
        # The log-out form's token: the CSRF cookie is HttpOnly, so the page
        # cannot read it. app-config.js is same-origin only and never cached.
        "csrfToken": get_token(request),
    }


def app_config(request: HttpRequest) -> dict[str, Any]:
    return {
        "name": "pacsportal",
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "customizationService": {} if settings.VIEWER_SHOW_TOUR else NO_TOURS,
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"},
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 25},
        "showErrorDetails": "production",
        "defaultDataSourceName": "pacs",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "pacs",
                "configuration": {
                    "friendlyName": "Hospital archive",
                    "name": "pacs",
                    "qidoRoot": "/pacs/dicom-web",
                    "wadoRoot": "/pacs/dicom-web",
                    "wadoUriRoot": "/pacs/wado",
                    "qidoSupportsIncludeField": False,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "wadors",
                    "enableStudyLazyLoad": True,
                    "supportsFuzzyMatching": False,
                    "supportsWildcard": True,
                    "omitQuotationForMultipartRequest": True,
                    # Orthanc writes absolute BulkDataURIs; the proxy's Forwarded
                    # header makes them point at /pacs on this origin.
                    "bulkDataURI": {"enabled": True},
                    "dicomUploadEnabled": has_perm(request.user, STORE_STUDIES),
                },
            }
        ],
        "pacsportal": portal(request),
    }


def app_config_js(request: HttpRequest) -> str:
    """The config as data, then the functions that read it (OHIF calls them)."""
    return f"window.config = {json.dumps(app_config(request), indent=2)};\n\n{portal_script()}"
