import t from 'tap'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { Faults } from '../lib/faults'
import { instrumentHttp } from '../lib/http'
import { HTTP_SEMCONV } from '../lib/names'
import { resolveOptions } from '../lib/options'
import { Store } from '../lib/store'
import { key, parse, series } from './helpers/metrics'

const NAME = 'http_server_request_duration_seconds'

class CoverageLapsed extends Error {}

t.test('http.semconvMetrics: validated, off by default', async (t) => {
  t.same(resolveOptions({}).http, { semconvMetrics: false, labels: [] })
  t.same(resolveOptions({ http: { semconvMetrics: true } }).http, { semconvMetrics: true, labels: [] })
  for (const [http, option] of [
    [{ semconvMetrics: 'yes' }, 'http.semconvMetrics'],
    [{ semconv: true }, 'http.semconv'],
    ['on', 'http'],
    [true, 'http']
  ] as const) {
    const err = (() => { try { resolveOptions({ http } as never) } catch (e) { return e as Error & { code: string } } })()
    t.equal(err?.code, 'UPSTREAM_METRICS_INVALID_OPTION', JSON.stringify(http))
    t.match(err?.message, `"${option}"`)
  }
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/x', async () => 'x')
  t.teardown(() => app.close())
  await app.inject('/x')
  t.notMatch((await app.inject('/metrics')).body, /http_server_request_duration|http_request_method/)
})

t.test('http.server.request.duration on /metrics: names, attributes, buckets, values', async (t) => {
  const app = Fastify({ trustProxy: true })
  await app.register(upstreamMetrics, { runtimeMetrics: false, http: { semconvMetrics: true } })
  app.get('/claims/:id', { config: { metrics: { view: 'claim-detail' } } }, async () => ({ ok: true }))
  app.get('/lapsed', async () => { throw new CoverageLapsed('no') })
  app.get('/unavailable', async (_request, reply) => reply.code(503).send('later'))
  app.post('/claims', { schema: { body: { type: 'object', required: ['amount'] } } }, async () => 'ok')
  app.addHttpMethod('PROPFIND')
  app.route({ method: 'PROPFIND', url: '/dav', handler: async () => 'dav' })
  t.teardown(() => app.close())
  await app.inject('/claims/1')
  await app.inject('/claims/2')
  await app.inject({ url: '/claims/3', headers: { 'x-forwarded-proto': 'https' } })
  await app.inject({ method: 'HEAD', url: '/claims/4' })
  await app.inject('/nowhere/5')
  await app.inject('/lapsed')
  await app.inject('/unavailable')
  await app.inject({ method: 'POST', url: '/claims', payload: {} })
  await app.inject({ method: 'PROPFIND', url: '/dav' })

  const text = (await app.inject('/metrics')).body
  const m = parse(text)
  t.equal(m.type.get(NAME), 'histogram')
  t.equal(m.help.get(NAME), 'Duration of HTTP server requests.')
  const counts = series(m, `${NAME}_count`).map((s) => ({ ...s.labels, count: s.value }))
  const rows: Array<Record<string, string | number>> = [
    { http_request_method: 'GET', http_route: '/claims/:id', http_response_status_code: '200', url_scheme: 'http', count: 2 },
    { http_request_method: 'GET', http_route: '/claims/:id', http_response_status_code: '200', url_scheme: 'https', count: 1 },
    { http_request_method: 'HEAD', http_route: '/claims/:id', http_response_status_code: '200', url_scheme: 'http', count: 1 },
    { http_request_method: 'GET', http_response_status_code: '404', url_scheme: 'http', count: 1 }, // no route: no http.route
    { http_request_method: 'GET', http_route: '/lapsed', http_response_status_code: '500', url_scheme: 'http', error_type: 'CoverageLapsed', count: 1 },
    { http_request_method: 'GET', http_route: '/unavailable', http_response_status_code: '503', url_scheme: 'http', error_type: '503', count: 1 },
    { http_request_method: 'POST', http_route: '/claims', http_response_status_code: '400', url_scheme: 'http', error_type: 'Error', count: 1 },
    { http_request_method: '_OTHER', http_route: '/dav', http_response_status_code: '200', url_scheme: 'http', count: 1 },
    { http_request_method: 'GET', http_route: '/metrics', http_response_status_code: '200', url_scheme: 'http', count: 0 }
  ]
  const expected = rows.filter((s) => s.count !== 0)
  const canonical = (rows: Array<Record<string, string | number>>) => rows.map((row) => JSON.stringify(Object.keys(row).sort().map((k) => [k, String(row[k])]))).sort()
  t.same(canonical(counts), canonical(expected), 'the route template, not the django view name; one observation per request')
  const les = series(m, `${NAME}_bucket`).filter((s) => s.labels.http_route === '/lapsed').map((s) => s.labels.le)
  t.same(les, ['0.005', '0.01', '0.025', '0.05', '0.075', '0.1', '0.25', '0.5', '0.75', '1.0', '2.5', '5.0', '7.5', '10.0', '+Inf'])
  const sum = m.samples.get(key(`${NAME}_sum`, { http_request_method: 'GET', http_route: '/claims/:id', http_response_status_code: '200', url_scheme: 'http' }))!
  t.ok(sum > 0 && sum < 10, 'seconds')
  t.equal(m.samples.get(key('django_http_requests_latency_seconds_by_view_method_count', { view: 'claim-detail', method: 'GET' })), 3, 'the django families are unchanged')

  const second = parse((await app.inject('/metrics')).body)
  t.equal(second.samples.get(key(`${NAME}_count`, { http_request_method: 'GET', http_route: '/metrics', http_response_status_code: '200', url_scheme: 'http' })), 1, 'the scrape, once answered')
})

t.test('the family carries its OpenTelemetry identity and typed attributes for OTLP', async (t) => {
  t.same(HTTP_SEMCONV.requestDuration.otel, { name: 'http.server.request.duration', unit: 's' })
  t.equal(HTTP_SEMCONV.requestDuration.name, 'http_server_request_duration_seconds')
  const app = Fastify()
  const store = new Store('', 2000)
  instrumentHttp(app, store, resolveOptions({ http: { semconvMetrics: true } }), new Faults(app.log))
  app.get('/x', async () => 'x')
  app.get('/y', async () => { throw new CoverageLapsed('y') })
  t.teardown(() => app.close())
  await app.inject('/x')
  await app.inject('/y')
  const family = store.families.find((f) => f.spec.otel !== undefined)!
  t.strictSame([...family.series()].map((cell) => cell.attributes), [
    { 'http.request.method': 'GET', 'http.route': '/x', 'http.response.status_code': 200, 'url.scheme': 'http' },
    { 'http.request.method': 'GET', 'http.route': '/y', 'http.response.status_code': 500, 'url.scheme': 'http', 'error.type': 'CoverageLapsed' }
  ], 'dotted keys, an integer status code, absent attributes left out')
})

t.test('the semantic-convention name is never namespaced', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, namespace: 'project', http: { semconvMetrics: true } })
  app.get('/x', async () => 'x')
  t.teardown(() => app.close())
  await app.inject('/x')
  const m = parse((await app.inject('/metrics')).body)
  t.equal(m.samples.get(key(`${NAME}_count`, { http_request_method: 'GET', http_route: '/x', http_response_status_code: '200', url_scheme: 'http' })), 1)
  t.equal(m.samples.get(key('project_django_http_requests_latency_seconds_by_view_method_count', { view: '/x', method: 'GET' })), 1)
})
