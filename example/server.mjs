// The demo service: a small claims-drift API in the spirit of Upstream, with the plugin
// registered and /metrics on the same port. `npm start` runs it on :8000.
//   DATABASE_URL  PostgreSQL to use (else an embedded PostgreSQL, PGlite, in this process)
//   REDIS_URL     Redis for the cache and the background jobs (else Redis on 127.0.0.1:6379 if it
//                 answers; set but empty: no Redis, an in-process LRU cache and no jobs)
//   DEMO_WORKER   "0": no BullMQ worker, job producer or celery_* series in this process (compose
//                 runs them as separate services)
//   BULL_PREFIX   BullMQ key prefix of the demo's queue (default bull)
//   DEMO_JOBS_PER_SECOND   jobs the in-process producer adds (default 2)
//   HOST, PORT    listen address (default 0.0.0.0:8000)
//   DEMO_FAILURE_RATE  share of /api/payers/:id/forecast calls that fail with a 500 (default 0.2)
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import fastifyView from '@fastify/view'
import ejs from 'ejs'
import pg from 'pg'
import { runner } from 'node-pg-migrate'
import upstreamMetrics from '../dist/entry.mjs'
import { databaseFromEnv } from './embedded-postgres.mjs'
import { createCache } from './cache.mjs'
import { findRedis, rateLimited, redactUrl } from './redis.mjs'
import { DEMO_QUEUES, startDemoWorker } from './worker.mjs'

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations', import.meta.url))
/** node-pg-migrate's bookkeeping table, prefixed like the demo's own tables. */
export const MIGRATIONS_TABLE = 'um_demo_pgmigrations'

async function migrate (pool) {
  const client = await pool.connect()
  try {
    await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      migrationsTable: MIGRATIONS_TABLE,
      direction: 'up',
      checkOrder: true,
      // Replicas (compose --scale, cluster workers) start together: each waits for the one migrating.
      advisoryLockMode: 'wait',
      log: () => {}
    })
  } finally {
    client.release()
  }
}

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'integer', minimum: 1 } }
}

/** What the demo says at startup about its Redis, so an empty dashboard row is never a mystery. */
function describeRedis (redis, workerOn) {
  if (redis === undefined) {
    return {
      level: 'warn',
      message: 'No Redis (REDIS_URL is unset and nothing answers on 127.0.0.1:6379, or REDIS_URL is empty): ' +
        'the dashboard\'s Workers row stays empty (no BullMQ queue to follow) and the cache is in-process ' +
        '(backend="locmem"). Start Redis or set REDIS_URL to fill it.'
    }
  }
  const where = `Redis at ${redactUrl(redis.url)}${redis.source === 'localhost' ? ' (found on localhost; REDIS_URL chooses another)' : ''}`
  return workerOn
    ? { level: 'info', message: `${where}: cache on Redis; BullMQ worker and job producer on queues ${DEMO_QUEUES.map((q) => `"${q}"`).join(', ')}, its celery_* series on /metrics` }
    : { level: 'info', message: `${where}: cache on Redis; DEMO_WORKER=0, so no background jobs and no celery_* series in this process` }
}

/**
 * Builds the demo app (not listening). Options default to the environment; the database
 * is always DATABASE_URL or, without it, the embedded one.
 * @returns {Promise<import('fastify').FastifyInstance>}
 */
