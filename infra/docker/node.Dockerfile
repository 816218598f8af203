# Node image (seed: docs/docker.md "Node Image"): three stages.
#   deps:    node:22-slim + pnpm (Corepack) + node_modules from pnpm-lock.yaml
#   builder: deps + workspace source, compiles apps/web (tsc)
#   runtime: node:22-slim + only the built output, as the built-in node user
#
# Fetching RUNs mount the host CA bundle as an (optional) build secret and
# point NODE_EXTRA_CA_CERTS at it for that command only: TLS-intercepting
# proxies work, and the bundle never enters a layer.
# Build with: --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt

FROM node:22-slim AS deps
# pnpm 10.28.1 (the root package.json's "packageManager"), pinned by the
# sha512 of its npm tarball: Corepack checks the download against this hash
# instead of the registry's signatures, which some registry proxies strip.
ARG PNPM_SPEC=pnpm@10.28.1+sha512.7d7dbbca9e99447b7c3bf7a73286afaaf6be99251eb9498baefa7d406892f67b879adb3a1d7e687fc4ccc1a388c7175fbaae567a26ab44d1067b54fcb0d6a316
# Corepack provides pnpm: no global npm install. COREPACK_HOME keeps the
# downloaded pnpm in this stage's layer, so later steps need no network.
ENV COREPACK_HOME=/opt/corepack \
    COREPACK_ENABLE_DOWNLOAD_PROMPT=0 \
    npm_config_update_notifier=false
RUN --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    sh -c 'corepack enable && for i in 1 2 3; do corepack prepare "$PNPM_SPEC" --activate && exit 0; sleep 2; done; exit 1'
WORKDIR /app
# Only the manifests: this layer (and the install) is reused until they change.
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml ./
COPY apps/web/package.json apps/web/package.json
# --frozen-lockfile: deterministic, fails if pnpm-lock.yaml is out of date.
# The pnpm store lives on a cache mount, shared across builds.
RUN --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    --mount=type=cache,id=pnpm-store,target=/pnpm/store \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    pnpm install --frozen-lockfile --store-dir /pnpm/store

FROM deps AS builder
# Specific COPYs, never `COPY . .`, so nothing like .env can leak in.
COPY nx.json tsconfig.base.json ./
COPY libs/ libs/
COPY apps/ apps/
RUN pnpm --filter @ai-mono/web run build

FROM node:22-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Only the built output and its manifest (the web app has no runtime
# dependencies), owned by the non-root user from the start.
COPY --chown=node:node --from=builder /app/apps/web/package.json apps/web/package.json
COPY --chown=node:node --from=builder /app/apps/web/dist apps/web/dist
# node:22-slim's built-in non-root user (UID/GID 1000).
USER node
EXPOSE 3000
CMD ["node", "apps/web/dist/main.js"]
