import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { metrics } from '@opentelemetry/api'
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import upstreamMetrics from '../lib/index'
import { request } from 'node:http'
import { key, parse, scrape, series } from './helpers/metrics'
import { get } from './helpers/net'

class PaymentDeclined extends Error {}

function demoApp (): FastifyInstance {
  const app = Fastify()
  // Declared before the plugin: one registration must still cover it.
  app.get('/patients/:id', async (request) => ({ id: (request.params as { id: string }).id }))
  app.register(upstreamMetrics, { runtimeMetrics: false })
  app.post('/patients', {
    schema: { body: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } }
  }, async (_request, reply) => reply.code(201).send({ created: true }))
  app.get('/named', { config: { metrics: { view: 'patient-list' } } }, async () => ({ ok: true }))
  app.get('/boom', async () => { throw new TypeError('bad type') })
  app.get('/reject', async () => await Promise.reject(new PaymentDeclined('no')))
  app.get('/stream', async (_request, reply) => reply.type('text/plain').send(Readable.from(['a', 'b', 'c'])))
  app.get('/latin1', async (_request, reply) => reply.type('text/plain; charset=ISO-8859-1').send('caf\xe9'))
  app.get('/empty', async (_request, reply) => reply.code(204).send())
  return app
}

t.test('every django HTTP metric is exact after a known sequence of requests', async (t) => {
  const app = demoApp()
  t.teardown(() => app.close())
  const responses = [
    await app.inject('/patients/1'),
    await app.inject('/patients/2'),
    await app.inject({ method: 'HEAD', url: '/patients/1' }),
    await app.inject('/nope?ssn=123-45-6789'),
    await app.inject('/boom'),
    await app.inject('/reject'),
    await app.inject('/stream'),
    await app.inject({ method: 'POST', url: '/patients', payload: { name: 'Ada' }, headers: { 'x-requested-with': 'XMLHttpRequest' } }),
    await app.inject({ method: 'POST', url: '/patients', payload: {} }),
    await app.inject('/named'),
    await app.inject('/latin1'),
    await app.inject('/empty'),
    await app.inject({ method: 'DELETE', url: '/patients/1' }),
    await app.inject({ method: 'PROPFIND', url: '/patients/1' })
  ]
  t.same(responses.map((r) => r.statusCode), [200, 200, 200, 404, 500, 500, 200, 201, 400, 200, 200, 204, 404, 404])

  const scraped = await app.inject('/metrics')
  t.equal(scraped.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
  const m = parse(scraped.body)
  const v = (name: string, labels?: Record<string, string>) => m.samples.get(key(name, labels))

  // The scrape is counted on the request side only while it runs (django quirk 2).
  t.equal(v('django_http_requests_before_middlewares_total'), 15)
  t.equal(v('django_http_responses_before_middlewares_total'), 14)
  t.equal(v('django_http_requests_unknown_latency_total'), 0)
  t.equal(v('django_http_requests_unknown_latency_including_middlewares_total'), 0)
  t.equal(v('django_http_requests_latency_including_middlewares_seconds_count'), 14)

  t.same(series(m, 'django_http_requests_total_by_method_total').sort(byJson), [
    { labels: { method: 'GET' }, value: 10 },
    { labels: { method: 'HEAD' }, value: 1 },
    { labels: { method: 'POST' }, value: 2 },
    { labels: { method: 'DELETE' }, value: 1 },
    { labels: { method: '<invalid method>' }, value: 1 }
  ].sort(byJson), 'by method')
  t.same(series(m, 'django_http_requests_total_by_transport_total'), [{ labels: { transport: 'http' }, value: 15 }])

  const byView = Object.fromEntries(series(m, 'django_http_requests_total_by_view_transport_method_total')
    .map((s) => [`${s.labels.view} ${s.labels.method} ${s.labels.transport}`, s.value]))
  t.same(byView, {
    '/patients/:id GET http': 2,
    '/patients/:id HEAD http': 1,
    '/boom GET http': 1,
    '/reject GET http': 1,
    '/stream GET http': 1,
    '/patients POST http': 2,
    'patient-list GET http': 1,
    '/latin1 GET http': 1,
    '/empty GET http': 1,
    'prometheus-django-metrics GET http': 1
  }, 'unmatched requests are absent from the by-view counter, as in django')

  const expectedStatus: Record<string, number> = {}
  for (const r of responses) expectedStatus[r.statusCode] = (expectedStatus[r.statusCode] ?? 0) + 1
  t.same(Object.fromEntries(series(m, 'django_http_responses_total_by_status_total').map((s) => [s.labels.status, s.value])), expectedStatus)

  const bySvm = Object.fromEntries(series(m, 'django_http_responses_total_by_status_view_method_total')
    .map((s) => [`${s.labels.status} ${s.labels.view} ${s.labels.method}`, s.value]))
  t.same(bySvm, {
    '200 /patients/:id GET': 2,
    '200 /patients/:id HEAD': 1,
    '404 <unnamed view> GET': 1,
    '500 /boom GET': 1,
    '500 /reject GET': 1,
    '200 /stream GET': 1,
    '201 /patients POST': 1,
    '400 /patients POST': 1,
    '200 patient-list GET': 1,
    '200 /latin1 GET': 1,
    '204 /empty GET': 1,
    '404 <unnamed view> DELETE': 1,
    '404 <unnamed view> <invalid method>': 1
  })

  const latencyCounts = Object.fromEntries(series(m, 'django_http_requests_latency_seconds_by_view_method_count')
    .map((s) => [`${s.labels.view} ${s.labels.method}`, s.value]))
  t.same(latencyCounts, {
    '/patients/:id GET': 2,
    '/patients/:id HEAD': 1,
    '<unnamed view> GET': 1,
    '/boom GET': 2,
    '/reject GET': 2,
    '/stream GET': 1,
    '/patients POST': 3,
    'patient-list GET': 1,
    '/latin1 GET': 1,
    '/empty GET': 1,
    '<unnamed view> DELETE': 1,
    '<unnamed view> PROPFIND': 1
  }, 'exceptions are observed twice and the histogram keeps the raw method (django quirks)')

  t.equal(v('django_http_ajax_requests_total'), 1)
  const requestBytes = responses.reduce((sum, r) => sum + Number(r.raw.req.headers['content-length'] ?? 0), 0)
  t.equal(v('django_http_requests_body_total_bytes_count'), 15)
  t.equal(v('django_http_requests_body_total_bytes_sum'), requestBytes)

  const nonStreaming = responses.filter((r) => r.headers['content-length'] !== undefined || r.statusCode === 204)
  t.equal(v('django_http_responses_body_total_bytes_count'), nonStreaming.length)
  t.equal(v('django_http_responses_body_total_bytes_sum'), nonStreaming.reduce((s, r) => s + Number(r.headers['content-length'] ?? 0), 0))
  t.equal(v('django_http_responses_streaming_total'), 1)
  t.same(Object.fromEntries(series(m, 'django_http_responses_total_by_charset_total').map((s) => [s.labels.charset, s.value])), { 'utf-8': 13, 'ISO-8859-1': 1 })

  t.same(Object.fromEntries(series(m, 'django_http_exceptions_total_by_type_total').map((s) => [s.labels.type, s.value])), { TypeError: 1, PaymentDeclined: 1, Error: 1 })
  t.same(Object.fromEntries(series(m, 'django_http_exceptions_total_by_view_total').map((s) => [s.labels.view, s.value])), { '/boom': 1, '/reject': 1, '/patients': 1 })

  // Values left out: a `_created` timestamp may hold any digits.
  const withoutValues = scraped.body.split('\n').map((line) => line.startsWith('#') ? line : line.replace(/ \S+$/, '')).join('\n')
  t.notMatch(withoutValues, /ssn|6789|\/nope|\/patients\/1/, 'no raw URL, query string or id in any label')
  t.notMatch(scraped.body, /target_info|otel_scope/, 'no OpenTelemetry resource or scope labels')

  const after = await scrape(app)
  t.equal(after.samples.get(key('django_http_responses_before_middlewares_total')), 15, 'the previous scrape is counted once it responded')
})

function byJson (a: unknown, b: unknown): number {
  return JSON.stringify(a) < JSON.stringify(b) ? -1 : 1
}

t.test('HELP, TYPE, buckets and number formats match prometheus_client byte for byte', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/x', async () => 'x')
  t.teardown(() => app.close())
  await app.inject('/x')
  const text = (await app.inject('/metrics')).body
  const m = parse(text)
  t.equal(m.help.get('django_http_requests_total_by_method_total'), 'Count of requests by method.')
  t.equal(m.type.get('django_http_requests_total_by_method_total'), 'counter')
  t.equal(m.type.get('django_http_requests_latency_seconds_by_view_method'), 'histogram')
  t.equal(m.help.get('django_http_requests_latency_including_middlewares_seconds'), 'Histogram of requests processing time (including middleware processing time).')
  const les = [...text.matchAll(/^django_http_requests_latency_seconds_by_view_method_bucket\{le="([^"]+)",method="GET",view="\/x"\}/gm)].map((x) => x[1])
  t.same(les, ['0.01', '0.025', '0.05', '0.075', '0.1', '0.25', '0.5', '0.75', '1.0', '2.5', '5.0', '7.5', '10.0', '25.0', '50.0', '75.0', '+Inf'])
  const bodyLes = [...text.matchAll(/^django_http_responses_body_total_bytes_bucket\{le="([^"]+)"\}/gm)].map((x) => x[1])
  t.equal(bodyLes.length, 32)
  t.same(bodyLes.slice(0, 3), ['0.0', '1.0', '2.0'])
  t.same(bodyLes.slice(20, 24), ['524288.0', '1.048576e+06', '2.097152e+06', '4.194304e+06'])
  t.same(bodyLes.slice(-2), ['5.36870912e+08', '+Inf'])
  t.match(text, /^django_http_requests_total_by_method_total\{method="GET"\} 2\.0$/m, 'values in Python float notation')
  t.match(text, /^django_http_responses_body_total_bytes_bucket\{le="0\.0"\} 0\.0\n/m)
  t.match(text, /_bucket\{le="0\.01",method="GET",view="\/x"\}/, 'le sorted among the labels, as Python does')
})

t.test('options: namespace, latency buckets, path', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, namespace: 'project', latencyBuckets: [0.5, 2], path: '/internal/metrics' })
  app.get('/x', async () => 'x')
  t.teardown(() => app.close())
  await app.inject('/x')
  t.equal((await app.inject('/metrics')).statusCode, 404)
  const m = await (async () => parse((await app.inject('/internal/metrics')).body))()
  t.equal(m.samples.get(key('project_django_http_requests_total_by_method_total', { method: 'GET' })), 3, '/x, the 404 on /metrics and the scrape')
  t.same(series(m, 'project_django_http_requests_latency_seconds_by_view_method_bucket').filter((s) => s.labels.view === '/x').map((s) => s.labels.le), ['0.5', '2.0', '+Inf'])
  t.notOk([...m.samples.keys()].some((k) => k.startsWith('django_')), 'every django metric is prefixed')
})

