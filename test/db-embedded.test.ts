import t from 'tap'
import pg from 'pg'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { startEmbeddedPostgres } from '../example/embedded-postgres.mjs'
import script from './fixtures/db/script.cjs'

// The embedded path (PGlite over the wire protocol, one session): the same script and
// the same exact values as against the real server, through the real pg client.
t.test('the known script against embedded PostgreSQL', async (t) => {
  const db = await startEmbeddedPostgres()
  t.teardown(() => db.stop())
  const p = 'um_pg_embedded'
  await script.setup(pg, db.url, p)
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  await app.ready()
  await script.run(pg, db.url, p)
  const body = (await app.inject('/metrics')).body
  await app.close()
  t.same(Object.fromEntries(script.dbSamples(script.parseSamples(body))), Object.fromEntries(script.expectedSamples(p)))
})
