from __future__ import annotations

from django.urls import path

from shares import views

urlpatterns = [
    path("shares/", views.share_list, name="shares"),
    path("shares/new/", views.share_new, name="share-new"),
    path("shares/<int:pk>/revoke/", views.share_revoke, name="share-revoke"),
    path("share/", views.share_landing, name="share"),
    path("share/open/", views.share_open, name="share-open"),
    path("share/ended/", views.share_ended, name="share-ended"),
]
