// The app's own meter (`app.upstreamMetrics.meter`): bounded series across scrapes, valid and
// unique names whatever the app records, bounded collection, one collection for concurrent scrapes.
import { Writable } from 'node:stream'
import t from 'tap'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { key, parse, scrape, series } from './helpers/metrics'
import { deferred } from './helpers/wait'

/** The messages a Fastify logger writes. */
function capturingLogger (): { lines: string[], stream: Writable } {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push((JSON.parse(String(chunk)) as { msg: string }).msg); cb() } })
  return { lines, stream }
}

const total = (rows: Array<{ value: number }>): number => rows.reduce((sum, s) => sum + s.value, 0)

t.test('cardinalityLimit bounds every kind of app instrument across scrapes, totals kept in the overflow series', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, cardinalityLimit: 10 })
  t.teardown(() => app.close())
  const meter = app.upstreamMetrics.meter
  const counter = meter.createCounter('shop_orders')
  const upDown = meter.createUpDownCounter('shop_carts_open')
  const histogram = meter.createHistogram('shop_order_amount')
  const gauge = meter.createGauge('shop_last_order_amount')
  let observed: string[] = []
  meter.createObservableCounter('shop_visits').addCallback((result) => { for (const id of observed) result.observe(2, { id }) })
  const batchGauge = meter.createObservableGauge('shop_stock')
  meter.addBatchObservableCallback((result) => { for (const id of observed) result.observe(batchGauge, 1, { id }) }, [batchGauge])

  const rss: number[] = [process.memoryUsage.rss()]
  const seriesPerScrape: number[] = []
  let id = 0
  for (let round = 1; round <= 5; round++) {
    observed = []
    for (let i = 0; i < 20; i++) {
      const attributes = { id: String(id++) }
      counter.add(1, attributes)
      upDown.add(1, attributes)
      histogram.record(5, attributes)
      gauge.record(7, attributes)
      observed.push(attributes.id)
    }
    const m = await scrape(app)
    const counts = {
      counter: series(m, 'shop_orders_total'),
      upDown: series(m, 'shop_carts_open'),
      histogram: series(m, 'shop_order_amount_count'),
      gauge: series(m, 'shop_last_order_amount'),
      observableCounter: series(m, 'shop_visits_total'),
      batchGauge: series(m, 'shop_stock')
    }
    seriesPerScrape.push(counts.counter.length)
    for (const [kind, rows] of Object.entries(counts)) {
      t.equal(rows.length, 10, `round ${round}: ${kind} holds 9 series and the overflow one`)
      t.ok(rows.some((s) => s.labels.otel_metric_overflow === 'true'), `round ${round}: ${kind} has the overflow series`)
    }
    t.equal(total(counts.counter), 20 * round, `round ${round}: the counter's total is exact`)
    t.equal(total(counts.upDown), 20 * round, `round ${round}: the up-down counter's total is exact`)
    t.equal(total(counts.histogram), 20 * round, `round ${round}: every observation is counted once`)
    const overflow = counts.observableCounter.find((s) => s.labels.otel_metric_overflow === 'true')?.value
    t.equal(overflow, 2 * (round === 1 ? 11 : 20), `round ${round}: the observations past the limit add up in the overflow series`)
    rss.push(process.memoryUsage.rss())
  }
  t.same(seriesPerScrape, [10, 10, 10, 10, 10])
  t.comment(`series per scrape ${seriesPerScrape.join(', ')}; RSS ${rss.map((b) => Math.round(b / 2 ** 20)).join(' → ')} MiB`)
})

