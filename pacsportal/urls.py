from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts.forms import LoginForm
from accounts.middleware import share_visitors_allowed
from pacsportal import views
from proxy import nginx as proxy_nginx
from proxy import views as proxy_views

urlpatterns = [
    path("portal/", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
    # A shared link's visitor may end the visit too.
    path(
        "accounts/logout/",
        share_visitors_allowed(auth_views.LogoutView.as_view(), decides_itself=True),
        name="logout",
    ),
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/tokens/", include("accounts.urls")),
    path("", include("accounts.share_urls")),
    path("admin/", admin.site.urls),
    path("audit/", include("audit.urls")),
    # The decision confines a shared link's visitor to the shared study.
    path("pacs/<path:path>", share_visitors_allowed(proxy_views.pacs, decides_itself=True), name="pacs"),
    path(
        "_front/decide/<str:mount>",
        share_visitors_allowed(proxy_nginx.front_decision, decides_itself=True),
        name="front-decision",
    ),
    # Reached, so that the decision refuses a visitor and records it.
    path(
        "pacs-admin/", share_visitors_allowed(proxy_views.pacs_admin, decides_itself=True), name="pacs-admin"
    ),
    path(
        "pacs-admin/<path:path>",
        share_visitors_allowed(proxy_views.pacs_admin, decides_itself=True),
        name="pacs-admin-path",
    ),
    path("", include("viewer.urls")),
]

handler500 = "pacsportal.views.server_error"
