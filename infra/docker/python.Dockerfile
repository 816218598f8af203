# Python image (seed: docs/docker.md "Python Image"): two stages.
#   deps:    python:3.11 + Poetry resolves poetry.lock into /app/.venv
#   runtime: python:3.11-slim + that .venv + app source, as appuser (1000)
#
# Fetching RUNs mount the host CA bundle as an (optional) build secret and
# point SSL_CERT_FILE / PIP_CERT / REQUESTS_CA_BUNDLE at it for that command
# only: TLS-intercepting proxies work, and the bundle never enters a layer.
# Build with: --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt

FROM python:3.11 AS deps
ARG POETRY_VERSION=2.1.3
# Poetry (pinned) in its own venv: its dependencies stay out of the system
# Python ("externally managed" on Debian-built Pythons) and the app's .venv.
RUN --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    --mount=type=cache,target=/root/.cache/pip \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    sh -c 'python3 -m venv /opt/poetry && /opt/poetry/bin/pip install "poetry==${POETRY_VERSION}"'
# Poetry's bin goes last on PATH so `python3` stays the base interpreter that
# the app's .venv is built on. .venv inside /app (POETRY_VIRTUALENVS_IN_PROJECT)
# lets the runtime stage take it with one COPY --from.
ENV PATH=$PATH:/opt/poetry/bin \
    POETRY_VIRTUALENVS_IN_PROJECT=true \
    POETRY_NO_INTERACTION=1
WORKDIR /app
COPY pyproject.toml poetry.lock ./
# The path dependency is copied complete (pyproject, README, source):
# Poetry needs the whole package to build and install it.
COPY libs/py-core/ libs/py-core/
# Dependencies only: no root package (package-mode = false), no dev group.
# Cache mounts keep downloads across builds without growing the layer.
RUN --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    --mount=type=cache,target=/root/.cache/pypoetry \
    --mount=type=cache,target=/root/.cache/pip \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    poetry install --no-root --only main

FROM python:3.11-slim AS runtime
# Non-root user with a fixed UID/GID of 1000.
RUN groupadd --gid 1000 appuser \
 && useradd --uid 1000 --gid 1000 --no-create-home --shell /usr/sbin/nologin appuser
WORKDIR /app
# py-core was installed into the venv as a regular package (develop = false),
# so libs/ is not needed at runtime, only the venv and the app's source.
COPY --from=deps /app/.venv /app/.venv
COPY apps/api/api/ apps/api/api/
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONPATH=/app/apps/api \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER appuser
EXPOSE 8000
CMD ["python", "-m", "api"]