export async function buildDemo ({
  failureRate = Number(process.env.DEMO_FAILURE_RATE ?? 0.2),
  logLevel = process.env.LOG_LEVEL ?? 'info',
  workerOn = process.env.DEMO_WORKER !== '0',
  bullPrefix = process.env.BULL_PREFIX ?? 'bull',
  jobsPerSecond = Number(process.env.DEMO_JOBS_PER_SECOND ?? 2),
  /** Extra plugin options (e.g. `{ cluster: true }` inside cluster workers, which cannot have `worker`). */
  plugin = {}
} = {}) {
  const redis = await findRedis()
  const database = await databaseFromEnv()
  const pool = new pg.Pool({ connectionString: database.url, max: database.poolMax })
  await migrate(pool)

  const app = Fastify({ logger: { level: logLevel } })
  const worker = redis !== undefined && workerOn
  await app.register(upstreamMetrics, {
    excludePaths: ['/healthz'],
    // Migration gauges from node-pg-migrate's table, read at startup, after migrate() above has run.
    db: { migrations: { client: pool, tool: 'node-pg-migrate', table: MIGRATIONS_TABLE, dir: MIGRATIONS_DIR } },
    // The celery_* series of the demo's queue, collected in this process.
    ...(worker ? { worker: { broker: redis.url, queues: DEMO_QUEUES, prefix: bullPrefix } } : {}),
    ...plugin
  })
  const { level, message } = describeRedis(redis, worker)
  app.log[level](message)
  const logRedisError = rateLimited((line) => app.log.warn(line))
  const cache = createCache(redis?.url, app.upstreamMetrics.cache, logRedisError)
  const jobs = worker ? startDemoWorker({ url: redis.url, prefix: bullPrefix, jobsPerSecond, log: logRedisError }) : undefined

  app.addHook('onClose', async () => {
    await jobs?.close()
    await cache.close()
    await pool.end()
    await database.stop()
  })

  app.get('/healthz', async () => {
    await pool.query('SELECT 1')
    return { ok: true }
  })

  app.get('/', async (_request, reply) => reply.redirect('/api/payers'))

  app.get('/api/payers', async () => {
    const { rows } = await pool.query('SELECT id, name, region FROM um_demo_payers ORDER BY id')
    return rows
  })

  // The cached read: payer details change rarely.
  app.get('/api/payers/:id', { schema: { params: idParams } }, async (request, reply) => {
    const key = `payer:${request.params.id}`
    const cached = await cache.get(key)
    if (cached !== undefined) return cached
    const { rows } = await pool.query(
      `SELECT p.id, p.name, p.region, count(c.id)::int AS claims
         FROM um_demo_payers p LEFT JOIN um_demo_claims c ON c.payer_id = p.id
        WHERE p.id = $1 GROUP BY p.id`, [request.params.id])
    if (rows.length === 0) return reply.code(404).send({ error: 'payer not found' })
    await cache.set(key, rows[0], 30)
    return rows[0]
  })

  // Depends on a forecasting service that fails now and then.
  app.get('/api/payers/:id/forecast', { schema: { params: idParams } }, async (request) => {
    if (Math.random() < failureRate) throw new Error('forecast service unavailable')
    const { rows } = await pool.query(
      'SELECT coalesce(avg(amount_cents), 0)::int AS expected_cents FROM um_demo_claims WHERE payer_id = $1', [request.params.id])
    return { payerId: request.params.id, expectedCents: rows[0].expected_cents }
  })

  app.get('/api/claims', {
    schema: {
      querystring: {
        type: 'object',
        properties: {
          status: { type: 'string', enum: ['received', 'approved', 'denied'] },
          limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 }
        },
        additionalProperties: false
      }
    }
  }, async (request) => {
    const { status, limit } = request.query
    const { rows } = status === undefined
      ? await pool.query('SELECT id, payer_id, status, amount_cents FROM um_demo_claims ORDER BY id DESC LIMIT $1', [limit])
      : await pool.query('SELECT id, payer_id, status, amount_cents FROM um_demo_claims WHERE status = $1 ORDER BY id DESC LIMIT $2', [status, limit])
    return rows
  })

  app.post('/api/claims', {
    schema: {
      body: {
        type: 'object',
        required: ['payerId', 'externalRef', 'amountCents'],
        properties: {
          payerId: { type: 'integer', minimum: 1 },
          externalRef: { type: 'string', minLength: 3, maxLength: 64 },
          amountCents: { type: 'integer', minimum: 0 }
        },
        additionalProperties: false
      }
    }
  }, async (request, reply) => {
    const { payerId, externalRef, amountCents } = request.body
    try {
      const { rows } = await pool.query(
        'INSERT INTO um_demo_claims (payer_id, external_ref, amount_cents) VALUES ($1, $2, $3) RETURNING id, status',
        [payerId, externalRef, amountCents])
      return reply.code(201).send(rows[0])
    } catch (err) {
      // Constraint violations are the client's fault; the database still counts them as errors
      // (django_db_errors_total{type="UniqueViolation"} / {type="ForeignKeyViolation"}, psycopg's classes).
      if (err.code === '23505') return reply.code(409).send({ error: 'duplicate claim reference' })
      if (err.code === '23503') return reply.code(422).send({ error: 'unknown payer' })
      throw err
    }
  })

  app.patch('/api/claims/:id', {
    schema: {
      params: idParams,
      body: {
        type: 'object',
        required: ['status'],
        properties: { status: { type: 'string', enum: ['received', 'approved', 'denied'] } },
        additionalProperties: false
      }
    }
  }, async (request, reply) => {
    const { rowCount } = await pool.query('UPDATE um_demo_claims SET status = $1 WHERE id = $2', [request.body.status, request.params.id])
    if (rowCount === 0) return reply.code(404).send({ error: 'claim not found' })
    return reply.code(204).send()
  })

  app.delete('/api/claims/:id', { schema: { params: idParams } }, async (request, reply) => {
    const { rowCount } = await pool.query('DELETE FROM um_demo_claims WHERE id = $1', [request.params.id])
    if (rowCount === 0) return reply.code(404).send({ error: 'claim not found' })
    return reply.code(204).send()
  })

  // An HTML page rendered from a named template: django_http_responses_total_by_templatename_total.
  await app.register(fastifyView, { engine: { ejs }, root: fileURLToPath(new URL('./views', import.meta.url)) })
  app.get('/claims', async (_request, reply) => {
    const { rows } = await pool.query('SELECT id, payer_id, status, amount_cents FROM um_demo_claims ORDER BY id DESC LIMIT 20')
    return reply.view('claims.ejs', { claims: rows })
  })

  // The slow route: a report that aggregates, then waits on a (simulated) downstream renderer.
  app.get('/api/reports/drift', async () => {
    const { rows } = await pool.query(
      `SELECT payer_id, count(*)::int AS claims,
              coalesce(avg(CASE WHEN status = 'denied' THEN 1 ELSE 0 END), 0)::float AS denial_rate
         FROM um_demo_claims GROUP BY payer_id ORDER BY payer_id`)
    await sleep(150 + Math.floor(Math.random() * 650))
    return rows
  })

  // Records drift events: a write to one model and an update of another, in a transaction.
  app.post('/api/drift/scan', async (_request, reply) => {
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      const { rows } = await client.query(
        `INSERT INTO um_demo_drift_events (payer_id, denial_rate_delta)
         SELECT payer_id, round(avg(CASE WHEN status = 'denied' THEN 1 ELSE 0 END) - 0.1, 4)
           FROM um_demo_claims GROUP BY payer_id RETURNING id`)
      await client.query(`UPDATE um_demo_claims SET status = 'approved'
                           WHERE status = 'received' AND created_at < now() - interval '1 minute'`)
      await client.query('COMMIT')
      return reply.code(201).send({ events: rows.length })
    } catch (err) {
      await client.query('ROLLBACK')
      throw err
    } finally {
      client.release()
    }
  })

  // A legacy report whose query refers to a column that no longer exists: a database error and a 500.
  app.get('/api/reports/legacy', async () => {
    const { rows } = await pool.query('SELECT payer_id, sum(amount) FROM um_demo_claims GROUP BY payer_id')
    return rows
  })

  return app
}

async function main () {
  const app = await buildDemo()
  const port = Number(process.env.PORT ?? 8000)
  const host = process.env.HOST ?? '0.0.0.0'
  let closing = false
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      if (closing) return
      closing = true
      app.close().then(() => process.exit(0), (err) => {
        app.log.error({ err }, 'shutdown failed')
        process.exit(1)
      })
    })
  }
  await app.listen({ port, host })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
