# ACT: one image for `act control-plane` (default) and `act sidecar`.
#   podman build -t act:0.1.0 .      (or docker build)
#   podman run --rm -p 8700:8700 -p 8701:8701 -v act-data:/data act:0.1.0
#   podman run --rm act:0.1.0 sidecar --help
# No init process is needed: act handles SIGTERM itself (drains in-flight calls, flushes the
# sidecar's audit spool, closes the store) and starts no child processes.
ARG NODE_IMAGE=docker.io/library/node:20.20-bookworm-slim

# ---- build: full dependencies, compile, then drop the dev dependencies ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# The SDK is an npm workspace built with the rest (`npm run build`); the image does not ship it.
COPY packages/sdk ./packages/sdk
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/bundle.js ./scripts/bundle.js
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# ---- runtime: node, production node_modules, dist ----
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    ACT_DATA_DIR=/data \
    ACT_HTTP_ADDR=0.0.0.0:8700 \
    ACT_GRPC_ADDR=0.0.0.0:8701
WORKDIR /app
RUN groupadd --system --gid 10001 act \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin act \
 && mkdir -p /data \
 && chown 10001:10001 /data
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# Numeric user, so Kubernetes can enforce runAsNonRoot.
USER 10001:10001
EXPOSE 8700 8701 8443
# grpc.health.v1 on the control plane's gRPC port or, for `act sidecar`, its decision port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "/app/dist/webhook/grpc-health-probe.js", "--auto"]
ENTRYPOINT ["node", "/app/dist/bin/act.js"]
CMD ["control-plane"]
