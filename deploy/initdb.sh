#!/bin/sh
# First start of the db service: the portal's and Orthanc's databases, each with its own role.
set -eu
: "${PORTAL_DB_PASSWORD:?}" "${ORTHANC_DB_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" \
    -v portal_password="$PORTAL_DB_PASSWORD" -v orthanc_password="$ORTHANC_DB_PASSWORD" <<'SQL'
CREATE ROLE portal LOGIN PASSWORD :'portal_password';
CREATE DATABASE portal OWNER portal;
CREATE ROLE orthanc LOGIN PASSWORD :'orthanc_password';
CREATE DATABASE orthanc OWNER orthanc;
SQL
