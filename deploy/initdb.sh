#!/bin/sh
# Creates the portal's and Orthanc's databases and roles on first start of the db service.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE portal LOGIN PASSWORD '$(cat "$PORTAL_DB_PASSWORD_FILE")';
CREATE DATABASE portal OWNER portal;
CREATE ROLE orthanc LOGIN PASSWORD '$(cat "$ORTHANC_DB_PASSWORD_FILE")';
CREATE DATABASE orthanc OWNER orthanc;
SQL
