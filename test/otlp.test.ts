import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import pg from 'pg'
import Fastify, { type FastifyInstance } from 'fastify'
import upstreamMetrics from '../lib/index'
import { FAMILY_GROUPS, exposedName } from '../lib/names'
import { otlpStreams } from '../lib/otlp/producer'
import { Family } from '../lib/store'
import type { UpstreamMetricsOptions } from '../lib/types'
import { key, parse, parseLabels, type Exposition } from './helpers/metrics'
import { freePort } from './helpers/net'
import { CUMULATIVE, Receiver, STRATEGIES, metricName, translate, type OtlpRequest, type Received } from './helpers/otlp'
import { waitFor } from './helpers/wait'

// Seventy-odd export intervals of 100 ms are waited for below: minutes, not seconds, on a loaded machine.
t.setTimeout(300_000)

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const OTLP_MODULES = /[\\/](exporter-metrics-otlp-proto|exporter-metrics-otlp-http|otlp-exporter-base|otlp-transformer)[\\/]|[\\/]lib[\\/]otlp[\\/]index\./

function otlpModulesLoaded (): string[] {
  return Object.keys(require.cache).filter((path) => OTLP_MODULES.test(path))
}

function capturingLogger (): { lines: () => Array<{ level: number, msg: string }>, stream: { write: (line: string) => void } } {
  const raw: string[] = []
  return { lines: () => raw.map((l) => JSON.parse(l) as { level: number, msg: string }), stream: { write: (line: string) => { raw.push(line) } } }
}

/** `le` as Prometheus stores it after either path: a number, printed the shortest way. */
function normalized (samples: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>()
  for (const [k, v] of samples) {
    const brace = k.indexOf('{')
    if (brace === -1) {
      out.set(k, v)
      continue
    }
    const labels = parseLabels(k.slice(brace + 1, -1))
    if (labels.le !== undefined) labels.le = labels.le === '+Inf' ? '+Inf' : String(Number(labels.le))
    out.set(key(k.slice(0, brace), labels), v)
  }
  return out
}

function familyOf (sample: string, families: Iterable<string>): string | undefined {
  const name = sample.split('{')[0]!
  for (const family of families) {
    if (name === family || name === `${family}_bucket` || name === `${family}_sum` || name === `${family}_count`) return family
  }
  return undefined
}

async function scrape (app: FastifyInstance): Promise<Exposition> {
  return withoutCreated(await scrapeAll(app))
}

async function scrapeAll (app: FastifyInstance): Promise<Exposition> {
  const res = await app.inject('/metrics')
  if (res.statusCode !== 200) throw new Error(`scrape answered ${res.statusCode}`)
  return parse(res.body)
}

/**
 * The scrape without its `_created` families: OTLP carries them as each point's start time, which
 * Prometheus's OTLP receiver stores as no series (the test below checks the start times).
 */