t.test('path false: the app mounts the exposed handler itself', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, path: false })
  app.get('/custom-metrics', app.upstreamMetrics.handler)
  t.teardown(() => app.close())
  t.equal((await app.inject('/metrics')).statusCode, 404)
  const response = await app.inject('/custom-metrics')
  t.equal(response.statusCode, 200)
  t.match(response.body, /django_http_requests_before_middlewares_total 2\.0/)
})

t.test('business metrics through the exposed meter appear on the same /metrics', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  t.teardown(() => app.close())
  const drift = app.upstreamMetrics.meter.createCounter('upstream_drift_detections', { description: 'Drift detections.' })
  const delivery = app.upstreamMetrics.meter.createHistogram('upstream_alert_delivery_seconds', { description: 'Alert delivery time.', advice: { explicitBucketBoundaries: [1, 5] } })
  drift.add(2, { detector: 'payer' })
  drift.add(1, { detector: 'payer' })
  delivery.record(3)
  const m = await scrape(app)
  t.equal(m.samples.get(key('upstream_drift_detections_total', { detector: 'payer' })), 3)
  t.equal(m.type.get('upstream_drift_detections_total'), 'counter')
  t.equal(m.samples.get(key('upstream_alert_delivery_seconds_bucket', { le: '5.0' })), 1)
  t.equal(m.samples.get(key('upstream_alert_delivery_seconds_count')), 1)
})

