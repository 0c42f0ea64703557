#!/bin/sh
# The portal container: migrate, make sure the first admin exists, serve.
set -eu
python manage.py migrate --noinput
python manage.py ensure_admin
exec python -m gunicorn -c gunicorn.conf.py pacsportal.wsgi
