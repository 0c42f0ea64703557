"""Settings for pacsportal, read from environment variables only.

With nothing set, the portal runs the embedded default: SQLite and a local
Orthanc under `var/`, with the secrets `make run` generated into
`var/local.env`. Every variable is documented in `.env.example`.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from pacsportal.env import env_bool, env_int, env_list, env_secret, env_str
from pacsportal.localenv import BASE_DIR, load_local_env, native_decision_cache, var_dir

VAR_DIR = var_dir()
load_local_env()

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_secret("SECRET_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
ORTHANC_USER = env_str("ORTHANC_USER")
ORTHANC_PASSWORD = env_secret("ORTHANC_PASSWORD")

if DEBUG:
    SECRET_KEY = SECRET_KEY or "insecure-debug-only-key"
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["localhost", "127.0.0.1"]
else:
    missing = [
        name
        for name, value in [
            ("SECRET_KEY", SECRET_KEY),
            ("ALLOWED_HOSTS", ALLOWED_HOSTS),
            ("ORTHANC_USER", ORTHANC_USER),
            ("ORTHANC_PASSWORD", ORTHANC_PASSWORD),
        ]
        if not value
    ]
    if missing:
        raise ImproperlyConfigured(
            f"missing required setting(s): {', '.join(missing)}. Set them in the environment "
            "(see .env.example), run `make run` once to generate var/local.env, or set DEBUG=true."
        )

# Orthanc: the archive behind the portal, reachable on loopback or a private network only.
ORTHANC_HTTP_PORT = env_int("ORTHANC_HTTP_PORT", 8042, minimum=1, maximum=65535)
ORTHANC_URL = env_str("ORTHANC_URL", f"http://127.0.0.1:{ORTHANC_HTTP_PORT}").rstrip("/")
ORTHANC_DICOM_PORT = env_int("ORTHANC_DICOM_PORT", 0, maximum=65535)
ORTHANC_DICOM_AET = env_str("ORTHANC_DICOM_AET", "PACSPORTAL")
ORTHANC_CONNECT_TIMEOUT = env_int("ORTHANC_CONNECT_TIMEOUT", 5, minimum=1)
ORTHANC_READ_TIMEOUT = env_int("ORTHANC_READ_TIMEOUT", 120, minimum=1)
ORTHANC_POOL_SIZE = env_int("ORTHANC_POOL_SIZE", 16, minimum=1)
# Seconds a worker trusts what Orthanc's index said about who owns a UID.
ORTHANC_LOOKUP_TTL = env_int("ORTHANC_LOOKUP_TTL", 30, minimum=1, maximum=600)
# Whose study each UID is, from Orthanc's change feed (orthanc/owners.py); off: every
# first read of a study asks Orthanc's index.
ORTHANC_FOLLOW_CHANGES = env_bool("ORTHANC_FOLLOW_CHANGES", True)
ORTHANC_DIR = VAR_DIR / "orthanc"
DEMO_CT_SLICES = env_int("DEMO_CT_SLICES", 300, minimum=1, maximum=2000)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "revproxy",
    "accounts",
    "shares",
    "orthanc",
    "pacsportal",
    "proxy",
    "audit",
    "viewer",
]
# The local stack (`manage.py serve` and `orthanc`): a checkout's, never the image's
# (.dockerignore leaves devstack/ out), so its commands exist only where it does.
if importlib.util.find_spec("devstack") is not None:
    INSTALLED_APPS.append("devstack")

MIDDLEWARE = [
    # First: a front decision's age counts from before the session and user are read.
    "proxy.middleware.DecisionClockMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "pacsportal.security.ContentSecurityPolicyMiddleware",
    "viewer.middleware.ViewerAssetsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "pacsportal.security.SessionIdleTimeoutMiddleware",
    # Django's LoginRequiredMiddleware, and a shared link's visitor confined to the viewer.
    "shares.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend and database sessions, loading their rows with plain SQL.
    "accounts.fastauth.ModelBackend",
]
SESSION_ENGINE = "accounts.fastauth"

ROOT_URLCONF = "pacsportal.urls"
WSGI_APPLICATION = "pacsportal.wsgi.application"

TEMPLATES: list[dict[str, Any]] = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'portal.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
# --- The database password apart from DATABASE_URL (compose: a secret file) ---
# Inside the URL it must be percent-encoded (a base64 password's `/` breaks the
# URL); given on its own it is used exactly as written.
if database_password := env_secret("DATABASE_PASSWORD"):
    if DATABASES["default"].get("PASSWORD"):
        raise ImproperlyConfigured("set the database password in DATABASE_URL or DATABASE_PASSWORD, not both")
    DATABASES["default"]["PASSWORD"] = database_password
# --- end of the database password block ---
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers and the one writer (audit rows on every /pacs request)
    # work side by side; IMMEDIATE avoids lock upgrades failing under load.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env_int("PASSWORD_MIN_LENGTH", 12, minimum=8)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Every /pacs and /pacs-admin request is audited. Not an environment variable on
# purpose: only the benchmark's own settings module turns it off, to measure it.
AUDIT_PROXY_REQUESTS = True
# The front: nginx is the only listener under `manage.py serve` (gunicorn moves
# to a unix socket behind it); "none" lets gunicorn face clients (development).
PORTAL_FRONT = env_str("PORTAL_FRONT", "nginx")
if PORTAL_FRONT not in ("nginx", "none"):
    raise ImproperlyConfigured(f"PORTAL_FRONT={PORTAL_FRONT!r}: use nginx or none")
# Whether nginx gzips reads for clients that accept it. Off, as Orthanc 1.12 is by
# default: on loopback OHIF loaded the demo CT faster plain than gzipped; on, frames
# cross the network smaller for some of nginx's CPU each, for slow links (Wi-Fi,
# remote sites). The figures: docs/performance-history.md, "Compression off by default".
NGINX_GZIP = env_bool("NGINX_GZIP", False)
# Seconds nginx may reuse a decision for the same credential and study (0: ask every time).
NGINX_DECISION_SECONDS = env_int("NGINX_DECISION_SECONDS", 5, minimum=0, maximum=5)
# Where nginx caches its decisions, so that the portal can empty it when access
# changes (accounts/revocation.py): set by `manage.py serve` for gunicorn and by
# compose for the web container.
NGINX_DECISION_CACHE_DIR = env_str("NGINX_DECISION_CACHE_DIR", "")
# The same for an API client's decision (HTTP Basic, a token): by default as long
# as a session's when the portal can empty the cache (a revoked token, a changed
# password or a deactivated owner is then refused on the next request), else 0:
# every request is decided. A share visitor's decision is never reused.
NGINX_API_DECISION_SECONDS = env_int(
    "NGINX_API_DECISION_SECONDS",
    NGINX_DECISION_SECONDS if NGINX_DECISION_CACHE_DIR else 0,
    minimum=0,
    maximum=5,
)
if NGINX_API_DECISION_SECONDS > NGINX_DECISION_SECONDS:
    raise ImproperlyConfigured(
        f"NGINX_API_DECISION_SECONDS={NGINX_API_DECISION_SECONDS} is more than "
        f"NGINX_DECISION_SECONDS={NGINX_DECISION_SECONDS}: API clients' decisions cannot outlive sessions'"
    )
if not NGINX_DECISION_CACHE_DIR and PORTAL_FRONT == "nginx":
    # A management command run beside `manage.py serve` (changepassword, a shell)
    # empties serve's cache too. Its API reuse above stays 0: it decides nothing.
    SERVES_DECISION_CACHE = native_decision_cache(VAR_DIR / "nginx")
    if SERVES_DECISION_CACHE.is_dir():
        NGINX_DECISION_CACHE_DIR = str(SERVES_DECISION_CACHE)
NGINX_MAX_BODY = env_str("NGINX_MAX_BODY", "4g")
if not re.fullmatch(r"[0-9]+[kmg]?", NGINX_MAX_BODY):
    raise ImproperlyConfigured(f"NGINX_MAX_BODY={NGINX_MAX_BODY!r}: a size such as 4g or 500m")
# Uploads stream to gunicorn as they arrive, each holding a thread while it lasts: nginx
# lets at most this many in at once (in all, and from one client address), so that pages,
# decisions and reads always have threads; the excess gets 429. At most half the threads
# by default (WEB_WORKERS x WEB_THREADS, read as gunicorn.conf.py reads them).
WEB_THREADS_IN_ALL = env_int("WEB_WORKERS", 2, minimum=1) * env_int("WEB_THREADS", 8, minimum=1)
NGINX_MAX_UPLOADS = env_int(
    "NGINX_MAX_UPLOADS", max(WEB_THREADS_IN_ALL // 2, 1), minimum=1, maximum=max(WEB_THREADS_IN_ALL - 2, 1)
)
NGINX_MAX_UPLOADS_PER_CLIENT = env_int(
    "NGINX_MAX_UPLOADS_PER_CLIENT", min(4, NGINX_MAX_UPLOADS), minimum=1, maximum=NGINX_MAX_UPLOADS
)
# The front's TLS (TLS_CERT_FILE): the HSTS max-age nginx sends on every answer over TLS,
# Mozilla's two years by default (its scope follows SECURE_HSTS_INCLUDE_SUBDOMAINS and
# SECURE_HSTS_PRELOAD; 0 tells browsers to forget it); OCSP stapling, with the CA
# certificates that verify the responder's answers when the chain lacks them; and a
# plain-HTTP port that only redirects to HTTPS (manage.py serve; 0: none).
TLS_HSTS_SECONDS = env_int("TLS_HSTS_SECONDS", 63072000)
TLS_OCSP_STAPLING = env_bool("TLS_OCSP_STAPLING", False)
TLS_TRUSTED_CA_FILE = env_str("TLS_TRUSTED_CA_FILE")
HTTP_REDIRECT_PORT = env_int("HTTP_REDIRECT_PORT", 0, maximum=65535)

# Reads are recorded once per user, credential, address, patient, study and
# action in each bucket of this many seconds (IHE ATNA's study-level access).
AUDIT_BUCKET_SECONDS = env_int("AUDIT_BUCKET_SECONDS", 300, minimum=1, maximum=3600)

# Login throttling: after AXES_FAILURE_LIMIT failures for one username from one
# address, that pair is locked out for AXES_COOLOFF_MINUTES.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "core.clientip.client_ip"

# --- API clients: access tokens and remembered Basic passwords (accounts/authentication.py) ---
# Days a new access token lasts unless its owner picks fewer, and the most they may pick.
ACCESS_TOKEN_DEFAULT_DAYS = env_int("ACCESS_TOKEN_DEFAULT_DAYS", 90, minimum=1)
ACCESS_TOKEN_MAX_DAYS = env_int("ACCESS_TOKEN_MAX_DAYS", 365, minimum=1)
if ACCESS_TOKEN_DEFAULT_DAYS > ACCESS_TOKEN_MAX_DAYS:
    raise ImproperlyConfigured("ACCESS_TOKEN_DEFAULT_DAYS is longer than ACCESS_TOKEN_MAX_DAYS")
# Seconds a worker remembers a checked Basic password (0: hash it on every request).
BASIC_AUTH_CACHE_SECONDS = env_int("BASIC_AUTH_CACHE_SECONDS", 300, maximum=3600)
# A Basic password starting with pacs_ is read as a token, so no password may.
AUTH_PASSWORD_VALIDATORS.append({"NAME": "accounts.validators.NotATokenValidator"})
# --- end of the API clients block ---

# --- Shared links: one study, read-only, expiring (shares/) ---
# Days a new link lasts unless its owner picks fewer, and the most they may pick.
SHARE_DEFAULT_DAYS = env_int("SHARE_DEFAULT_DAYS", 7, minimum=1)
SHARE_MAX_DAYS = env_int("SHARE_MAX_DAYS", 30, minimum=1)
if SHARE_DEFAULT_DAYS > SHARE_MAX_DAYS:
    raise ImproperlyConfigured("SHARE_DEFAULT_DAYS is longer than SHARE_MAX_DAYS")
# Minutes a visitor's session lasts after opening a link (never past the link's expiry).
SHARE_SESSION_MINUTES = env_int("SHARE_SESSION_MINUTES", 120, minimum=1, maximum=24 * 60)
# Links one user may create per hour.
SHARE_CREATE_PER_HOUR = env_int("SHARE_CREATE_PER_HOUR", 20, minimum=1)
# --- end of the shared links block ---

# Reverse proxies (addresses or networks) whose X-Forwarded-For names the real
# client, for audit and lockout. Empty: the connecting address is the client.
try:
    TRUSTED_PROXIES = [ipaddress.ip_network(item, strict=False) for item in env_list("TRUSTED_PROXIES")]
except ValueError as error:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES: {error}") from None
# The site's own proxies in front of the portal's nginx (a load balancer): nginx
# takes the client's address from their X-Forwarded-For, for audit, lockout and
# its access log. Empty: the address nginx sees is the client.
try:
    SITE_PROXIES = [ipaddress.ip_network(item, strict=False) for item in env_list("SITE_PROXIES")]
except ValueError as error:
    raise ImproperlyConfigured(f"SITE_PROXIES: {error}") from None

SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600, minimum=60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# Seconds without any request after which a session is logged out (0: never).
SESSION_IDLE_TIMEOUT = env_int("SESSION_IDLE_TIMEOUT", 30 * 60)
CSRF_COOKIE_HTTPONLY = True

# HTTPS: on when the portal terminates TLS itself or sits behind a TLS proxy.
PORTAL_HTTPS = env_bool("PORTAL_HTTPS", False)
SESSION_COOKIE_SECURE = PORTAL_HTTPS
CSRF_COOKIE_SECURE = PORTAL_HTTPS
SECURE_SSL_REDIRECT = PORTAL_HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000) if PORTAL_HTTPS else 0
# Off by default: sibling hosts on a hospital network are often HTTP-only, and
# internal names cannot be on the public preload list. Django's deploy check
# warns about both, so those two warnings are silenced only while they are off.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [
    check
    for check, enabled in [
        ("security.W005", SECURE_HSTS_INCLUDE_SUBDOMAINS),
        ("security.W021", SECURE_HSTS_PRELOAD),
    ]
    if not enabled
]
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if env_bool("TRUST_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or VAR_DIR / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
# whitenoise: no wildcard CORS (the viewer and the archive share one origin),
# files indexed once at start-up.
WHITENOISE_ALLOW_ALL_ORIGINS = False
WHITENOISE_AUTOREFRESH = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    # django-revproxy logs every view instantiation, django-axes every login, at INFO.
    "loggers": {"revproxy": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# --- The viewer and the portal around it (viewer/) ---
# The site's name: the viewer's header (a link to the portal home) and every page.
PORTAL_SITE_NAME = env_str("PORTAL_SITE_NAME") or "PACS portal"
if len(PORTAL_SITE_NAME) > 60:
    raise ImproperlyConfigured("PORTAL_SITE_NAME is longer than 60 characters (it must fit the header)")
# OHIF's onboarding tour over the first image, for each new browser; off unless asked for.
VIEWER_SHOW_TOUR = env_bool("VIEWER_SHOW_TOUR", False)
TEMPLATES[0]["OPTIONS"]["context_processors"].append("viewer.context_processors.site")
# --- end of the viewer block ---
