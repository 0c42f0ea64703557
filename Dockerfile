# syntax=docker/dockerfile:1
# pacsportal: the portal image. The pinned OHIF release is fetched and checked
# in a Node stage; the Python stage unpacks and pre-compresses it and collects
# Django's static files, so a container starts serving at once.

# Build stage only (npm pack and a hash check); Node 26 is the active LTS, supported to April 2029.
FROM node:26-bookworm-slim AS ohif
WORKDIR /ohif
COPY viewer/ohif.json ./
RUN set -eu; \
    spec=$(node -p 'const p = require("./ohif.json"); p.package + "@" + p.version'); \
    npm pack "$spec" --silent; \
    node -e ' \
      const fs = require("fs"), crypto = require("crypto"), pin = require("./ohif.json"); \
      const tarball = fs.readdirSync(".").find((name) => name.endsWith(".tgz")); \
      const [algorithm, expected] = [pin.integrity.split("-")[0], pin.integrity.slice(pin.integrity.indexOf("-") + 1)]; \
      const actual = crypto.createHash(algorithm).update(fs.readFileSync(tarball)).digest("base64"); \
      if (actual !== expected) { console.error("OHIF tarball does not match ohif.json"); process.exit(1); } \
      fs.renameSync(tarball, `ohif-app-${pin.version}.tgz`);'

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORTAL_VAR_DIR=/data \
    STATIC_ROOT=/app/static-root \
    OHIF_CACHE_DIR=/app/ohif \
    HOST=0.0.0.0 \
    PORT=8000
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin portal \
    && mkdir -p /data /app /run/pacsportal-front && chown portal:portal /data /run/pacsportal-front
WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY --chown=portal:portal . .
COPY --from=ohif /ohif/ohif-app-*.tgz /app/ohif/
# Verifies the tarball again against the same pin, unpacks and pre-compresses it.
RUN python -m viewer.bundle \
    && DEBUG=true python manage.py collectstatic --noinput -v0 \
    && chown -R portal:portal /app/ohif /app/static-root
USER portal
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=6s --start-period=30s --retries=3 CMD ["python", "deploy/healthcheck.py"]
ENTRYPOINT ["deploy/entrypoint.sh"]