function withoutCreated (exposition: Exposition): Exposition {
  const created = (name: string): boolean => /_created(\{|$)/.test(name)
  for (const map of [exposition.samples, exposition.type, exposition.help]) for (const name of [...map.keys()]) if (created(name)) map.delete(name)
  return exposition
}

/** The counters whose exposed name holds an inner `total` (`…_total_by_…_total`): the ones pushed as non-monotonic sums. */
const INNER_TOTAL = FAMILY_GROUPS.flatMap((group) => Object.values(group))
  .filter((spec) => spec.type === 'counter')
  .flatMap((spec) => [spec.name, ...(spec.aliases ?? [])].map((name) => exposedName(name, 'counter')))
  .filter((name) => name.split('_').slice(0, -1).includes('total'))

t.test('with push off, nothing of OTLP is loaded, started or exposed (OTEL_* variables alone do not turn it on)', async (t) => {
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://127.0.0.1:9'
  t.teardown(() => { delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT })
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  await app.ready()
  await app.inject('/metrics')
  t.same(otlpModulesLoaded(), [], 'no OTLP exporter module in the require cache')
  t.notMatch((await app.inject('/metrics')).body, /upstream_metrics_otlp/)
  await app.upstreamMetrics.flush()
  await app.close()
})

t.test('pushed series, translated the standard way, are exactly the /metrics series of the same moment', async (t) => {
  const receiver = await new Receiver().start()
  t.teardown(() => receiver.stop())
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 })
  t.teardown(() => pool.end())

  const app = Fastify()
  await app.register(upstreamMetrics, {
    countScrape: false,
    cache: { redis: false },
    worker: { broker: 'redis://127.0.0.1:6379/0', queues: ['otlp-test'] },
    // No periodic export within the test: the one compared is made by flush(), between two scrapes.
    otlp: { endpoint: receiver.url, intervalMs: 3_600_000, serviceName: 'shop', resourceAttributes: { 'service.instance.id': 'shop-1', 'deployment.environment': 'test' } }
  })
  t.teardown(() => app.close())
  t.not(otlpModulesLoaded().length, 0, 'the exporter is loaded once push is on (so the check above can fail)')
  const meter = app.upstreamMetrics.meter
  const orders = meter.createCounter('app_orders', { description: 'Orders placed.' })
  const jobSeconds = meter.createHistogram('app_job_seconds', { description: 'Job time.', advice: { explicitBucketBoundaries: [0.1, 1, 10] } })
  meter.createObservableGauge('app_queue_depth', { description: 'Queue depth.' }).addCallback((r) => r.observe(7, { queue: 'mail' }))
  app.get('/claims/:id', async () => {
    orders.add(2, { channel: 'web' })
    jobSeconds.record(0.5, { job: 'mail' })
    app.upstreamMetrics.cache.record('lru', true)
    return { ok: true }
  })
  app.post('/claims', async (_req, reply) => reply.code(201).send({ created: true }))
  app.get('/boom', async () => { throw new TypeError('bad') })
  await app.ready()

  for (let i = 0; i < 5; i++) await app.inject(`/claims/${i}`)
  await app.inject({ method: 'POST', url: '/claims', payload: { a: 1 }, headers: { 'x-requested-with': 'XMLHttpRequest' } })
  await app.inject('/boom')
  await app.inject('/missing')
  await pool.query('SELECT 1')
  await pool.query('SELECT * FROM no_such_table_otlp').catch(() => {})
  // The event-loop gauges appear with the first delay sample, one sampling interval (100 ms) after the start,
  // later on a busy machine: waited for, so that they are compared in every run.
  await waitFor('the first event-loop delay sample', async () => (await scrape(app)).type.has('nodejs_eventloop_lag_p99_seconds'))

  // Quiet from here. The export's collection falls between the two scrapes: every series of the first
  // is pushed, every pushed series is in the second, and only what moves by itself (the runtime's, such
  // as a GC kind seen for the first time, and the push's own counters) may differ between them.
  const before = await scrape(app)
  await app.upstreamMetrics.flush()
  const pushed = receiver.last()
  const scraped = await scrape(app)
  if (pushed === undefined) throw new Error('flush() exported nothing')
  t.equal(receiver.arrived, 1, 'one export: the one flush() made')

  t.equal(pushed.path, '/v1/metrics')
  t.match(pushed.headers['content-type'], /application\/x-protobuf/)
  const translated = translate(pushed.body)
  t.equal(translated.job, 'shop', 'service.name becomes job')
  t.equal(translated.instance, 'shop-1', 'service.instance.id becomes instance')

  const runtime = (name: string): boolean => /^(process|nodejs)_/.test(name)
  const moving = (family: string): boolean => runtime(family) || family.startsWith('upstream_metrics_otlp_')
  const names = new Set(scraped.type.keys())
  const namesBefore = new Set(before.type.keys())
  t.same([...namesBefore].filter((name) => !translated.families.has(name)), [], 'every family on /metrics is pushed, under the same name once translated')
  t.same([...translated.families.keys()].filter((name) => !names.has(name)), [], 'every pushed family is on /metrics')
  t.same([...names].filter((name) => !namesBefore.has(name) && !moving(name)), [], 'no family but the runtime\'s and the push\'s appears in between')
  for (const [name, family] of translated.families) {
    t.equal(family.help, scraped.help.get(name), `${name}: description is the HELP`)
    // OTLP has no untyped: the migration gauges written `untyped` on /metrics (for promtool) are pushed as gauges.
    const expectedType = INNER_TOTAL.includes(name) || scraped.type.get(name) === 'untyped' ? 'gauge' : scraped.type.get(name)
    t.equal(family.type, expectedType, `${name}: ${family.type}`)
  }
  const expected = normalized(scraped.samples)
  const expectedBefore = normalized(before.samples)
  const got = translated.samples
  const families = [...names]
  const stable = (sample: string): boolean => !moving(familyOf(sample, families) ?? sample)
  const stableOf = (samples: Map<string, number>): Record<string, number> => Object.fromEntries([...samples].filter(([k]) => stable(k)))
  t.same([...expectedBefore.keys()].filter((k) => !got.has(k)), [], 'the same series: names, label names, label values and bucket bounds (every one of /metrics is pushed…)')
  t.same([...got.keys()].filter((k) => !expected.has(k)), [], '…and every pushed one is on /metrics)')
  t.same(stableOf(got), stableOf(expectedBefore), 'the same values (the runtime\'s and the push\'s own move by themselves: compared by series only)')
  t.same(stableOf(expected), stableOf(expectedBefore), 'nothing else moved between the two scrapes')
  // The traffic is in there, under the django names and labels.
  t.equal(got.get(key('django_http_requests_total_by_method_total', { method: 'GET' })), 7)
  t.equal(got.get(key('django_http_responses_total_by_status_view_method_total', { status: '201', view: '/claims', method: 'POST' })), 1)
  t.equal(got.get(key('django_db_errors_total', { alias: 'default', vendor: 'postgresql', type: 'UndefinedTable' })) ?? got.get(key('django_db_errors_total', { alias: 'default', vendor: 'postgresql', type: 'ProgrammingError' })), 1)
  t.equal(got.get(key('django_cache_get_hits_total', { backend: 'lru' })), 5)
  t.equal(got.get(key('app_orders_total', { channel: 'web' })), 10)
  t.equal(got.get(key('app_job_seconds_bucket', { job: 'mail', le: '1' })), 5)
  t.equal(got.get(key('app_queue_depth', { queue: 'mail' })), 7)
  t.ok(translated.families.has('celery_workers'), 'worker series are pushed')

  // Each `_created` on /metrics is the pushed point's start time.
  const all = await scrapeAll(app)
  const pushedStart = (name: string, method: string): number | undefined => {
    const metric = pushed.body.resourceMetrics[0]!.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.name === name)
    const point = metric?.sum?.dataPoints.find((p) => p.attributes.some((kv) => kv.key === 'method' && kv.value.stringValue === method)) as { startTimeUnixNano?: number } | undefined
    return point?.startTimeUnixNano
  }
  const created = all.samples.get(key('django_http_requests_total_by_method_created', { method: 'GET' }))
  t.ok(created !== undefined && created > 1.7e9, '_created on /metrics')
  t.ok(Math.abs(pushedStart('django_http_requests_total_by_method_total', 'GET')! / 1e9 - created!) < 1e-3, 'equals the pushed start time')

  // Every metric is cumulative; units are empty on every django family.
  for (const metric of pushed.body.resourceMetrics[0]!.scopeMetrics.flatMap((s) => s.metrics)) {
    const temporality = metric.sum?.aggregationTemporality ?? metric.histogram?.aggregationTemporality
    if (metric.data !== 'gauge') t.equal(temporality, CUMULATIVE, `${metric.name} is cumulative`)
    if (metric.name.startsWith('django_')) t.equal(metric.unit, '', `${metric.name} has no unit`)
  }
})

