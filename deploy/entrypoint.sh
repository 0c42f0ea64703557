#!/bin/sh
# The portal container: refuse a configuration that would start and then fail
# quietly, migrate, make sure the first admin exists, write the front's
# configuration (compose), serve.
set -eu

fail() {
    echo "pacsportal: $*" >&2
    exit 78 # EX_CONFIG: the configuration must change, a restart will not help
}

# The portal's boolean words (pacsportal/env.py).
is_true() {
    case $(printf %s "${1:-}" | tr '[:upper:]' '[:lower:]') in
    1 | true | yes | on) return 0 ;;
    *) return 1 ;;
    esac
}

cert=${TLS_CERT_FILE:-}
key=${TLS_KEY_FILE:-}
if [ -n "$cert$key" ]; then
    [ -n "$cert" ] && [ -n "$key" ] || fail "set both TLS_CERT_FILE and TLS_KEY_FILE, or neither"
fi
if [ -n "${FRONT_CONFIG_DIR:-}" ]; then
    # Behind compose's front: TLS is nginx's, which reads the certificate in its
    # own container and refuses a bad one at start; gunicorn speaks plain HTTP
    # to it on the internal network.
    if is_true "${PORTAL_HTTPS:-false}" && [ -z "$cert" ]; then
        fail "PORTAL_HTTPS=true, but nothing speaks HTTPS: set TLS_CERT_FILE and TLS_KEY_FILE (TLS at the front), or PORTAL_HTTPS=false for plain HTTP (docs/deploy.md, TLS)"
    fi
elif [ -n "$cert" ]; then
    # TLS at gunicorn. An unreadable or mismatched key still lets gunicorn log
    # "Listening at https", and then every handshake fails: check it here, as
    # the user gunicorn runs as.
    for file in "$cert" "$key"; do
        [ -e "$file" ] || fail "$file does not exist: put cert.pem and key.pem in TLS_DIR (docs/deploy.md, TLS)"
        [ -r "$file" ] || fail "$file cannot be read by this container's user (uid $(id -u)): on the host, \`chown $(id -u)\` the file and keep its mode 0600 (docs/deploy.md, TLS)"
    done
    python - "$cert" "$key" <<'PY' || exit 78
import ssl
import sys

try:
    # An encrypted key gets an empty passphrase and fails here, not at a prompt.
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(sys.argv[1], sys.argv[2], password=b"")
except (OSError, ssl.SSLError) as error:
    sys.exit(f"pacsportal: TLS_CERT_FILE and TLS_KEY_FILE are not a certificate and its unencrypted key: {error}")
PY
elif is_true "${PORTAL_HTTPS:-false}" && ! is_true "${TRUST_PROXY_SSL_HEADER:-false}"; then
    # Every page would redirect to an https:// that nothing here answers, while
    # /healthz (exempt from the redirect) kept the container "healthy".
    fail "PORTAL_HTTPS=true, but nothing speaks HTTPS: set TLS_CERT_FILE and TLS_KEY_FILE (TLS at the portal), or TRUST_PROXY_SSL_HEADER=true behind a proxy that terminates TLS, or PORTAL_HTTPS=false for plain HTTP (docs/deploy.md, TLS)"
fi

python manage.py migrate --noinput

# ensure_admin reads PORTAL_ADMIN_PASSWORD only: give it the secret file's
# contents, in its own environment and nowhere else.
if [ -n "${PORTAL_ADMIN_PASSWORD_FILE:-}" ]; then
    [ -z "${PORTAL_ADMIN_PASSWORD:-}" ] || fail "set either PORTAL_ADMIN_PASSWORD or PORTAL_ADMIN_PASSWORD_FILE, not both"
    [ -r "$PORTAL_ADMIN_PASSWORD_FILE" ] || fail "PORTAL_ADMIN_PASSWORD_FILE: cannot read $PORTAL_ADMIN_PASSWORD_FILE as uid $(id -u)"
    (
        PORTAL_ADMIN_PASSWORD=$(cat "$PORTAL_ADMIN_PASSWORD_FILE")
        export PORTAL_ADMIN_PASSWORD
        unset PORTAL_ADMIN_PASSWORD_FILE
        exec python manage.py ensure_admin
    )
else
    python manage.py ensure_admin
fi

# compose's front (the official nginx image, no Python) gets its configuration
# from here: nginx's one template rendered by pacsportal/front.py into the
# memory-backed volume it mounts read-only, the Orthanc credential included.
if [ -n "${FRONT_CONFIG_DIR:-}" ]; then
    python manage.py render_front
fi

exec python -m gunicorn -c gunicorn.conf.py pacsportal.wsgi
