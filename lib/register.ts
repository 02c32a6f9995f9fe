/**
 * Preload entry: `node --import upstream-metrics/register app.mjs` or
 * `node --require upstream-metrics/register app.js`. It enables the instrumentations
 * before the app loads anything, so every copy of `pg`, `ioredis` and node-redis is patched as it loads — the
 * cases the plugin cannot reach by itself (several copies, modules loaded in ways that
 * bypass `require.cache`). Nothing is measured until the plugin is registered; the
 * preload's hold on the patches lasts for the life of the process.
 */
import { NODE_REDIS_PATCH } from './cache/node-redis'
import { IOREDIS_PATCH } from './cache/redis'
import { PG_PATCH } from './db/pg'
import { watchPostgresJs } from './db/postgres-js'
import { acquirePatch } from './patch'

acquirePatch(PG_PATCH)
acquirePatch(IOREDIS_PATCH)
acquirePatch(NODE_REDIS_PATCH)
watchPostgresJs()
