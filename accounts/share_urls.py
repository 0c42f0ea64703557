from __future__ import annotations

from django.urls import path

from accounts import share_views

urlpatterns = [
    path("shares/", share_views.share_list, name="shares"),
    path("shares/new/", share_views.share_new, name="share-new"),
    path("shares/<int:pk>/revoke/", share_views.share_revoke, name="share-revoke"),
    path("share/", share_views.share_landing, name="share"),
    path("share/open/", share_views.share_open, name="share-open"),
    path("share/ended/", share_views.share_ended, name="share-ended"),
]
