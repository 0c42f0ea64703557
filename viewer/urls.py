from __future__ import annotations

from django.urls import path

from viewer import views
from viewer.config import VIEWER_ROUTES

urlpatterns = [
    path("", views.index, name="viewer"),
    path("app-config.js", views.app_config, name="viewer-config"),
]
for route in VIEWER_ROUTES:
    urlpatterns += [
        path(route, views.index, name=f"viewer-{route}"),
        path(f"{route}/<path:route>", views.index),
    ]
