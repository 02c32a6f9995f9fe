// Content negotiation of the scrape: OpenMetrics 1.0 to scrapers that prefer it (Prometheus's default Accept),
// text 0.0.4 otherwise, gzip when asked; a real Prometheus stores the same series from both formats.
import { gunzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import upstreamMetrics from '../lib/index'
import { acceptsGzip, negotiateFormat } from '../lib/negotiation'
import { promtoolCheckMetrics, startPrometheus, type Sample } from './helpers/prometheus'
import { python } from './helpers/python'

/** What Prometheus 2.42 (Debian 12's) sends, and what Prometheus 3 sends. */
const PROMETHEUS_2 = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
const PROMETHEUS_3 = 'application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2'
const OPENMETRICS_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8'
const TEXT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

t.test('the format follows the Accept header and its q-values', async (t) => {
  const cases: Array<[string | undefined, 'text' | 'openmetrics']> = [
    [PROMETHEUS_2, 'openmetrics'],
    [PROMETHEUS_3, 'openmetrics'],
    [undefined, 'text'],
    ['*/*', 'text'],
    ['text/plain', 'text'],
    ['application/openmetrics-text', 'openmetrics'],
    ['Application/OpenMetrics-Text; Version="1.0.0"', 'openmetrics'],
    ['application/openmetrics-text;version=0.0.1', 'openmetrics'],
    ['application/openmetrics-text;version=2.0.0', 'text'],
    ['application/openmetrics-text;q=0', 'text'],
    ['application/openmetrics-text;q=0.4,text/plain;q=0.5', 'text'],
    ['text/plain;q=0.5, application/openmetrics-text;q=0.5', 'openmetrics'],
    ['application/openmetrics-text;q=0.9,text/plain;version=0.0.4', 'text'],
    ['application/openmetrics-text;q=0.9,text/*', 'text'],
    ['application/openmetrics-text;q=0.9,text/plain;version=9.9.9,*/*;q=0.1', 'openmetrics'],
    ['application/openmetrics-text;q=2', 'text'],
    ['application/openmetrics-text;q=0.1234', 'text'],
    ['application/*', 'text']
  ]
  for (const [accept, format] of cases) t.equal(negotiateFormat(accept), format, String(accept))
})

t.test('gzip follows Accept-Encoding and its q-values', async (t) => {
  const cases: Array<[string | undefined, boolean]> = [
    ['gzip', true], ['gzip, deflate, br', true], ['deflate, gzip;q=1.0, *;q=0.5', true], ['x-gzip', true], ['*', true],
    [undefined, false], ['', false], ['identity', false], ['gzip;q=0', false], ['br, *;q=0', false], ['*;q=0.5, gzip;q=0', false], ['GZIP;q=0.001', true]
  ]
  for (const [header, gzip] of cases) t.equal(acceptsGzip(header), gzip, String(header))
})

async function app (t: Test, options: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const fastify = Fastify({ logger: false })
  await fastify.register(upstreamMetrics, { db: false, cache: false, runtimeMetrics: false, countScrape: false, ...options })
  fastify.get('/claims/:id', async () => ({ ok: true }))
  fastify.post('/claims', async () => ({ ok: true }))
  t.teardown(() => fastify.close())
  return fastify
}

t.test('/metrics and the internal listener answer OpenMetrics to Prometheus, text otherwise, gzipped when asked', async (t) => {
  const fastify = await app(t, { listener: { host: '127.0.0.1', port: 0 } })
  await fastify.listen({ host: '127.0.0.1', port: 0 })
  await fastify.inject({ method: 'GET', url: '/claims/1' })
  const routes = [`http://127.0.0.1:${(fastify.server.address() as { port: number }).port}/metrics`, `http://127.0.0.1:${fastify.upstreamMetrics.listenerAddress!.port}/metrics`]
  for (const url of routes) {
    const om = await fetch(url, { headers: { accept: PROMETHEUS_2 } })
    t.equal(om.headers.get('content-type'), OPENMETRICS_TYPE, `${url}: OpenMetrics for Prometheus`)
    t.equal(om.headers.get('content-encoding'), 'gzip', 'gzipped (fetch asks for it)')
    t.match(om.headers.get('vary'), /Accept-Encoding/)
    const omText = await om.text()
    t.ok(omText.endsWith('\n# EOF\n'))
    t.match(omText, '# TYPE django_http_requests_total_by_method counter\ndjango_http_requests_total_by_method_total{method="GET"} 1.0\ndjango_http_requests_total_by_method_created{method="GET"} ')

    const plain = await fetch(url)
    t.equal(plain.headers.get('content-type'), TEXT_TYPE, `${url}: text for */*`)
    const text = await plain.text()
    t.match(text, '# TYPE django_http_requests_total_by_method_total counter\ndjango_http_requests_total_by_method_total{method="GET"} 1.0\n')
    t.equal(promtoolCheckMetrics(text).output, '', 'promtool is silent on the text answer')
  }
  const injected = await fastify.inject({ method: 'GET', url: '/metrics' })
  t.equal(injected.headers['content-encoding'], undefined, 'no gzip unless asked')
  const zipped = await fastify.inject({ method: 'GET', url: '/metrics', headers: { 'accept-encoding': 'gzip' } })
  t.equal(gunzipSync(zipped.rawPayload).toString(), injected.body, 'the gzipped answer is the same text')
  t.equal(await fastify.upstreamMetrics.metrics(), injected.body, 'metrics() keeps returning text 0.0.4')
})

t.test('openMetrics: false always answers text 0.0.4; createdSeries: false writes no _created', async (t) => {
  const fastify = await app(t, { openMetrics: false, createdSeries: false })
  await fastify.inject({ method: 'GET', url: '/claims/1' })
  const reply = await fastify.inject({ method: 'GET', url: '/metrics', headers: { accept: PROMETHEUS_2 } })
  t.equal(reply.headers['content-type'], TEXT_TYPE)
  t.notMatch(reply.body, /_created|# EOF/)
})

t.test('the OpenMetrics answer passes prometheus_client\'s strict OpenMetrics parser', async (t) => {
  const fastify = await app(t)
  fastify.upstreamMetrics.meter.createCounter('shop.orders').add(2, { 'shop.region': 'eu' })
  fastify.upstreamMetrics.meter.createHistogram('shop.checkout.duration', { unit: 's' }).record(0.2)
  await fastify.inject({ method: 'GET', url: '/claims/1' })
  const reply = await fastify.inject({ method: 'GET', url: '/metrics', headers: { accept: PROMETHEUS_3 } })
  t.equal(reply.headers['content-type'], OPENMETRICS_TYPE)
  const families = (await python(['-c', [
    'import sys',
    'from prometheus_client.openmetrics.parser import text_string_to_metric_families',
    'for f in text_string_to_metric_families(sys.stdin.read()): print(f.name, f.type, f.unit or "-")'
  ].join('\n')], reply.body)).trim().split('\n')
  t.ok(families.includes('django_http_requests_total_by_method counter -'), 'the inner-total counter family')
  t.ok(families.includes('shop_orders counter -'), "the app's counter family")
  t.ok(families.includes('shop_checkout_duration_seconds histogram seconds'), "the app's histogram, with its unit")
})

/** `name{labels}` (without job and instance) → value, of every series a job's last scrape stored. */
function stored (samples: Sample[]): Map<string, string> {
  const series = new Map<string, string>()
  for (const { metric, value } of samples) {
    const { __name__: name, job, instance, ...labels } = metric
    if (['up', 'scrape_duration_seconds', 'scrape_samples_scraped', 'scrape_samples_post_metric_relabeling', 'scrape_series_added'].includes(name!)) continue
    series.set(`${name}${JSON.stringify(Object.entries(labels).sort())}`, value[1])
  }
  return series
}

t.test('a real Prometheus stores the same series (names, labels, values) from the OpenMetrics and the text answer', async (t) => {
  const fastify = await app(t, { path: false, excludePaths: ['/metrics', '/metrics-text'] })
  // One app, two routes: /metrics negotiates, /metrics-text never sees the Accept header.
  const answered: Record<string, string[]> = { '/metrics': [], '/metrics-text': [] }
  fastify.get('/metrics', fastify.upstreamMetrics.handler)
  fastify.get('/metrics-text', async (request, reply) => {
    delete request.headers.accept
    await fastify.upstreamMetrics.handler(request, reply)
  })
  fastify.addHook('onSend', async (request, reply) => { answered[request.url]?.push(String(reply.getHeader('content-type'))) })
  fastify.upstreamMetrics.meter.createCounter('shop.orders').add(2, { 'shop.region': 'eu' })
  fastify.upstreamMetrics.meter.createHistogram('shop.checkout.duration', { unit: 's' }).record(0.2)
  await fastify.listen({ host: '127.0.0.1', port: 0 })
  const target = `127.0.0.1:${(fastify.server.address() as { port: number }).port}`
  for (const path of ['/claims/1', '/claims/2', '/nope']) await fetch(`http://${target}${path}`)
  await fetch(`http://${target}/claims`, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } })
  const trafficDone = Date.now()

  const prometheus = await startPrometheus(t, {
    global: { scrape_interval: '1s', scrape_timeout: '1s' },
    scrape_configs: [
      { job_name: 'openmetrics', metrics_path: '/metrics', static_configs: [{ targets: [target] }] },
      { job_name: 'text', metrics_path: '/metrics-text', static_configs: [{ targets: [target] }] }
    ]
  })
  const at = Math.max(await prometheus.scrapedAfter('openmetrics', trafficDone, 1, 30_000), await prometheus.scrapedAfter('text', trafficDone, 1, 30_000)) / 1000
  t.ok(answered['/metrics']!.length > 0 && answered['/metrics']!.every((type) => type === OPENMETRICS_TYPE), 'Prometheus got OpenMetrics from /metrics')
  t.ok(answered['/metrics-text']!.length > 0 && answered['/metrics-text']!.every((type) => type === TEXT_TYPE), 'and text from /metrics-text')

  const targets = await (await fetch(`${prometheus.base}/api/v1/targets`)).json() as { data: { activeTargets: Array<{ scrapePool: string, health: string, lastError: string }> } }
  for (const active of targets.data.activeTargets) t.same([active.scrapePool, active.health, active.lastError], [active.scrapePool, 'up', ''], `${active.scrapePool}: up, no scrape error`)
  const ups = await prometheus.query('up', at)
  t.same(ups.map((s) => s.value[1]), ['1', '1'], 'up == 1 for both')

  const openMetrics = stored(await prometheus.query('{job="openmetrics"}', at))
  const text = stored(await prometheus.query('{job="text"}', at))
  t.same([...openMetrics].sort(), [...text].sort(), 'the same series and values')
  for (const name of [
    'django_http_requests_total_by_method_total[["method","GET"]]', 'django_http_requests_total_by_method_created[["method","GET"]]',
    'django_http_requests_latency_seconds_by_view_method_bucket[["le","+Inf"],["method","GET"],["view","/claims/:id"]]',
    'django_http_requests_latency_seconds_by_view_method_created[["method","GET"],["view","/claims/:id"]]',
    'shop_orders_total[["shop_region","eu"]]', 'shop_orders_created[["shop_region","eu"]]', 'shop_checkout_duration_seconds_count[]'
  ]) t.ok(openMetrics.has(name), `stored: ${name}`)
  t.ok(Number(openMetrics.get('django_http_requests_total_by_method_created[["method","GET"]]')) > 1.7e9, '_created holds seconds since the epoch')

  // The metadata shows which parser read each: OpenMetrics names the counter family without _total.
  const metadata = async (job: string): Promise<string[]> => {
    const answer = await (await fetch(`${prometheus.base}/api/v1/targets/metadata?match_target=${encodeURIComponent(`{job="${job}"}`)}`)).json() as { data: Array<{ metric: string }> }
    return answer.data.map((m) => m.metric)
  }
  t.ok((await metadata('openmetrics')).includes('django_http_requests_total_by_method'), 'OpenMetrics family name in the metadata')
  t.ok((await metadata('text')).includes('django_http_requests_total_by_method_total'), 'text family name in the metadata')
})