t.test('app instruments whose Prometheus name a plugin family or another instrument writes are refused, once each', async (t) => {
  const log = capturingLogger()
  const app = Fastify({ logger: { level: 'warn', stream: log.stream } })
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/x', async () => 'x')
  t.teardown(() => app.close())
  const meter = app.upstreamMetrics.meter
  const refused = [
    meter.createCounter('django_http_ajax_requests'),
    meter.createCounter('django_db_query'),
    meter.createGauge('django_http_requests_latency_including_middlewares_seconds_count'),
    meter.createHistogram('django_http_requests_latency_seconds_by_view_method'),
    meter.createUpDownCounter('django.http.ajax.requests.total')
  ]
  for (const instrument of refused) {
    if ('add' in instrument) instrument.add(100)
    else instrument.record(100)
  }
  const orders = meter.createCounter('shop.orders')
  const twin = meter.createCounter('shop_orders')
  orders.add(1)
  twin.add(5)
  meter.createCounter('shop.orders').add(2)
  await app.inject('/x')
  const m = await scrape(app)
  t.equal(m.samples.get('django_http_ajax_requests_total'), 0, "the plugin's series, not the app's 100")
  t.equal(m.samples.get(key('django_db_query_total', { alias: 'default', vendor: 'postgresql' })), undefined)
  t.equal(m.samples.get('django_http_requests_latency_including_middlewares_seconds_count'), 1)
  t.equal(m.samples.get('shop_orders_total'), 3, 'the first instrument keeps the name; the same instrument created twice is one')
  const warnings = log.lines.filter((l) => l.includes('records nothing'))
  t.equal(warnings.length, 6, `one warning per refused instrument:\n${warnings.join('')}`)
  t.match(warnings.join('\n'), /"django_http_ajax_requests" .* would be exposed as django_http_ajax_requests_total/)
  await scrape(app)
  t.equal(log.lines.filter((l) => l.includes('records nothing')).length, 6, 'not repeated by later scrapes')
})

t.test('attribute keys become valid, unique label names: sanitized, collisions joined, reserved names renamed', async (t) => {
  const log = capturingLogger()
  const app = Fastify({ logger: { level: 'warn', stream: log.stream } })
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  t.teardown(() => app.close())
  const meter = app.upstreamMetrics.meter
  const requests = meter.createCounter('shop_requests')
  for (let i = 0; i < 3; i++) requests.add(1, { 'http.method': 'GET', http_method: 'POST', '1st': 'a', __name__: 'x', quantile: '0.5' })
  meter.createHistogram('shop_latency', { unit: 's' }).record(0.2, { le: 'fast', 'http.route': '/a' })
  meter.createObservableGauge('shop_queue_depth').addCallback((result) => result.observe(4, { 'queue-name': 'q', queue_name: 'r' }))
  const m = await scrape(app)
  t.equal(m.samples.get(key('shop_requests_total', { http_method: 'GET;POST', key_1st: 'a', key_name: 'x', key_quantile: '0.5' })), 3, 'values of colliding keys joined in the order of the original keys')
  t.equal(m.samples.get(key('shop_latency_seconds_count', { key_le: 'fast', http_route: '/a' })), 1, 'le renamed on a histogram; the unit gives _seconds')
  t.equal(m.samples.get(key('shop_queue_depth', { queue_name: 'q;r' })), 4)
  const warnings = log.lines.join('')
  for (const word of ['"__name__"', '"quantile"', '"le"', '"http.method", "http_method"', '"queue-name", "queue_name"']) t.match(warnings, word, `warned about ${word}`)
  const count = log.lines.length
  requests.add(1, { 'http.method': 'PUT', http_method: 'GET', '1st': 'b', __name__: 'y', quantile: '0.9' })
  await scrape(app)
  t.equal(log.lines.length, count, 'each warning once')
})

t.test('OpenTelemetry instrument names follow the standard OTLP → Prometheus translation; the django names do not', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  t.teardown(() => app.close())
  const meter = app.upstreamMetrics.meter
  meter.createHistogram('http.client.request.duration', { unit: 's' }).record(0.1)
  meter.createUpDownCounter('shop.cache.size', { unit: 'By' }).add(10)
  meter.createObservableGauge('shop.pool.usage', { unit: '1' }).addCallback((r) => r.observe(0.5))
  meter.createCounter('shop.requests_total.by_kind', { unit: '{request}' }).add(1)
  meter.createCounter('2xx.responses').add(1)
  const m = await scrape(app)
  t.equal(m.type.get('http_client_request_duration_seconds'), 'histogram')
  t.equal(m.samples.get('http_client_request_duration_seconds_count'), 1)
  t.equal(m.samples.get('shop_cache_size_bytes'), 10)
  t.equal(m.samples.get('shop_pool_usage_ratio'), 0.5)
  t.equal(m.samples.get('shop_requests_by_kind_total'), 1, '`total` moves to the end; a {curly} unit adds nothing')
  t.equal(m.samples.get('_2xx_responses_total'), 1)
  t.ok(m.samples.has(key('django_http_requests_total_by_method_total', { method: 'GET' })), 'the doubled django _total stays')
})

