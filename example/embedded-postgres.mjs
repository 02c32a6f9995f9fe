// PostgreSQL for the demo and the tests when DATABASE_URL is unset: PGlite served over the
// PostgreSQL wire protocol, so the real `pg` client (and its instrumentation) is exercised.
// PGlite is single-session: keep pools at max 1 against it (see README, Troubleshooting).
import { PGlite } from '@electric-sql/pglite'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

/** Starts an in-memory PostgreSQL on 127.0.0.1 and a free port; returns its URL and a stop function. */
export async function startEmbeddedPostgres ({ host = '127.0.0.1', port = 0 } = {}) {
  const db = await PGlite.create()
  const server = new PGLiteSocketServer({ db, host, port, maxConnections: 2 })
  await server.start()
  const address = server.getServerConn()
  const url = `postgres://postgres@${address}/postgres`
  return {
    url,
    embedded: true,
    poolMax: 1,
    async stop () {
      await server.stop()
      await db.close()
    }
  }
}

/** DATABASE_URL when set (pool size free), else an embedded PostgreSQL (pool size 1). */
export async function databaseFromEnv () {
  const url = process.env.DATABASE_URL
  if (url) return { url, embedded: false, poolMax: 10, async stop () {} }
  return await startEmbeddedPostgres()
}