t.test('the django names survive each common translation strategy', async (t) => {
  const receiver = await new Receiver().start()
  t.teardown(() => receiver.stop())
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, otlp: { endpoint: receiver.url, intervalMs: 200 } })
  await app.ready()
  await app.inject('/x')
  const pushed = await waitFor('an export', () => receiver.last())
  const scraped = await scrape(app)
  await app.close()
  const scrapedNames = [...scraped.type.keys()].sort()
  for (const strategy of STRATEGIES) {
    const translated = translate(pushed.body, strategy)
    t.same([...translated.families.keys()].sort(), scrapedNames, `${strategy}: every name is the django one`)
  }
  // The trap the encoding avoids: the same counter as a monotonic sum loses its inner `total`.
  t.equal(metricName('django_http_requests_total_by_method_total', '', 'monotonic', 'UnderscoreEscapingWithSuffixes'), 'django_http_requests_by_method_total')
  t.equal(metricName('django_http_requests_total_by_method_total', '', 'non-monotonic', 'UnderscoreEscapingWithSuffixes'), 'django_http_requests_total_by_method_total')
  // The nine django_http_*_total_by_* counters; the two `…_body_total_bytes` histograms are not touched by the rule.
  t.equal(INNER_TOTAL.length, 9)
  t.ok(INNER_TOTAL.every((name) => /^django_http_\w+_total_by_\w+_total$/.test(name)))
})

