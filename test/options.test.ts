import { inspect } from 'node:util'
import { Writable } from 'node:stream'
import t from 'tap'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { resolveOptions } from '../lib/options'

t.test('invalid options fail at register with a coded error naming the option', async (t) => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ path: 'metrics' }, 'path'],
    [{ namespace: 'a-b' }, 'namespace'],
    [{ latencyBuckets: [1, 0.5] }, 'latencyBuckets'],
    [{ latencyBuckets: [] }, 'latencyBuckets'],
    [{ runtimeMetrics: 'yes' }, 'runtimeMetrics'],
    [{ excludePaths: '/health' }, 'excludePaths'],
    [{ countScrape: 1 }, 'countScrape'],
    [{ cardinalityLimit: 1 }, 'cardinalityLimit'],
    [{ exemplars: 'yes' }, 'exemplars'],
    [{ http: { labels: { tenant: 'x-tenant' } } }, 'http.labels.tenant'],
    [{ http: { labels: { view: () => 'a' } } }, 'http.labels'],
    [{ http: { labels: { 'bad-name': () => 'a' } } }, 'http.labels'],
    [{ http: { labels: { __meta: () => 'a' } } }, 'http.labels'],
    [{ http: { labels: Object.fromEntries(['a', 'b', 'c', 'd', 'e', 'f'].map((n) => [n, () => n])) } }, 'http.labels'],
    [{ http: { labels: () => 'tenant' } }, 'http.labels'],
    [{ auth: {} }, 'auth'],
    [{ auth: { bearerToken: '' } }, 'auth.bearerToken'],
    [{ auth: { basic: { username: 'a:b', password: 'x' } } }, 'auth.basic'],
    [{ auth: { check: 'x' } }, 'auth.check'],
    [{ listener: { port: 70000 } }, 'listener.port'],
    [{ cluster: 'yes' }, 'cluster'],
    [{ cluster: true, worker: true }, 'worker'],
    [{ unknownThing: true }, 'unknownThing'],
    // Unknown keys are refused in every nested object, as at the top level (a typo would otherwise be silently ignored).
    [{ cluster: { timeout: 5 } }, 'cluster.timeout'],
    [{ auth: { basic: { username: 'prometheus', password: 'x', realm: 'metrics' } } }, 'auth.basic.realm'],
    [{ listener: { port: 0, hots: '127.0.0.1' } }, 'listener.hots'],
    [{ db: { migrations: { count: () => ({ applied: 0, unapplied: 0 }), tabel: 'x' } } }, 'db.migrations.tabel'],
    [{ cache: { redis: true, backnd: 'x' } }, 'cache.backnd'],
    [{ worker: { prefx: 'x' } }, 'worker.prefx']
  ]
  for (const [options, name] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(upstreamMetrics, options as never) }, { code: 'UPSTREAM_METRICS_INVALID_OPTION', message: new RegExp(`option "${name.replaceAll('.', '\\.')}"`) }, name)
    await app.close()
  }
})

t.test('a secret is never echoed in the error', async (t) => {
  const app = Fastify()
  const err = await app.register(upstreamMetrics, { auth: { basic: { username: 'u:x', password: 'hunter2' } } }).then(() => undefined, (e: Error) => e)
  t.ok(err)
  t.notMatch(err!.message, /hunter2/)
  await app.close()
})

const SECRET = 'hunter2-s3cret'

/** Registers with a trace-level logger; returns the error and everything logged. */
async function failedRegister (options: Record<string, unknown>): Promise<{ err: Error & { code?: string } | undefined, logged: string }> {
  let logged = ''
  const stream = new Writable({ write (chunk, _enc, cb) { logged += String(chunk); cb() } })
  const app = Fastify({ logger: { level: 'trace', stream } })
  const err = await app.register(upstreamMetrics, options as never).then(() => undefined, (e: Error) => e)
  await app.close().catch(() => {})
  return { err, logged }
}