t.test('the global OpenTelemetry meter provider is left alone', async (t) => {
  const before = metrics.getMeterProvider()
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  t.teardown(() => app.close())
  t.equal(metrics.getMeterProvider(), before)
  metrics.getMeter('global-app').createCounter('global_only_counter').add(1)
  t.notMatch((await app.inject('/metrics')).body, /global_only_counter/)
})

t.test('one copy of @opentelemetry/sdk-metrics in the tree (the exporter pins it)', async (t) => {
  const found = execFileSync('find', [join(__dirname, '..', 'node_modules'), '-path', '*/@opentelemetry/sdk-metrics/package.json'], { encoding: 'utf8' }).trim().split('\n')
  t.equal(found.length, 1, found.join(', '))
})

t.test('runtime metrics: on by default, can be switched off', async (t) => {
  const on = Fastify()
  await on.register(upstreamMetrics)
  t.teardown(() => on.close())
  const m = await scrape(on)
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'process_open_fds', 'process_max_fds', 'nodejs_heap_used_bytes']) {
    t.ok((m.samples.get(name) ?? 0) > 0, `${name} > 0`)
  }
  t.equal(m.type.get('process_cpu_seconds_total'), 'counter')
  t.ok(Math.abs(m.samples.get('process_start_time_seconds')! - (Date.now() / 1000 - process.uptime())) < 5, 'start time is this process start')
  t.ok(series(m, 'nodejs_heap_space_used_bytes').length > 0)
  let garbage: unknown[] = []
  let kinds = new Set<string>()
  for (let round = 0; round < 50 && !kinds.has('minor'); round++) {
    for (let i = 0; i < 200_000; i++) garbage.push({ i })
    garbage = []
    await new Promise((resolve) => setImmediate(resolve))
    kinds = new Set(series(await scrape(on), 'nodejs_gc_duration_seconds_count').map((s) => s.labels.kind!))
  }
  t.ok(kinds.has('minor'), `scavenges are labelled kind="minor" (saw ${[...kinds].join(', ')})`)
  t.notOk(kinds.has('other'), 'every GC kind Node reports has its name')

  const off = Fastify()
  await off.register(upstreamMetrics, { runtimeMetrics: false })
  t.teardown(() => off.close())
  const m2 = await scrape(off)
  t.notOk([...m2.samples.keys()].some((k) => k.startsWith('process_') || k.startsWith('nodejs_')))
})