t.test('a family with an OpenTelemetry name goes out under that name and unit', async (t) => {
  const semconv = new Family({ name: 'http_server_request_duration_seconds', type: 'histogram', help: 'Duration of HTTP server requests.', labels: ['http.request.method'], otel: { name: 'http.server.request.duration', unit: 's' } }, '', 10, [0.1, 1])
  t.same(otlpStreams(semconv), [{ name: 'http.server.request.duration', unit: 's', monotonic: true }])
  for (const strategy of ['UnderscoreEscapingWithSuffixes', 'NoUTF8EscapingWithSuffixes'] as const) {
    const translated = metricName('http.server.request.duration', 's', 'histogram', strategy)
    t.equal(translated, strategy === 'UnderscoreEscapingWithSuffixes' ? 'http_server_request_duration_seconds' : 'http.server.request.duration_seconds', strategy)
  }
})

function exportsOf (samples: Map<string, number>, result: string): number {
  return samples.get(key('upstream_metrics_otlp_exports_total', { result })) ?? 0
}

t.test('a Collector that is down, slow, then failing costs the app nothing but one warning; the next export carries the totals', async (t) => {
  const port = await freePort()
  const receiver = new Receiver()
  receiver.port = port
  t.teardown(() => receiver.stop())
  const log = capturingLogger()
  const app = Fastify({ logger: { level: 'info', stream: log.stream } })
  await app.register(upstreamMetrics, { runtimeMetrics: false, countScrape: false, otlp: { endpoint: `http://127.0.0.1:${port}`, intervalMs: 150, timeoutMs: 100 } })
  t.teardown(() => app.close())
  app.get('/work', async () => 'done')
  await app.ready()

  let gets = 0
  const failuresAtLeast = async (n: number, phase: string): Promise<void> => {
    // One assertion per phase, however many polls it takes: the suite's total stays the same from run to run.
    const statuses = new Set<number>()
    await waitFor(`${phase}: ${n} failed exports`, async () => {
      statuses.add((await app.inject('/work')).statusCode)
      gets++
      const failures = exportsOf((await scrape(app)).samples, 'failure')
      return failures >= n ? failures : undefined
    })
    t.same([...statuses], [200], `${phase}: the app answers every request`)
  }

  // Down: nothing listens on the port.
  await failuresAtLeast(3, 'down')
  // Slow: accepted, answered long after the timeout.
  receiver.behaviour = { kind: 'slow', ms: 600 }
  await receiver.start(port)
  const beforeSlow = receiver.arrived
  await failuresAtLeast(6, 'slow')
  t.ok(receiver.arrived > beforeSlow, 'the slow Collector was reached')
  t.equal(receiver.received.length, 0, 'nothing was answered in time')
  // Errors: 500 (not retried) then 503 (retryable, but no retry fits in the timeout).
  receiver.behaviour = { kind: 'status', status: 500 }
  await failuresAtLeast(9, '500')
  receiver.behaviour = { kind: 'status', status: 503 }
  await failuresAtLeast(12, '503')
  t.ok(receiver.maxOpen <= 2, `exports never pile up at the Collector (at most ${receiver.maxOpen} open at once)`)

  // Back.
  receiver.behaviour = { kind: 'ok' }
  const back = Date.now()
  const first = await waitFor('an export once the Collector is back', () => receiver.last(back))
  const translated = translate(first.body)
  const totalGets = translated.samples.get(key('django_http_requests_total_by_method_total', { method: 'GET' }))
  t.ok(totalGets !== undefined && totalGets >= gets, `the first export after the outage carries every request of it (${totalGets} ≥ ${gets})`)
  t.ok((translated.samples.get(key('upstream_metrics_otlp_exports_total', { result: 'failure' })) ?? 0) >= 12, 'and the failures')

  const samples = (await scrape(app)).samples
  t.ok(exportsOf(samples, 'success') >= 1)
  t.ok((samples.get('upstream_metrics_otlp_dropped_points_total') ?? 0) > 0, 'dropped points are counted on /metrics')
  const lines = log.lines()
  const warnings = lines.filter((l) => l.level === 40 && l.msg.includes('OTLP export failed'))
  t.equal(warnings.length, 1, 'one warning for the whole outage (at most one a minute)')
  t.equal(lines.filter((l) => l.msg.includes('OTLP export succeeded again')).length, 1, 'and one line when it recovers')
  t.equal(lines.filter((l) => l.level >= 50).length, 0, 'no error logged')
})

