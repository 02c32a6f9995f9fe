import t from 'tap'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'

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
    [{ auth: {} }, 'auth'],
    [{ auth: { bearerToken: '' } }, 'auth.bearerToken'],
    [{ auth: { basic: { username: 'a:b', password: 'x' } } }, 'auth.basic'],
    [{ auth: { check: 'x' } }, 'auth.check'],
    [{ listener: { port: 70000 } }, 'listener.port'],
    [{ cluster: 'yes' }, 'cluster'],
    [{ cluster: true, worker: true }, 'worker'],
    [{ unknownThing: true }, 'unknownThing']
  ]
  for (const [options, name] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(upstreamMetrics, options as never) }, { code: 'UPSTREAM_METRICS_INVALID_OPTION', message: new RegExp(`option "${name.replace('.', '\\.')}"`) }, name)
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

t.test('registering twice on one instance fails clearly', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  await t.rejects(async () => { await app.register(upstreamMetrics, { runtimeMetrics: false }) }, { code: 'UPSTREAM_METRICS_ALREADY_REGISTERED' })
  await app.close()
})
