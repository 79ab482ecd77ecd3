# syntax=docker/dockerfile:1
# Specta daemon: Connect, gRPC and gRPC-Web on port 7777, with an embedded PostgreSQL in
# /var/lib/specta (mount a volume there), or any PostgreSQL through SPECTA_DATABASE_URL.
# It writes nothing outside that volume, so the root filesystem may be read-only:
#   docker run --read-only -v specta:/var/lib/specta -p 7777:7777 specta
# test/deploy-files.e2e.test.ts runs this image's start command the same way (non-root, read-only root).

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY proto ./proto
COPY gen ./gen
COPY src ./src
ARG SPECTA_GIT_SHA=unknown
RUN SPECTA_GIT_SHA=$SPECTA_GIT_SHA npm run build \
 && npm prune --omit=dev --ignore-scripts

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    SPECTA_DATA_DIR=/var/lib/specta \
    SPECTA_ADDR=0.0.0.0:7777
# PostgreSQL refuses to run as root; so does Specta's image.
# A fixed uid and gid (999), for Kubernetes' runAsUser (deploy/kubernetes/specta.yaml).
RUN groupadd --system --gid 999 specta \
 && useradd --system --uid 999 --gid specta --home-dir /var/lib/specta --shell /usr/sbin/nologin specta \
 && install -d -o specta -g specta -m 0700 /var/lib/specta
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY proto ./proto
USER specta
VOLUME ["/var/lib/specta"]
EXPOSE 7777
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:7777/health/ready').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/specta.js"]
CMD ["daemon"]
