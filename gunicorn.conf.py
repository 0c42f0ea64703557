"""gunicorn settings for the portal (`make run`, the Docker image, the tests).

gthread workers: a thread streaming a study keeps the worker heartbeating, where
the sync worker's timeout would kill long downloads; ASGI workers would buffer
Django's streaming responses in memory.
"""

from __future__ import annotations

from typing import Any

from pacsportal.env import env_int, env_str

# Behind the portal's nginx (manage.py serve), a unix socket only nginx uses.
bind = (
    env_str("GUNICORN_BIND")
    or f"{env_str('HOST', '127.0.0.1')}:{env_int('PORT', 8000, minimum=1, maximum=65535)}"
)
worker_class = "gthread"
workers = env_int("WEB_WORKERS", 2, minimum=1)
threads = env_int("WEB_THREADS", 8, minimum=1)
timeout = env_int("WEB_TIMEOUT", 120, minimum=10)
graceful_timeout = 20
keepalive = 5
accesslog = "-"
logger_class = "pacsportal.accesslog.AccessLogger"
errorlog = "-"
# Trust nobody's X-Forwarded-* unless told: a client on loopback could otherwise claim https.
forwarded_allow_ips = env_str("FORWARDED_ALLOW_IPS", "")

# TLS is nginx's when gunicorn sits behind it: on a unix socket (manage.py
# serve), or in compose, whose front gets its configuration from FRONT_CONFIG_DIR.
behind_front = bind.startswith("unix:") or bool(env_str("FRONT_CONFIG_DIR"))
certfile = None if behind_front else env_str("TLS_CERT_FILE") or None
keyfile = None if behind_front else env_str("TLS_KEY_FILE") or None

# gunicorn 27's control socket lives at one path per user: several portals on
# one machine (tests, bench) would fight over it, and nothing here uses it.
control_socket_disable = True


def post_worker_init(worker: Any) -> None:
    # Only in the workers that proxy Orthanc's answers (docs/departures.md):
    # every WADO-RS answer is multipart, which the standard parser makes costly.
    from orthanc.client import install_header_parser

    install_header_parser()

    # In the workers that parse requests, before the first one: an empty
    # Expect header gets gunicorn's 417 otherwise (pacsportal/gunicorn_expect.py).
    from pacsportal import gunicorn_expect

    gunicorn_expect.install()

    # Whose study a UID is, from Orthanc's change feed (orthanc/owners.py): one
    # reader at a time across workers and nodes, by a lease in the database. Only in
    # a worker gunicorn made: tests call this hook with no worker for the patches above.
    if worker is not None:
        from orthanc import owners

        owners.start_following()
