# One image for every role; ROLE (api, logic, task or connect) picks which one runs:
#   docker build -t bunchat .
#   docker run -e ROLE=logic -e IM_HOST=auto -e IM_CLUSTER_SECRET=... \
#     -e IM_REDIS_URL=redis://redis:6379 -e IM_MYSQL_URL=mysql://bunchat:PASSWORD@mariadb:3306/bunchat \
#     -e IM_ETCD_ENDPOINTS=http://etcd:2379 bunchat
# IM_HOST is the address other instances dial (gRPC, WebSocket URLs in etcd): `auto` (also what an
# unset IM_HOST means inside a container) takes the address of the interface that reaches etcd;
# set it explicitly when that is not the address peers use (e.g. host networking behind NAT). A
# role that would advertise a loopback address to a remote etcd warns at start.
# Ports inside the container (docker-compose.yml and deploy/k8s set them): IM_API_PORT /
# IM_CONNECT_PORT public, IM_LOGIC_PORT / IM_CONNECT_RPC_PORT internal gRPC, IM_METRICS_PORT the
# internal ops port (/healthz, /readyz, /metrics). HEALTHCHECK probes /readyz through src/bin/probe.ts.
# docker-compose.yml runs a whole multi-instance cluster behind nginx.
ARG BUN_VERSION=1.4

FROM oven/bun:${BUN_VERSION} AS deps
WORKDIR /app
COPY package.json bun.lock ./
RUN bun install --frozen-lockfile --production

FROM oven/bun:${BUN_VERSION}
WORKDIR /app
ENV NODE_ENV=production \
    ROLE=api \
    IM_HOST=auto \
    IM_METRICS_HOST=auto \
    IM_METRICS_PORT=9400
COPY --from=deps /app/node_modules ./node_modules
COPY package.json bun.lock tsconfig.json ./
COPY proto ./proto
COPY migrations ./migrations
COPY src ./src
USER bun
EXPOSE 8080 7000 7001 9400
HEALTHCHECK --interval=5s --timeout=4s --start-period=15s --retries=12 CMD ["bun", "src/bin/probe.ts", "/readyz"]
# exec: the role replaces the shell, so it gets docker's SIGTERM and shuts down gracefully.
CMD ["sh", "-c", "exec bun src/bin/${ROLE}.ts"]
