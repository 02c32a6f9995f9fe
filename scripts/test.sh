#!/usr/bin/env bash
# npm test: Node >= 22, the Debian packages the tests need (installed when it can, else one line
# saying what to install), PostgreSQL and Redis reachable; then build, type-check, lint, every test.
# Arguments go to tap: npm test -- test/e2e.test.ts
set -uo pipefail
cd "$(dirname "$0")/.."

. scripts/node-env.sh || exit 1
bash scripts/test-deps.sh || exit 1

# The tests' services: PostgreSQL at DATABASE_URL (default the local `test` database) and Redis on 127.0.0.1:6379.
database_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
reachable() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
pg_target="$(node -e 'const u = new URL(process.argv[1]); console.log(`${u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1"} ${u.port || 5432}`)' "$database_url")" || {
  echo "npm test: DATABASE_URL is not a URL" >&2; exit 1; }
# shellcheck disable=SC2086 # host and port
reachable $pg_target || { echo "npm test needs PostgreSQL at ${pg_target/ /:} (DATABASE_URL, default the local test database): start it, or set DATABASE_URL" >&2; exit 1; }
reachable 127.0.0.1 6379 || { echo "npm test needs Redis on 127.0.0.1:6379: start it (redis-server)" >&2; exit 1; }

npm run build && npm run typecheck && npm run lint && tap "$@"
