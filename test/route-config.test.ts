// A route's `config.metrics` is checked like the plugin's options: a wrong one fails the route's
// declaration, naming the route and the key; one declared before the plugin is reported and left out.
import { Writable } from 'node:stream'
import t from 'tap'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { key, parse } from './helpers/metrics'

const WRONG: Array<[string, unknown, RegExp]> = [
  ['a number as view', { view: 42 }, /option "config\.metrics\.view" of route "GET \/x" must be a non-empty string of at most 200 characters; got 42/],
  ['an empty view', { view: '' }, /config\.metrics\.view" of route "GET \/x" must be a non-empty string/],
  ['a view too long', { view: 'v'.repeat(201) }, /config\.metrics\.view" of route "GET \/x"/],
  ['a string as exclude', { exclude: 'yes' }, /option "config\.metrics\.exclude" of route "GET \/x" must be true or false; got a string/],
  ['a misspelt key', { veiw: 'x' }, /option "config\.metrics\.veiw" of route "GET \/x" is not a route option \(view, exclude\)/],
  ['not an object', 'x', /option "config\.metrics" of route "GET \/x" must be an object with view or exclude; got a string/]
]

for (const [what, metrics, message] of WRONG) {
  t.test(`a route declared after the plugin with ${what} fails its declaration`, async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(upstreamMetrics, { runtimeMetrics: false })
    const err = t.throws(() => app.get('/x', { config: { metrics: metrics as never } }, async () => 'x')) as Error & { code?: string }
    t.match(err.message, message)
    t.equal(err.code, 'UPSTREAM_METRICS_INVALID_OPTION')
  })
}

t.test('a valid config.metrics is accepted, in a child context too', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  await app.register(async (child) => {
    child.get('/named', { config: { metrics: { view: 'named-view' } } }, async () => 'ok')
    t.throws(() => child.get('/bad', { config: { metrics: { view: 7 as never } } }, async () => 'x'), /of route "GET \/bad"/)
  })
  app.get('/off', { config: { metrics: { exclude: true } } }, async () => 'ok')
  await app.inject('/named')
  await app.inject('/off')
  const metrics = parse((await app.inject('/metrics')).body)
  t.equal(metrics.samples.get(key('django_http_responses_total_by_status_view_method_total', { method: 'GET', status: '200', view: 'named-view' })), 1)
  t.equal(metrics.samples.get(key('django_http_responses_total_by_status_view_method_total', { method: 'GET', status: '200', view: '/off' })), undefined)
})

t.test('a wrong config.metrics on a route declared before the plugin is reported once and left out; the request is measured', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } })
  const app = Fastify({ logger: { level: 'warn', stream } })
  t.teardown(() => app.close())
  app.get('/early', { config: { metrics: { view: 42 as never } } }, async () => 'early')
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  for (let i = 0; i < 3; i++) t.equal((await app.inject('/early')).statusCode, 200)
  const metrics = parse((await app.inject('/metrics')).body)
  t.equal(metrics.samples.get(key('django_http_responses_total_by_status_view_method_total', { method: 'GET', status: '200', view: '/early' })), 3, 'measured under its URL template')
  const reported = lines.filter((l) => l.includes('config.metrics.view'))
  t.equal(reported.length, 1, 'reported once')
  t.match(reported[0], /of route \\"GET \/early\\" must be a non-empty string/)
})
