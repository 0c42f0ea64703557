"""Deny by default: walk every URL pattern and check anonymous access is refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db
# Both logins go through django-axes; a shared link's pages say what a link needs, and hold no data.
PUBLIC = {"accounts/login/", "admin/login/", "healthz", "share/", "share/ended/"}
CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
SAMPLES = {
    "int": "1",
    "path": "dicom-web/studies",
    "everything": "dicom-web/studies",
    "str": "x",
    "slug": "x",
    "uuid": "00000000-0000-0000-0000-000000000000",
}


def sample_paths(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    for pattern in patterns:
        route = str(pattern.pattern)
        if route.startswith("^"):
            continue  # regex routes in django.contrib.admin (catch-alls, redirects)
        route = CONVERTER.sub(lambda match: SAMPLES.get(match.group(1) or "str", "x"), route)
        if isinstance(pattern, URLResolver):
            yield from sample_paths(pattern.url_patterns, prefix + route)
        else:
            yield prefix + route


def test_it_refuses_anonymous_users_everywhere_but_login_and_health(client: Client) -> None:
    paths = sorted(set(sample_paths(get_resolver().url_patterns)))
    assert len(paths) > 20
    for path in paths:
        response = client.get("/" + path)
        if path in PUBLIC:
            assert response.status_code in (200, 503), path  # healthz: no Orthanc in this test
        elif path.startswith("pacs"):
            assert response.status_code in (401, 302), path
        elif path.startswith("_front/"):  # nginx's decision endpoint: no data, ever
            assert response.status_code in (401, 403, 404), path
            assert response.content == b"", path
        else:
            assert response.status_code in (302, 404, 405), path
            if response.status_code == 302:
                assert "login" in response["Location"], path