t.test('label values are escaped per the text format', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/q', { config: { metrics: { view: 'say "hi"\\now\nplease' } } }, async () => 'x')
  t.teardown(() => app.close())
  await app.inject('/q')
  const text = (await app.inject('/metrics')).body
  t.match(text, 'view="say \\"hi\\"\\\\now\\nplease"')
  const m = parse(text)
  t.equal(series(m, 'django_http_requests_total_by_view_transport_method_total').find((s) => s.labels.view === 'say "hi"\\now\nplease')?.value, 1)
})

t.test('routes in encapsulated plugins with prefixes are labelled with their full template', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  await app.register(async (child) => { child.get('/claims/:claimId', async () => 'ok') }, { prefix: '/v1' })
  t.teardown(() => app.close())
  await app.inject('/v1/claims/77')
  const m = await scrape(app)
  t.equal(m.samples.get(key('django_http_requests_total_by_view_transport_method_total', { view: '/v1/claims/:claimId', transport: 'http', method: 'GET' })), 1)
})

t.test('through a real listening server: exact values, streamed and HEAD responses included', async (t) => {
  const app = demoApp()
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const statuses = []
  for (const path of ['/patients/7', '/stream', '/boom', '/nope', '/empty']) statuses.push((await get(`${base}${path}`)).status)
  t.same(statuses, [200, 200, 500, 404, 204])
  const head = await new Promise<number>((resolve, reject) => {
    const req = request(`${base}/patients/7`, { method: 'HEAD', agent: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)) })
    req.on('error', reject)
    req.end()
  })
  t.equal(head, 200)
  const m = parse((await get(`${base}/metrics`)).body)
  t.equal(m.samples.get(key('django_http_requests_before_middlewares_total')), 7)
  t.equal(m.samples.get(key('django_http_responses_before_middlewares_total')), 6)
  t.equal(m.samples.get(key('django_http_responses_streaming_total')), 1)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '200', view: '/patients/:id', method: 'HEAD' })), 1)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '404', view: '<unnamed view>', method: 'GET' })), 1)
  t.equal(m.samples.get(key('django_http_exceptions_total_by_view_total', { view: '/boom' })), 1)
  t.equal(m.samples.get(key('django_http_requests_latency_seconds_by_view_method_count', { view: '/boom', method: 'GET' })), 2)
  t.equal(m.samples.get(key('django_http_responses_body_total_bytes_count')), 5, 'every response but the stream')
})