t.test('over many failing intervals nothing is queued and the heap stays flat', async (t) => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const receiver = await new Receiver().start()
  receiver.behaviour = { kind: 'slow', ms: 60_000 }
  t.teardown(() => receiver.stop())
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, countScrape: false, otlp: { endpoint: receiver.url, intervalMs: 100, timeoutMs: 50 } })
  t.teardown(() => app.close())
  // 300 route templates: a payload of a few hundred kB, so that keeping exports around would show.
  for (let i = 0; i < 300; i++) app.get(`/r${i}/:id`, async () => 'ok')
  await app.ready()
  for (let i = 0; i < 300; i++) await app.inject(`/r${i}/1`)

  const failures = async (): Promise<number> => exportsOf((await scrape(app)).samples, 'failure')
  await waitFor('10 failed exports', async () => (await failures()) >= 10, { timeoutMs: 60_000, intervalMs: 200 })
  gc()
  const heapBefore = process.memoryUsage().heapUsed
  const failedBefore = await failures()
  await waitFor('60 more failed exports', async () => (await failures()) >= failedBefore + 60, { timeoutMs: 120_000, intervalMs: 200 })
  gc()
  const growth = process.memoryUsage().heapUsed - heapBefore
  t.ok(receiver.maxOpen <= 2, `at most ${receiver.maxOpen} exports open at once at the Collector`)
  t.ok(growth < 8 * 1024 * 1024, `heap grew ${(growth / 1024 / 1024).toFixed(2)} MB over 60 failed exports (bound: 8 MB)`)
})

t.test('close() sends the last interval, and never waits long on a dead Collector', async (t) => {
  const receiver = await new Receiver().start()
  t.teardown(() => receiver.stop())
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, otlp: { endpoint: receiver.url, intervalMs: 600_000 } })
  app.get('/last', async () => 'ok')
  await app.ready()
  await app.inject('/last')
  await app.upstreamMetrics.flush()
  t.equal(receiver.received.length, 1, 'flush() exports at once')
  for (let i = 0; i < 2; i++) await app.inject('/last')
  await app.close()
  t.equal(receiver.received.length, 2, 'and close() once more')
  const last = translate(receiver.received[1]!.body)
  t.equal(last.samples.get(key('django_http_requests_total_by_method_total', { method: 'GET' })), 3, 'with the last requests')

  // A Collector that never answers: close() gives up after timeoutMs.
  receiver.behaviour = { kind: 'slow', ms: 600_000 }
  const stuck = Fastify()
  await stuck.register(upstreamMetrics, { runtimeMetrics: false, otlp: { endpoint: receiver.url, intervalMs: 600_000, timeoutMs: 300 } })
  await stuck.ready()
  const arrived = receiver.arrived
  const closed = await Promise.race([
    stuck.close().then(() => 'closed'),
    new Promise((resolve) => setTimeout(resolve, 10_000, 'still waiting after 10 s')).then((v) => v)
  ])
  t.equal(closed, 'closed')
  t.equal(receiver.arrived, arrived + 1, 'the last export was attempted')
  await waitFor('the request to be abandoned', () => receiver.open === 0, { timeoutMs: 5_000 })
})

