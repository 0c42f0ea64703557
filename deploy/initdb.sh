#!/bin/sh
# First start of the db service (an empty db-data volume only; the image skips
# this script afterwards): the portal's and Orthanc's databases, each with its
# own role, passwords read from the secret files. psql takes them from its
# environment (\getenv), never from its command line.
set -eu
PORTAL_DB_PASSWORD=$(cat "${PORTAL_DB_PASSWORD_FILE:?}")
ORTHANC_DB_PASSWORD=$(cat "${ORTHANC_DB_PASSWORD_FILE:?}")
export PORTAL_DB_PASSWORD ORTHANC_DB_PASSWORD
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc <<'SQL'
\getenv portal_password PORTAL_DB_PASSWORD
\getenv orthanc_password ORTHANC_DB_PASSWORD
CREATE ROLE portal LOGIN PASSWORD :'portal_password';
CREATE DATABASE portal OWNER portal;
CREATE ROLE orthanc LOGIN PASSWORD :'orthanc_password';
CREATE DATABASE orthanc OWNER orthanc;
SQL
