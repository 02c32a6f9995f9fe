# The demo service (example/server.mjs) with the plugin built from lib/.
FROM node:24-bookworm-slim
WORKDIR /app
# The demo's drivers (pg, ioredis, bullmq, node-pg-migrate, lru-cache) are devDependencies of the plugin.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY lib ./lib
RUN npm run build
COPY example ./example
ENV HOST=0.0.0.0 PORT=8000 NODE_ENV=production
USER node
EXPOSE 8000
CMD ["node", "example/server.mjs"]
