// /metrics is valid for promtool and for a real Prometheus whatever the app records on its own
// meter, and the demo's default scrape (real PostgreSQL, migration gauges) passes promtool silently.
import t from 'tap'
import Fastify from 'fastify'
import IORedis from 'ioredis'
import upstreamMetrics from '../lib/index'
// @ts-expect-error the traffic generator is plain JavaScript
import { generateTraffic } from '../example/traffic.mjs'
import { freePort } from './helpers/net'
import { parse } from './helpers/metrics'
import { promtoolCheckMetrics, startPrometheus, startProcess } from './helpers/prometheus'
import { python } from './helpers/python'
import { waitFor } from './helpers/wait'

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const LOCAL_REDIS_URL = 'redis://127.0.0.1:6379/0'

t.test('bad names on the app meter: promtool prints nothing and a real Prometheus keeps the target up', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(upstreamMetrics)
  app.get('/claims', async () => 'ok')
  const meter = app.upstreamMetrics.meter
  meter.createCounter('shop.requests').add(1, { 'http.method': 'GET', http_method: 'POST' })
  meter.createCounter('shop.events').add(1, { '1st': 'a', __name__: 'x', quantile: '0.5', le: '1' })
  meter.createHistogram('shop.latency', { unit: 's' }).record(0.3, { le: 'fast' })
  meter.createCounter('django_http_ajax_requests').add(3)
  meter.createCounter('django_db_query').add(3)
  meter.createHistogram('django_http_requests_latency_seconds_by_view_method').record(1, { view: '/claims', method: 'GET' })
  meter.createGauge('django_http_requests_body_total_bytes_sum').record(5)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const target = `127.0.0.1:${(app.server.address() as { port: number }).port}`
  for (let i = 0; i < 3; i++) await fetch(`http://${target}/claims`)

  const text = await (await fetch(`http://${target}/metrics`)).text()
  t.doesNotThrow(() => parse(text), 'every label name valid and unique')
  const lint = promtoolCheckMetrics(text)
  t.equal(lint.output, '', 'promtool check metrics prints nothing')
  t.equal(lint.status, 0)

  const prometheus = await startPrometheus(t, {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    scrape_configs: [{ job_name: 'app', static_configs: [{ targets: [target] }] }]
  })
  const has = async (expr: string) => (await prometheus.query(expr)).length > 0
  await waitFor('a scrape with the django series', async () => await has('django_http_requests_total_by_view_transport_method_total{view="/claims"}'), { timeoutMs: 30_000, details: prometheus.output })
  t.equal((await prometheus.query('up'))[0]?.value[1], '1', 'up == 1')
  t.ok(await has('shop_requests_total{http_method="GET;POST"}'), "the app's series with joined label values")
  t.ok(await has('shop_latency_seconds_bucket{key_le="fast"}'), 'the renamed le')
})

t.test("promtool check metrics on the demo's default scrape (real PostgreSQL, migration gauges, Redis and worker series) prints nothing", async (t) => {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  // As `npm start` runs on a machine with Redis on localhost; the run's jobs live under their own BullMQ prefix.
  const bullPrefix = `um-lint-${process.pid}`
  const demo = startProcess(t, 'demo', process.execPath, ['example/server.mjs'], {
    ...process.env, HOST: '127.0.0.1', PORT: String(port), DATABASE_URL, REDIS_URL: LOCAL_REDIS_URL, BULL_PREFIX: bullPrefix, LOG_LEVEL: 'warn'
  })
  t.teardown(async () => {
    await demo.stop()
    const redis = new IORedis(LOCAL_REDIS_URL)
    const keys = await redis.keys(`${bullPrefix}:*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  })
  await waitFor('the demo to answer /healthz', async () => (await fetch(`${base}/healthz`)).ok, { timeoutMs: 30_000, details: demo.output })
  await generateTraffic({ baseUrl: base, durationMs: 10_000, maxRequests: 60, concurrency: 2 })
  const text = await (await fetch(`${base}/metrics`)).text()
  t.match(text, /^django_migrations_applied_total\{connection="default"\} \d/m, 'the migration gauges are exported')
  t.match(text, /^celery_workers \d/m, 'the worker series are exported')
  t.match(text, /^django_cache_get_total\{backend="redis"\} \d/m, 'the Redis cache series are exported')
  t.match(text, /^# TYPE django_migrations_applied_total untyped$/m)
  const lint = promtoolCheckMetrics(text)
  t.equal(lint.output, '', 'promtool prints nothing')
  t.equal(lint.status, 0, 'and exits 0')

  // The same scrape in OpenMetrics (promtool reads only text): prometheus_client's strict parser reads every family.
  const openMetrics = await (await fetch(`${base}/metrics`, { headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' } })).text()
  const families = (await python(['-c', [
    'import sys',
    'from prometheus_client.openmetrics.parser import text_string_to_metric_families',
    'for f in text_string_to_metric_families(sys.stdin.read()): print(f.name, f.type)'
  ].join('\n')], openMetrics)).trim().split('\n')
  for (const family of ['django_migrations_applied_total unknown', 'celery_workers gauge', 'django_cache_get counter', 'django_db_execute counter', 'django_db_query_duration_seconds histogram']) {
    t.ok(families.includes(family), `OpenMetrics: ${family}`)
  }
})
