from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter

from accounts.forms import LoginForm
from pacsportal import views
from proxy import nginx as proxy_nginx
from proxy import views as proxy_views
from shares.middleware import decided_for_visitors


class Everything:
    """What follows a mount, as nginx hands it on: Django's `path` converter stops at a line
    break (its `.` does not match one), and the two doors must route the same paths."""

    regex = "(?s:.+)"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(Everything, "everything")

urlpatterns = [
    path("portal/", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
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
    path("", include("shares.urls")),
    path("admin/", admin.site.urls),
    path("audit/", include("audit.urls")),
    # A shared link's visitor reaches these too: the decision confines them to the
    # shared study, and refuses (and records) /pacs-admin; they may end the visit.
    *decided_for_visitors(
        [
            path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
            path("pacs/", proxy_views.pacs, name="pacs-root"),
            path("pacs/<everything:path>", proxy_views.pacs, name="pacs"),
            path("_front/decide/<str:mount>", proxy_nginx.front_decision, name="front-decision"),
            path("pacs-admin/", proxy_views.pacs_admin, name="pacs-admin"),
            path("pacs-admin/<everything:path>", proxy_views.pacs_admin, name="pacs-admin-path"),
        ]
    ),
    path("", include("viewer.urls")),
]

handler500 = "pacsportal.views.server_error"
