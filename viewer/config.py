"""OHIF's app-config.js, generated for the user who asks: same-origin data source, no demo server."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from accounts.permissions import has_perm
from accounts.roles import STORE_STUDIES

VIEWER_ROUTES = ("viewer", "segmentation", "tmtv", "microscopy", "dynamic-volume", "usAnnotation", "basic")


def app_config(user: AbstractBaseUser | AnonymousUser) -> dict[str, Any]:
    return {
        "name": "pacsportal",
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "customizationService": {},
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
                    "dicomUploadEnabled": has_perm(user, STORE_STUDIES),
                },
            }
        ],
    }


def app_config_js(user: AbstractBaseUser | AnonymousUser) -> str:
    return f"window.config = {json.dumps(app_config(user), indent=2)};\n"
