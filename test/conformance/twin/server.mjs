// The Fastify twin of the Django project in ../django: the same routes, view names, tables
// (migrated by node-pg-migrate, as Django's by `migrate`) and cache use, written as a team
// moving that service to Fastify would write it. The conformance test starts it with
// PORT, TWIN_DATABASE_URL, TWIN_REDIS_URL, TWIN_REDIS_DOWN_PORT and TWIN_KEY_PREFIX.
import { createReadStream, statSync } from 'node:fs'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import fastifyView from '@fastify/view'
import ejs from 'ejs'
import Fastify from 'fastify'
import Redis from 'ioredis'
import pg from 'pg'
import upstreamMetrics from '../../../dist/entry.mjs'

const env = process.env
const REPORT = fileURLToPath(new URL('../files/report.txt', import.meta.url))
const TEMPLATES = fileURLToPath(new URL('./templates/', import.meta.url))
const MIGRATIONS = fileURLToPath(new URL('./migrations/', import.meta.url))
const TEXT = 'text/plain'

/** Django's `Http404`, ported: views raise it, the error handler answers the 404 page. */
class Http404 extends Error {
  statusCode = 404
}

// Idle connections are kept, as Django's CONN_MAX_AGE = None keeps its one.
const pool = new pg.Pool({ connectionString: env.TWIN_DATABASE_URL, idleTimeoutMillis: 0 })
const cache = new Redis(env.TWIN_REDIS_URL, { keyPrefix: `${env.TWIN_KEY_PREFIX}:` })
// A Redis nobody listens on, as the Django project's "down" cache: gets fail at once and are
// answered as misses (django-redis's IGNORE_EXCEPTIONS).
const cacheDown = new Redis({
  host: '127.0.0.1',
  port: Number(env.TWIN_REDIS_DOWN_PORT),
  lazyConnect: true,
  enableOfflineQueue: false,
  retryStrategy: () => null
})
cacheDown.on('error', () => {})

async function cacheDownGet (key) {
  try {
    if (cacheDown.status === 'wait' || cacheDown.status === 'end') await cacheDown.connect().catch(() => {})
    return await cacheDown.get(key)
  } catch {
    return null
  }
}