t.test('a failing or hanging observable callback leaves out its own series only, and is not called again while pending', async (t) => {
  const log = capturingLogger()
  const app = Fastify({ logger: { level: 'error', stream: log.stream } })
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  t.teardown(() => app.close())
  const meter = app.upstreamMetrics.meter
  let hangingCalls = 0
  meter.createObservableGauge('shop_remote_depth').addCallback(async () => {
    hangingCalls++
    await new Promise(() => {})
  })
  let failing = true
  meter.createObservableGauge('shop_flaky_depth').addCallback((result) => {
    if (failing) throw new Error('backend unavailable')
    result.observe(7)
  })
  meter.createObservableGauge('shop_healthy_depth').addCallback((result) => result.observe(3))
  const bounded = async () => {
    let timer: NodeJS.Timeout | undefined
    try {
      return await Promise.race([
        app.inject('/metrics'),
        new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('the scrape did not answer within 8 s')), 8000) })
      ])
    } finally {
      clearTimeout(timer)
    }
  }
  for (let i = 0; i < 3; i++) {
    const response = await bounded()
    t.equal(response.statusCode, 200, `scrape ${i} answers`)
    const m = parse(response.body)
    t.equal(m.samples.get('shop_healthy_depth'), 3)
    t.equal(m.samples.get('django_http_requests_before_middlewares_total'), i + 1, 'the django series are served')
    t.notOk(m.samples.has('shop_remote_depth'), 'the hanging callback has no series')
    t.notOk(m.samples.has('shop_flaky_depth'), 'the failing callback has no series')
    t.notMatch(response.body, /backend unavailable/)
  }
  t.equal(hangingCalls, 1, 'a pending callback is not called again')
  const logged = log.lines.filter((l) => l.includes('observable callback'))
  t.equal(logged.length, 1, 'logged once per interval')
  failing = false
  t.equal((await scrape(app)).samples.get('shop_flaky_depth'), 7, 'back once it works')
})

t.test('collectTimeoutMs bounds each observable callback', async (t) => {
  const seen: Record<string, boolean> = {}
  for (const collectTimeoutMs of [100, undefined]) {
    const app = Fastify()
    await app.register(upstreamMetrics, { runtimeMetrics: false, collectTimeoutMs })
    // Settles only after the scrape (100 ms) or on a 300 ms timer, which fires before a 3 s timeout
    // set after it whatever the load: Node runs timers in the order they are due.
    const settle = deferred()
    const timer = collectTimeoutMs === undefined ? setTimeout(settle.resolve, 300) : undefined
    app.upstreamMetrics.meter.createObservableGauge('shop_slow_depth').addCallback(async (result) => {
      await settle.promise
      result.observe(1)
    })
    seen[String(collectTimeoutMs)] = (await scrape(app)).samples.has('shop_slow_depth')
    settle.resolve()
    clearTimeout(timer)
    await app.close()
  }
  t.same(seen, { 100: false, undefined: true }, 'left out once 100 ms pass unsettled, served after 300 ms within the default 3 s')
})

t.test('concurrent scrapes share one collection and one serialization', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, countScrape: false })
  t.teardown(() => app.close())
  let calls = 0
  // The collection lasts until all 20 scrapes are in: from its onRequest hook, the 20th reaches the
  // scrape handler in microtasks, before the next turn of the loop.
  let arrived = 0
  const allArrived = deferred()
  app.addHook('onRequest', async () => { if (++arrived === 20) setImmediate(allArrived.resolve) })
  app.upstreamMetrics.meter.createObservableGauge('shop_slow_depth').addCallback(async (result) => {
    calls++
    await allArrived.promise
    result.observe(1)
  })
  const responses = await Promise.all(Array.from({ length: 20 }, async () => await app.inject('/metrics')))
  t.ok(responses.every((r) => r.statusCode === 200))
  t.equal(new Set(responses.map((r) => r.body)).size, 1, 'one text')
  t.equal(calls, 1, 'one collection for 20 concurrent scrapes')
  await app.inject('/metrics')
  t.equal(calls, 2, 'a later scrape collects again')
})

t.test('collectTimeoutMs is validated', async (t) => {
  for (const value of [0, -1, 'soon', Infinity, NaN]) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(upstreamMetrics, { collectTimeoutMs: value as number }) }, { code: 'UPSTREAM_METRICS_INVALID_OPTION', message: /"collectTimeoutMs"/ })
    await app.close().catch(() => {})
  }
})
