import t from 'tap'
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import upstreamMetrics from '../lib/index'
import { key, parse } from './helpers/metrics'

const responses = (view: string, status = '200'): string => key('django_http_responses_total_by_status_view_method_total', { status, view, method: 'GET' })

t.test('registered inside an encapsulated plugin (fastify-cli\'s app.js), it measures every route of the app, wherever and whenever declared', async (t) => {
  const app = Fastify()
  app.get('/outside', async () => 'root route, declared first')
  // As `fastify start app.js` does: the app is a plain (encapsulated) plugin, the metrics plugin is wrapped in fastify-plugin inside it.
  app.register(async (appJs) => {
    appJs.register(async (early) => { early.get('/early/:id', async () => 'declared before the plugin') }, { prefix: '/v1' })
    appJs.register(fp(async (plugins) => { await plugins.register(upstreamMetrics, { runtimeMetrics: false }) }))
    appJs.register(async (routes) => {
      routes.get('/named', { config: { metrics: { view: 'named-view' } } }, async () => 'n')
      routes.get('/health', { config: { metrics: { exclude: true } } }, async () => 'ok')
      routes.get('/late/:id', async () => 'declared after the plugin')
    }, { prefix: '/v1' })
  })
  app.register(async (sibling) => { sibling.get('/sibling', async () => 'another top-level plugin') })
  t.teardown(() => app.close())
  await app.ready()

  for (const url of ['/outside', '/v1/early/1', '/v1/early/2', '/v1/named', '/v1/health', '/v1/late/3', '/sibling', '/nowhere']) await app.inject(url)
  const m = parse((await app.inject('/metrics')).body)
  t.equal(m.samples.get(responses('/outside')), 1, 'a root route')
  t.equal(m.samples.get(responses('/v1/early/:id')), 2, 'a route of a plugin loaded before it, under its URL template')
  t.equal(m.samples.get(responses('named-view')), 1, 'config.metrics.view')
  t.equal(m.samples.get(responses('/v1/late/:id')), 1, 'a route of a plugin loaded after it')
  t.equal(m.samples.get(responses('/sibling')), 1, 'a route of a sibling plugin')
  t.equal([...m.samples.keys()].filter((k) => k.includes('/v1/health')).length, 0, 'config.metrics.exclude')
  t.equal(m.samples.get(key('django_http_responses_total_by_status_total', { status: '404' })), 1, 'an unrouted request (Fastify\'s root 404 handler)')
  t.equal(m.samples.get(key('django_http_requests_total_by_method_total', { method: 'GET' })), 7 + 1, 'every request but the excluded one, the scrape included')
  t.equal(typeof app.upstreamMetrics.metrics, 'function', 'app.upstreamMetrics is reachable from the root instance')
})

t.test('the scrape route lives in the context it is registered in, with that context\'s prefix', async (t) => {
  const app = Fastify()
  app.register(async (api) => {
    api.register(upstreamMetrics, { runtimeMetrics: false })
    api.get('/hello', async () => 'hi')
  }, { prefix: '/api' })
  t.teardown(() => app.close())
  await app.inject('/api/hello')
  t.equal((await app.inject('/metrics')).statusCode, 404)
  const res = await app.inject('/api/metrics')
  t.equal(res.statusCode, 200)
  t.equal(parse(res.body).samples.get(responses('/api/hello')), 1)
})

t.test('registered twice, in two plugins, it fails and says once is enough', async (t) => {
  const app = Fastify()
  app.register(async (a) => { await a.register(upstreamMetrics, { runtimeMetrics: false }) })
  app.register(async (b) => { await b.register(upstreamMetrics, { runtimeMetrics: false }) })
  const err = await app.ready().then(() => undefined, (e: Error & { code?: string }) => e)
  t.equal(err?.code, 'UPSTREAM_METRICS_ALREADY_REGISTERED')
  t.match(err?.message, /once/)
  await app.close()
})

t.test('Fastify\'s register options and the keys fastify-cli and @fastify/autoload pass along are accepted', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, {
    runtimeMetrics: false,
    logLevel: 'error',
    logSerializers: { req: () => 'r' },
    prefix: '/ignored',
    skipOverride: true
  } as never)
  app.get('/hello', async () => 'hi')
  t.teardown(() => app.close())
  await app.inject('/hello')
  const res = await app.inject('/metrics')
  t.equal(res.statusCode, 200, 'prefix does not move the scrape route: a fastify-plugin plugin runs in the context it is registered in')
  t.equal(parse(res.body).samples.get(responses('/hello')), 1)
})

t.test('as a plain `module.exports = require(\'upstream-metrics\')` under @fastify/autoload, with the options the app passes along', async (t) => {
  // fastify-cli's test helper registers app.js with { skipOverride: true }; the generated app.js hands its options to every plugin.
  const app = Fastify()
  await app.register(upstreamMetrics, { skipOverride: true } as never)
  t.teardown(() => app.close())
  t.equal((await app.inject('/metrics')).statusCode, 200)
})

t.test('typos of the plugin\'s own options are still refused, and a foreign key says where it may come from', async (t) => {
  for (const [options, name] of [[{ namepsace: 'x' }, 'namepsace'], [{ logLevl: 'warn' }, 'logLevl'], [{ databaseUrl: 'postgres://x' }, 'databaseUrl']] as const) {
    const app = Fastify()
    const err = await app.register(upstreamMetrics, options as never).then(() => undefined, (e: Error & { code?: string }) => e)
    await app.close()
    t.equal(err?.code, 'UPSTREAM_METRICS_INVALID_OPTION', name)
    t.match(err?.message, `option "${name}" is not an option`)
    t.match(err?.message, /@fastify\/autoload/, 'the message names the way app options reach the plugin')
    t.match(err?.message, /docs\/apps\.md/)
  }
})
