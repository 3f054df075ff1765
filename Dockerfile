# Ghost Pipe relay (and receiver) image for a DMZ host: `docker compose up` (compose.yaml,
# docs/DEPLOY.md). Two stages: the build has npm and the TypeScript compiler; the run stage is
# distroless Node 24: no shell, no package manager, a non-root user, only dist/ and the
# production node_modules.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY agent agent
COPY bench bench
COPY cli cli
COPY common common
COPY plant plant
COPY protocol protocol
COPY receiver receiver
COPY relay relay
COPY test test
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf dist/test dist/bench
# The volumes' mount points, owned by the run user: a new named volume takes this ownership.
RUN mkdir -p /state/ghostpipe/relay-operator /state/ghostpipe/receiver && chmod -R 0700 /state/ghostpipe

FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /opt/ghostpipe
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY docs ./docs
COPY --from=build --chown=65532:65532 /state/ghostpipe /var/lib/ghostpipe
# 65532: distroless's "nonroot". The state volume is mounted at /var/lib/ghostpipe (compose.yaml).
USER 65532:65532
ENV NODE_OPTIONS="--max-old-space-size=256 --max-semi-space-size=1"
EXPOSE 8787
# Exec form, no shell: node asks the relay's public /healthz on loopback inside the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/nodejs/bin/node", "-e", "require('http').get('http://127.0.0.1:8787/healthz',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
ENTRYPOINT ["/nodejs/bin/node", "/opt/ghostpipe/dist/cli/ghostpipe.js"]
CMD ["relay", "--config", "/etc/ghostpipe/relay.yaml"]