t.test('no option error prints a value that could be a secret, and each still names its option', async (t) => {
  const url = `redis://:${SECRET}@127.0.0.1:6379/0`
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ bearerToken: SECRET }, 'bearerToken'],
    [{ password: 12345678 }, 'password'],
    [{ auth: SECRET }, 'auth'],
    [{ auth: { token: SECRET } }, 'auth.token'],
    [{ auth: { check: SECRET } }, 'auth.check'],
    [{ auth: { bearerToken: 12345678 } }, 'auth.bearerToken'],
    [{ auth: { basic: { username: 'prometheus', password: 12345678 } } }, 'auth.basic'],
    [{ auth: { basic: SECRET } }, 'auth.basic'],
    [{ worker: url }, 'worker'],
    [{ worker: { url } }, 'worker.url'],
    [{ worker: { broker: `http://user:${SECRET}@127.0.0.1/0` } }, 'worker.broker'],
    [{ worker: { broker: `redis://user:${SECRET}@127.0.0.1/x` } }, 'worker.broker'],
    [{ worker: { broker: `redis://127.0.0.1/x?password=${SECRET}` } }, 'worker.broker'],
    [{ worker: { queues: [url] } }, 'worker.queues'],
    [{ cache: { password: SECRET } }, 'cache.password'],
    [{ cache: SECRET }, 'cache'],
    [{ db: { url } }, 'db.url'],
    [{ db: url }, 'db'],
    [{ db: { migrations: { connection: url, count: () => ({ applied: 0, unapplied: 0 }), password: SECRET } } }, 'db.migrations.password'],
    [{ db: { migrations: url } }, 'db.migrations'],
    [{ listener: url }, 'listener'],
    [{ cluster: url }, 'cluster'],
    [{ excludePaths: url }, 'excludePaths'],
    [{ latencyBuckets: url }, 'latencyBuckets'],
    [{ cardinalityLimit: url }, 'cardinalityLimit'],
    [{ runtimeMetrics: url }, 'runtimeMetrics'],
    [url as unknown as Record<string, unknown>, 'options']
  ]
  for (const [options, name] of cases) {
    const { err, logged } = await failedRegister(options)
    t.equal(err?.code, 'UPSTREAM_METRICS_INVALID_OPTION', name)
    t.match(err?.message, `option "${name}"`, `${name}: the option is named`)
    for (const [where, text] of [['message', err?.message], ['stack', err?.stack], ['inspected error', inspect(err)], ['log', logged]] as const) {
      t.notMatch(String(text), SECRET, `${name}: not in the ${where}`)
      t.notMatch(String(text), '12345678', `${name}: not in the ${where}`)
    }
  }
})

t.test('values that cannot be secrets are still shown, URLs without their password', async (t) => {
  t.match((await failedRegister({ cardinalityLimit: 1 })).err?.message, /got 1$/)
  t.match((await failedRegister({ countScrape: 1 })).err?.message, /got 1$/)
  t.match((await failedRegister({ path: 'metrics' })).err?.message, /got "metrics"$/)
  t.match((await failedRegister({ namespace: 'a-b' })).err?.message, /got "a-b"$/)
  t.match((await failedRegister({ db: { migrations: { tool: 'flyway', count: () => ({ applied: 0, unapplied: 0 }) } } })).err?.message, /got "flyway"$/)
  t.match((await failedRegister({ worker: { broker: `redis://user:${SECRET}@127.0.0.1/x` } })).err?.message, 'redis://***:***@127.0.0.1/x')
  t.match((await failedRegister({ auth: { check: SECRET } })).err?.message, /got a string$/)
})

t.test('registering twice on one instance fails clearly', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  await t.rejects(async () => { await app.register(upstreamMetrics, { runtimeMetrics: false }) }, { code: 'UPSTREAM_METRICS_ALREADY_REGISTERED' })
  await app.close()
})

t.test('every option and sub-option may be given as undefined, as the typings allow (`?: T | undefined`)', async (t) => {
  const u = undefined
  const base = {
    ...Object.fromEntries(['path', 'namespace', 'latencyBuckets', 'runtimeMetrics', 'excludePaths', 'countScrape', 'cardinalityLimit', 'collectTimeoutMs'].map((name) => [name, u])),
    http: { semconvMetrics: u },
    auth: { bearerToken: 'token', basic: u, check: u },
    listener: { host: u, port: 0 },
    db: { alias: u, defaultSchema: u, models: u, semconvMetrics: u, migrations: { client: u, tool: u, table: u, dir: u, connection: u, count: () => ({ applied: 0, unapplied: 0 }) } },
    cache: { redis: u, redisBackend: u, backend: u },
    otlp: { endpoint: u, headers: u, intervalMs: u, timeoutMs: u, serviceName: u, resourceAttributes: u }
  }
  t.same(resolveOptions({ ...base, auth: u, listener: u, db: u, cache: u, otlp: u, http: u }), resolveOptions({}), 'undefined is the default')
  t.doesNotThrow(() => resolveOptions({ ...base, cluster: { timeoutMs: u } }))
  t.doesNotThrow(() => resolveOptions({ ...base, worker: { broker: u, queues: u, prefix: u } }))
})
