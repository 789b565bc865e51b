# One image for every role; ROLE (api, logic, task or connect) picks which one runs:
#   docker build -t bunchat .
#   docker run -e ROLE=logic -e IM_REDIS_URL=... -e IM_MYSQL_URL=... -e IM_ETCD_ENDPOINTS=... bunchat
# docker-compose.yml runs a whole multi-instance cluster.
ARG BUN_VERSION=1.4

FROM oven/bun:${BUN_VERSION} AS deps
WORKDIR /app
COPY package.json bun.lock ./
RUN bun install --frozen-lockfile --production

FROM oven/bun:${BUN_VERSION}
WORKDIR /app
ENV NODE_ENV=production \
    ROLE=api
COPY --from=deps /app/node_modules ./node_modules
COPY package.json bun.lock tsconfig.json ./
COPY proto ./proto
COPY migrations ./migrations
COPY src ./src
USER bun
# exec: the role replaces the shell, so it gets docker's SIGTERM and shuts down gracefully.
CMD ["sh", "-c", "exec bun src/bin/${ROLE}.ts"]