t.test('push alone (path: false), configured from the standard environment variables', async (t) => {
  const receiver = await new Receiver().start()
  t.teardown(() => receiver.stop())
  const env = {
    OTEL_METRICS_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}`,
    OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=s3cret,x-team=core',
    OTEL_METRIC_EXPORT_INTERVAL: '150',
    OTEL_SERVICE_NAME: 'billing',
    OTEL_RESOURCE_ATTRIBUTES: 'service.namespace=acme,service.instance.id=billing-7'
  }
  Object.assign(process.env, env)
  t.teardown(() => { for (const name of Object.keys(env)) delete process.env[name] })
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, path: false })
  app.get('/ping', async () => 'pong')
  await app.ready()
  t.equal((await app.inject('/metrics')).statusCode, 404, 'no scrape route')
  await app.inject('/ping')
  await app.inject('/ping')
  const since = Date.now()
  const pushed: Received = await waitFor('an export', () => receiver.last(since))
  await app.close()
  t.equal(pushed.path, '/v1/metrics', 'the metrics path is appended to OTEL_EXPORTER_OTLP_ENDPOINT')
  t.equal(pushed.headers['x-api-key'], 's3cret')
  t.equal(pushed.headers['x-team'], 'core')
  const translated = translate(pushed.body)
  t.equal(translated.job, 'acme/billing')
  t.equal(translated.instance, 'billing-7')
  t.equal(translated.samples.get(key('django_http_requests_total_by_method_total', { method: 'GET' })), 3, 'two pings and the 404 of /metrics')

  // `otlp: false` wins over the environment.
  const off = Fastify()
  await off.register(upstreamMetrics, { runtimeMetrics: false, otlp: false })
  await off.ready()
  t.notMatch((await off.inject('/metrics')).body, /upstream_metrics_otlp/)
  await off.close()
})

t.test('option headers go with every export; the default instance is host:pid', async (t) => {
  const receiver = await new Receiver().start()
  t.teardown(() => receiver.stop())
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, otlp: { endpoint: receiver.url, headers: { authorization: 'Bearer abc' }, intervalMs: 150 } })
  await app.ready()
  const pushed = await waitFor('an export', () => receiver.last())
  await app.close()
  t.equal(pushed.headers.authorization, 'Bearer abc')
  const body: OtlpRequest = pushed.body
  const attrs = Object.fromEntries(body.resourceMetrics[0]!.resource.attributes.map((kv) => [kv.key, kv.value.stringValue]))
  t.match(attrs['service.instance.id'], new RegExp(`:${process.pid}$`))
  t.match(attrs['service.name'], /^unknown_service/)
})

t.test('invalid otlp options fail at register, naming the option and never echoing a secret', async (t) => {
  const cases: Array<[UpstreamMetricsOptions['otlp'] | string | number, string]> = [
    ['yes', 'otlp'],
    [{ endpont: 'http://x' } as never, 'otlp.endpont'],
    [{ endpoint: 'ftp://collector' }, 'otlp.endpoint'],
    [{ endpoint: 'not a url' }, 'otlp.endpoint'],
    [{ intervalMs: 10 }, 'otlp.intervalMs'],
    [{ intervalMs: 1.5e3 + 0.5 }, 'otlp.intervalMs'],
    [{ timeoutMs: 0 }, 'otlp.timeoutMs'],
    [{ intervalMs: 1000, timeoutMs: 2000 }, 'otlp.timeoutMs'],
    [{ headers: { authorization: 42 } } as never, 'otlp.headers.authorization'],
    [{ serviceName: '' }, 'otlp.serviceName'],
    [{ resourceAttributes: 'a=b' } as never, 'otlp.resourceAttributes']
  ]
  for (const [otlp, name] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(upstreamMetrics, { otlp } as never) }, { code: 'UPSTREAM_METRICS_INVALID_OPTION', message: new RegExp(`option "${name.replace(/\./g, '\\.')}"`) }, name)
    await app.close()
  }
  const secret = Fastify()
  const err = await secret.register(upstreamMetrics, { otlp: { endpoint: 'ftp://user:hunter2@collector/v1/metrics' } }).then(() => undefined, (e: Error) => e)
  t.ok(err)
  t.notMatch(err!.message, /hunter2/)
  await secret.close()

  process.env.OTEL_METRICS_EXPORTER = 'otlp'
  process.env.OTEL_METRIC_EXPORT_INTERVAL = 'soon'
  t.teardown(() => { delete process.env.OTEL_METRICS_EXPORTER; delete process.env.OTEL_METRIC_EXPORT_INTERVAL })
  const fromEnv = Fastify()
  await t.rejects(async () => { await fromEnv.register(upstreamMetrics, {}) }, { code: 'UPSTREAM_METRICS_INVALID_OPTION', message: /option "OTEL_METRIC_EXPORT_INTERVAL"/ })
  await fromEnv.close()
})