async function build (metricsOptions) {
  const app = Fastify({ logger: { level: 'warn' } })
  app.addHttpMethod('PURGE', { hasBody: true })
  await app.register(upstreamMetrics, metricsOptions)
  await app.register(fastifyView, { engine: { ejs }, root: TEMPLATES })

  const named = (view) => ({ config: { metrics: { view } } })

  app.setNotFoundHandler((request, reply) => reply.code(404).type(TEXT).send('not found\n'))
  app.setErrorHandler((error, request, reply) => {
    if (error.statusCode === 404) return reply.code(404).type(TEXT).send('not found\n')
    return reply.code(500).type(TEXT).send('server error\n')
  })

  app.get('/plain', named('claims.views.plain'), async (request, reply) => reply.type(TEXT).send('plain\n'))
  app.get('/named', named('named'), async (request, reply) => reply.type(TEXT).send('named view\n'))
  app.get('/status', named('claims.views.Status'), async (request, reply) => reply.type(TEXT).send('ok\n'))
  app.get('/api/items', named('api:items'), async (request, reply) => reply.type('application/json').send('{"items":[1,2,3]}'))

  app.get('/claims', named('claims'), async (request, reply) => {
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM claims_claim')
    return reply.type(TEXT).send(`${rows[0].n} claims\n`)
  })
  app.post('/claims', named('claims'), async (request, reply) => {
    const { code, title = '' } = request.body
    try {
      await pool.query('INSERT INTO claims_claim (code, title, status) VALUES ($1, $2, $3) RETURNING id', [code, title, 'open'])
    } catch (err) {
      if (err.code === '23505') return reply.code(409).type(TEXT).send('duplicate\n')
      throw err
    }
    return reply.code(201).type(TEXT).send(`created ${code}\n`)
  })
  app.route({
    method: ['GET', 'PUT', 'DELETE'],
    url: '/claims/:code',
    ...named('claim-detail'),
    handler: async (request, reply) => {
      const { rows } = await pool.query('SELECT id, code, title, status FROM claims_claim WHERE code = $1 LIMIT 21', [request.params.code])
      const claim = rows[0]
      if (claim === undefined) throw new Http404()
      if (request.method === 'PUT') {
        await pool.query('UPDATE claims_claim SET title = $1 WHERE id = $2', [request.body.title, claim.id])
        return reply.type(TEXT).send('updated\n')
      }
      if (request.method === 'DELETE') {
        await pool.query('DELETE FROM claims_claim WHERE id = $1', [claim.id])
        return reply.code(204).send()
      }
      return reply.type(TEXT).send(`${claim.code} ${claim.title}\n`)
    }
  })

  app.get('/cache/:key', named('cache'), async (request, reply) => {
    if (await cache.get(request.params.key) === null) {
      await cache.set(request.params.key, 'cached', 'EX', 300)
      return reply.type(TEXT).send('miss\n')
    }
    return reply.type(TEXT).send('hit\n')
  })
  app.get('/cache-down/:key', named('cache-down'), async (request, reply) => {
    const value = await cacheDownGet(request.params.key)
    return reply.type(TEXT).send(value === null ? 'down\n' : 'up\n')
  })

  app.get('/duplicate', named('duplicate'), async (request, reply) => {
    // Fails in PostgreSQL (23505) and is not caught: pg's DatabaseError reaches the error handler.
    await pool.query("INSERT INTO claims_claim (code, title, status) VALUES ('c1', 'duplicate', 'open')")
    return reply.type(TEXT).send('inserted\n')
  })
  app.get('/boom', named('boom'), async () => {
    throw new RangeError('boom')
  })
  app.get('/stream', named('stream'), async (request, reply) => {
    return reply.type(TEXT).send(Readable.from([0, 1, 2, 3, 4].map((i) => `chunk ${i}\n`)))
  })
  // As @fastify/static sends a file: a stream with its Content-Length.
  app.get('/file', named('file'), async (request, reply) => {
    return reply.type(TEXT).header('content-length', statSync(REPORT).size).send(createReadStream(REPORT))
  })
  app.route({
    method: ['POST', 'PURGE'],
    url: '/echo',
    ...named('echo'),
    handler: async (request, reply) => reply.type(TEXT).send(`${request.method} ${Buffer.byteLength(request.body ?? '')}\n`)
  })
  app.get('/latin1', named('latin1'), async (request, reply) => {
    return reply.type('text/csv; charset=ISO-8859-1').send(Buffer.from('café\n', 'latin1'))
  })
  app.get('/template', named('template'), async (request, reply) => {
    const { rows: claims } = await pool.query('SELECT code, title FROM claims_claim ORDER BY code LIMIT 5')
    return reply.view('claims/list.html', { claims })
  })
  return app
}

const metricsOptions = {
  db: {
    migrations: { client: pool, tool: 'node-pg-migrate', dir: MIGRATIONS },
    // django-prometheus labels models with the name given to ExportModelOperationsMixin.
    models: { claims_claim: 'claim' }
  }
}

const app = await build(metricsOptions)

let stopping = false
async function shutdown () {
  if (stopping) return
  stopping = true
  await app.close()
  await pool.end()
  cache.disconnect()
  cacheDown.disconnect()
  process.exit(0)
}
process.once('SIGTERM', shutdown)
process.once('SIGINT', shutdown)
// The test holds stdin open: when it ends (or dies), the twin goes too.
process.stdin.on('end', shutdown).resume()

await app.listen({ host: '127.0.0.1', port: Number(env.PORT) })
process.stdout.write(`twin listening on ${env.PORT}\n`)
