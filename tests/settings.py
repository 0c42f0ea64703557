"""Settings for the test process: the real settings, fed a test environment.

Nothing here reads the developer's var/ or environment: tests own their
database, their Orthanc and their secrets.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile

os.environ["PORTAL_VAR_DIR"] = tempfile.mkdtemp(prefix="pacsportal-test-var-")
atexit.register(shutil.rmtree, os.environ["PORTAL_VAR_DIR"], ignore_errors=True)
os.environ["DEBUG"] = "false"
os.environ["SECRET_KEY"] = secrets.token_urlsafe(50)
os.environ["ALLOWED_HOSTS"] = "testserver,localhost,127.0.0.1"
os.environ["ORTHANC_USER"] = "pacsportal-test"
os.environ["ORTHANC_PASSWORD"] = secrets.token_urlsafe(24)
for name in ("DATABASE_URL", "ORTHANC_URL", "PORTAL_HTTPS", "SECRET_KEY_FILE", "ORTHANC_PASSWORD_FILE"):
    os.environ.pop(name, None)

from pacsportal.settings import *  # noqa: E402,F403

# The test client renders templates without a collectstatic run.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
