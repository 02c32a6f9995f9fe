import { Writable } from 'node:stream'
import t from 'tap'
import Fastify, { type FastifyRequest } from 'fastify'
import upstreamMetrics from '../lib/index'
import { parse, series } from './helpers/metrics'
import { promtoolCheckMetrics } from './helpers/prometheus'

// http.labels: django-prometheus's label_metric extension on the families labelled by view.

const VIEW_FAMILIES = [
  'django_http_requests_total_by_view_transport_method_total',
  'django_http_requests_latency_seconds_by_view_method_count',
  'django_http_responses_total_by_status_view_method_total',
  'django_http_exceptions_total_by_view_total'
]

async function appWith (options: Record<string, unknown>, logs: string[] = []) {
  const stream = new Writable({ write (chunk, _encoding, done) { logs.push(String(chunk)); done() } })
  const app = Fastify({ logger: { level: 'error', stream } })
  await app.register(upstreamMetrics, { runtimeMetrics: false, countScrape: false, ...options })
  app.get('/claims/:id', async () => 'ok')
  app.get('/boom', async () => { throw new Error('boom') })
  return app
}

const tenant = (request: FastifyRequest): string | undefined => request.headers['x-tenant'] as string | undefined

t.test('each view family carries the custom labels, with the value of each request; the others do not', async (t) => {
  const app = await appWith({ http: { labels: { tenant, api_version: (request: FastifyRequest) => request.url.startsWith('/boom') ? 2 : 1 } } })
  for (const name of ['acme', 'acme', 'globex']) await app.inject({ url: '/claims/1', headers: { 'x-tenant': name } })
  await app.inject({ url: '/claims/1' })
  await app.inject({ url: '/boom', headers: { 'x-tenant': 'acme' } })
  const exposition = parse((await app.inject('/metrics')).body)
  await app.close()
  for (const family of VIEW_FAMILIES) {
    const values = series(exposition, family).filter((s) => s.labels.view === '/claims/:id')
      .map((s) => `${s.labels.tenant ?? '-'}/${s.labels.api_version ?? '-'}=${s.value}`).sort()
    if (family.startsWith('django_http_exceptions')) {
      t.same(series(exposition, family).map((s) => [s.labels.view, s.labels.tenant, s.labels.api_version, s.value]), [['/boom', 'acme', '2', 1]], family)
    } else {
      t.same(values, ['/1=1', 'acme/1=2', 'globex/1=1'], `${family}: by tenant, a request without one is the empty value`)
    }
  }
  for (const s of series(exposition, 'django_http_responses_total_by_status_total')) t.same(Object.keys(s.labels), ['status'], 'other families keep their labels')
  t.equal(series(exposition, 'django_http_exceptions_total_by_type_total')[0]?.labels.tenant, undefined)
  t.same(promtoolCheckMetrics((await (async () => {
    const again = await appWith({ http: { labels: { tenant } } })
    await again.inject({ url: '/claims/1', headers: { 'x-tenant': 'acme' } })
    const text = (await again.inject('/metrics')).body
    await again.close()
    return text
  })())), { status: 0, output: '' }, 'promtool check metrics is silent')
})

t.test('values are bounded and sanitised; a throwing function never breaks the request', async (t) => {
  const logs: string[] = []
  const values: unknown[] = ['ok-1.2/x@y:z+w', 'has space', 'x'.repeat(101), { id: 1 }, 7, true, null, 'é']
  const app = await appWith({
    http: {
      labels: {
        tenant: (request: FastifyRequest) => values[Number(request.headers['x-i'])],
        broken: () => { throw new Error('label function failed') }
      }
    }
  }, logs)
  for (let n = 0; n < values.length; n++) t.equal((await app.inject({ url: '/claims/1', headers: { 'x-i': String(n) } })).statusCode, 200, 'the request is answered')
  const exposition = parse((await app.inject('/metrics')).body)
  await app.close()
  const seen = series(exposition, 'django_http_responses_total_by_status_view_method_total')
  t.same(Object.fromEntries(seen.map((s) => [s.labels.tenant, s.value])), { 'ok-1.2/x@y:z+w': 1, other: 4, 7: 1, true: 1, '': 1 }, 'a value outside [A-Za-z0-9_./@:+-]{0,100} is other')
  t.ok(seen.every((s) => s.labels.broken === 'other'), 'a throwing function gives other')
  t.equal(logs.filter((l) => l.includes('label function failed')).length, 1, 'the failure is logged once per interval')
})

t.test('the cardinality limit bounds the series; totals stay exact', async (t) => {
  const app = await appWith({ cardinalityLimit: 5, http: { labels: { tenant } } })
  for (let n = 0; n < 20; n++) await app.inject({ url: '/claims/1', headers: { 'x-tenant': `t${n}` } })
  const exposition = parse((await app.inject('/metrics')).body)
  await app.close()
  for (const family of ['django_http_responses_total_by_status_view_method_total', 'django_http_requests_total_by_view_transport_method_total']) {
    const all = series(exposition, family)
    t.equal(all.length, 5, `${family}: 4 series and the overflow one`)
    t.equal(all.reduce((sum, s) => sum + s.value, 0), 20, `${family}: every request counted`)
    t.equal(all.find((s) => s.labels.otel_metric_overflow === 'true')?.value, 16)
  }
})
