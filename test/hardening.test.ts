import { spawn } from 'node:child_process'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { connect, createServer } from 'node:net'
import { Writable } from 'node:stream'
import { setImmediate } from 'node:timers/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { patchRefs } from '../lib/patch'
import { key, parse, series } from './helpers/metrics'
import { freePort, get } from './helpers/net'
import { deferred } from './helpers/wait'
import { killOnExit } from './helpers/children'

const fixture = (name: string) => join(__dirname, 'fixtures', name)

function capturingLogger (): { lines: string[], stream: Writable } {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } })
  return { lines, stream }
}

t.test('access control: bearer token', async (t) => {
  const log = capturingLogger()
  const app = Fastify({ logger: { level: 'trace', stream: log.stream } })
  await app.register(upstreamMetrics, { runtimeMetrics: false, auth: { bearerToken: 's3cret-token' } })
  t.teardown(() => app.close())
  const refused = await app.inject('/metrics')
  t.equal(refused.statusCode, 401)
  t.match(refused.headers['www-authenticate'], /^Bearer realm="metrics"/)
  t.notMatch(refused.body, /django_/)
  t.equal((await app.inject({ url: '/metrics', headers: { authorization: 'Bearer wrong' } })).statusCode, 401)
  t.equal((await app.inject({ url: '/metrics', headers: { authorization: 'Basic czNjcmV0LXRva2Vu' } })).statusCode, 401)
  const ok = await app.inject({ url: '/metrics', headers: { authorization: 'Bearer s3cret-token' } })
  t.equal(ok.statusCode, 200)
  t.match(ok.body, /django_http_requests_before_middlewares_total/)
  t.notMatch(log.lines.join(''), /s3cret-token/, 'the secret is never logged, even at trace level')
})

t.test('access control: basic auth and custom check', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, {
    runtimeMetrics: false,
    auth: { basic: { username: 'prometheus', password: 'pa:ss' }, check: (request) => request.headers['x-internal'] === 'yes' }
  })
  t.teardown(() => app.close())
  const refused = await app.inject('/metrics')
  t.equal(refused.statusCode, 401)
  t.match(refused.headers['www-authenticate'], /Basic realm="metrics"/)
  const basic = 'Basic ' + Buffer.from('prometheus:pa:ss').toString('base64')
  t.equal((await app.inject({ url: '/metrics', headers: { authorization: basic } })).statusCode, 200)
  t.equal((await app.inject({ url: '/metrics', headers: { authorization: 'Basic ' + Buffer.from('prometheus:nope').toString('base64') } })).statusCode, 401)
  t.equal((await app.inject({ url: '/metrics', headers: { 'x-internal': 'yes' } })).statusCode, 200, 'the custom check admits')

  const allowList = Fastify()
  await allowList.register(upstreamMetrics, { runtimeMetrics: false, auth: { check: async (request) => request.ip === '10.9.9.9' } })
  t.teardown(() => allowList.close())
  t.equal((await allowList.inject('/metrics')).statusCode, 403, 'a check-only setup answers 403')
})

t.test('a throwing or rejecting auth.check refuses the scrape with a generic 500: its message stays in the log', async (t) => {
  const checks: Array<[string, () => boolean | Promise<boolean>]> = [
    ['throws', () => { throw new Error('directory lookup failed for token tok-9f8e7d') }],
    ['rejects', async () => { throw new Error('directory lookup failed for token tok-9f8e7d') }],
    // eslint-disable-next-line prefer-promise-reject-errors -- a rejection that is not an Error
    ['rejects with a string', async () => await Promise.reject('directory lookup failed for token tok-9f8e7d')]
  ]
  for (const withCredentials of [false, true]) {
    for (const [how, check] of checks) {
      const log = capturingLogger()
      const app = Fastify({ logger: { level: 'trace', stream: log.stream } })
      await app.register(upstreamMetrics, { runtimeMetrics: false, auth: withCredentials ? { bearerToken: 'scrape-secret', check } : { check } })
      const name = `${how}${withCredentials ? ', beside a bearer token' : ''}`
      const res = await app.inject({ url: '/metrics', headers: { authorization: 'Bearer sent-by-the-scraper' } })
      t.equal(res.statusCode, 500, `${name}: 500`)
      t.notMatch(res.body, /tok-9f8e7d|directory|django_/, `${name}: neither the error nor the metrics in the body`)
      t.equal(res.headers['content-type'], 'text/plain; charset=utf-8')
      const logged = log.lines.join('')
      t.match(logged, /upstream-metrics: auth\.check failed; the scrape is refused/, `${name}: logged`)
      t.match(logged, /tok-9f8e7d/, `${name}: the error itself is in the log, for the operator`)
      t.notMatch(logged, /sent-by-the-scraper|scrape-secret/, `${name}: no credential in the log`)
      if (withCredentials) t.equal((await app.inject({ url: '/metrics', headers: { authorization: 'Bearer scrape-secret' } })).statusCode, 200, `${name}: the token still admits without calling the check`)
      await app.close()
    }
  }
})

t.test('a separate internal listener serves the metrics off the app port', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, path: false, listener: { host: '127.0.0.1', port: 0 } })
  app.get('/x', async () => 'x')
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const appPort = (app.server.address() as { port: number }).port
  await get(`http://127.0.0.1:${appPort}/x`)
  t.equal((await get(`http://127.0.0.1:${appPort}/metrics`)).status, 404, 'not on the public port')
  const { port } = app.upstreamMetrics.listenerAddress!
  const scraped = await get(`http://127.0.0.1:${port}/metrics`)
  t.equal(scraped.status, 200)
  t.equal(scraped.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
  t.equal(parse(scraped.body).samples.get(key('django_http_requests_total_by_view_transport_method_total', { view: '/x', transport: 'http', method: 'GET' })), 1)
  t.equal((await get(`http://127.0.0.1:${port}/other`)).status, 404)
})

t.test('the internal listener enforces bearer / basic credentials too', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, path: false, listener: { port: 0 }, auth: { bearerToken: 'tok' } })
  t.teardown(() => app.close())
  const url = `http://127.0.0.1:${app.upstreamMetrics.listenerAddress!.port}/metrics`
  const refused = await get(url)
  t.equal(refused.status, 401)
  t.match(refused.headers['www-authenticate'], /Bearer/)
  t.equal((await get(url, { authorization: 'Bearer tok' })).status, 200)
})

t.test('exclusions: route config, paths and patterns, the scrape itself', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, excludePaths: ['/healthz', /^\/ready/], countScrape: false })
  app.get('/healthz', async () => 'ok')
  app.get('/ready/:probe', async () => 'ok')
  app.get('/internal', { config: { metrics: { exclude: true } } }, async () => 'ok')
  app.get('/counted', async () => 'ok')
  t.teardown(() => app.close())
  for (const url of ['/healthz', '/healthz?verbose=1', '/ready/db', '/internal', '/counted']) await app.inject(url)
  await app.inject('/metrics')
  const m = parse((await app.inject('/metrics')).body)
  t.equal(m.samples.get(key('django_http_requests_before_middlewares_total')), 1, 'only /counted')
  t.same(series(m, 'django_http_requests_total_by_view_transport_method_total').map((s) => s.labels.view), ['/counted'])
})

t.test('bounded cardinality: 10,000 random URLs and methods add no series', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/patients/:id', async () => 'ok')
  app.get('/boom', async () => { throw Object.assign(new Error('x'), { statusCode: 599 }) })
  // eslint-disable-next-line no-throw-literal -- a thrown non-Error must still give a bounded label
  app.get('/throw-string', async () => { throw 'not an error' as unknown as Error })
  t.teardown(() => app.close())
  const methods = ['GET', 'POST', 'PUT', 'PROPFIND', 'MKCOL', 'PURGE', 'SEARCH', 'LOCK', 'OPTIONS', 'PATCH', 'DELETE', 'REPORT']
  const random = () => Math.random().toString(36).slice(2)
  for (let i = 0; i < 20; i++) await app.inject('/patients/1')
  const before = parse((await app.inject('/metrics')).body).samples.size
  for (let i = 0; i < 10_000; i++) {
    const method = methods[i % methods.length]!
    const kind = i % 7
    const url = kind < 3 ? `/patients/${random()}?q=${random()}` : kind < 5 ? `/${random()}/${random()}` : `/boom?${random()}`
    await app.inject({ method: method as 'GET', url })
  }
  await app.inject('/throw-string')
  const m = parse((await app.inject('/metrics')).body)
  const views = new Set(series(m, 'django_http_responses_total_by_status_view_method_total').map((s) => s.labels.view))
  t.same([...views].sort(), ['/boom', '/patients/:id', '/throw-string', '<unnamed view>', 'prometheus-django-metrics'].sort())
  const methodsSeen = new Set(series(m, 'django_http_requests_total_by_method_total').map((s) => s.labels.method))
  t.ok([...methodsSeen].every((x) => ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'OPTIONS', 'CONNECT', 'PATCH', '<invalid method>'].includes(x!)))
  t.same(Object.keys(Object.fromEntries(series(m, 'django_http_exceptions_total_by_type_total').map((s) => [s.labels.type, 1]))).sort(), ['Error', 'String'])
  t.ok(m.samples.size < before + 600, `series stay bounded by routes × methods × statuses (${before} → ${m.samples.size})`)
  t.notMatch([...m.samples.keys()].join('\n'), /q=|\?/, 'no query strings in labels')
})

t.test('every metric has a cardinality cap with an overflow series', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, cardinalityLimit: 5 })
  for (let i = 0; i < 10; i++) app.get(`/r${i}`, async () => 'ok')
  t.teardown(() => app.close())
  for (let i = 0; i < 10; i++) await app.inject(`/r${i}`)
  const userCounter = app.upstreamMetrics.meter.createCounter('upstream_business_events')
  for (let i = 0; i < 10; i++) userCounter.add(1, { kind: `k${i}` })
  const m = parse((await app.inject('/metrics')).body)
  const byView = series(m, 'django_http_requests_total_by_view_transport_method_total')
  t.equal(byView.length, 5, '4 series and the overflow one')
  t.equal(byView.find((s) => s.labels.otel_metric_overflow === 'true')?.value, 7, '6 routes and the scrape')
  t.equal(byView.reduce((sum, s) => sum + s.value, 0), 11, 'nothing is lost: totals stay exact')
  const business = series(m, 'upstream_business_events_total')
  t.equal(business.length, 5, "the app's own metrics are capped too")
  t.equal(business.reduce((sum, s) => sum + s.value, 0), 10)
})

t.test('fault isolation: a failure while recording never breaks the request and is logged once', async (t) => {
  const log = capturingLogger()
  const app = Fastify({ logger: { level: 'error', stream: log.stream } })
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const poisoned = { metrics: { get view (): never { throw new Error('poisoned config') } } }
  app.get('/poisoned', { config: poisoned as never }, async () => 'still fine')
  t.teardown(() => app.close())
  for (let i = 0; i < 3; i++) {
    const response = await app.inject('/poisoned')
    t.equal(response.statusCode, 200)
    t.equal(response.body, 'still fine')
  }
  const logged = log.lines.filter((l) => l.includes('recording a metric failed'))
  t.equal(logged.length, 1, 'rate-limited to one log line')
  t.equal((await app.inject('/metrics')).statusCode, 200)
})

t.test('fault isolation: a failing observable callback leaves out only its own series, for that scrape', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  let failNext = true
  app.upstreamMetrics.meter.createObservableGauge('upstream_queue_depth').addCallback((result) => {
    if (failNext) {
      failNext = false
      throw new Error('backend unavailable')
    }
    result.observe(7)
  })
  t.teardown(() => app.close())
  const failed = await app.inject('/metrics')
  t.equal(failed.statusCode, 200, 'the scrape is served')
  t.notMatch(failed.body, /backend unavailable/, 'no internals in the response')
  t.notOk(parse(failed.body).samples.has('upstream_queue_depth'), 'without the failed callback\'s series')
  t.equal(parse(failed.body).samples.get('django_http_requests_before_middlewares_total'), 1, 'with the django series')
  const next = await app.inject('/metrics')
  t.equal(next.statusCode, 200)
  t.equal(parse(next.body).samples.get('upstream_queue_depth'), 7)
})

t.test('two Fastify instances in one process keep their own metrics', async (t) => {
  const a = Fastify()
  const b = Fastify()
  await a.register(upstreamMetrics, { runtimeMetrics: false })
  await b.register(upstreamMetrics, { runtimeMetrics: false })
  a.get('/a', async () => 'a')
  b.get('/b', async () => 'b')
  t.teardown(async () => { await a.close(); await b.close() })
  for (let i = 0; i < 3; i++) await a.inject('/a')
  await b.inject('/b')
  const ma = parse((await a.inject('/metrics')).body)
  const mb = parse((await b.inject('/metrics')).body)
  t.equal(ma.samples.get(key('django_http_requests_total_by_view_transport_method_total', { view: '/a', transport: 'http', method: 'GET' })), 3)
  t.equal(mb.samples.get(key('django_http_requests_total_by_view_transport_method_total', { view: '/b', transport: 'http', method: 'GET' })), 1)
  t.notOk(ma.samples.has(key('django_http_requests_total_by_view_transport_method_total', { view: '/b', transport: 'http', method: 'GET' })))
})

t.test('close() leaves no handles: the process exits by itself', async (t) => {
  const child = killOnExit(spawn(process.execPath, [fixture('lifecycle.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] }))
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += String(d) })
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  clearTimeout(timer)
  t.equal(out.trim(), 'closed')
  t.equal(code, 0, 'exited on its own, before the 20 s kill')
})

/** Starts test/fixtures/cluster.mjs (a primary and two workers on one port); killed at teardown. */
async function startCluster (t: Test, env: Record<string, string>): Promise<number> {
  const port = await freePort()
  const child = killOnExit(spawn(process.execPath, [fixture('cluster.mjs')], { env: { ...process.env, PORT: String(port), WORKERS: '2', ...env }, stdio: ['ignore', 'pipe', 'inherit'] }))
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  t.teardown(() => { clearTimeout(killer); child.kill('SIGTERM') })
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => { if (String(d).includes('ready')) resolve() })
    child.on('exit', () => reject(new Error('cluster fixture exited early')))
  })
  return port
}

t.test('cluster workers: a scrape returns totals over all workers', async (t) => {
  const port = await startCluster(t, {})
  const pids = new Set<number>()
  for (let i = 0; i < 40; i++) pids.add(JSON.parse((await get(`http://127.0.0.1:${port}/who`)).body).pid)
  t.equal(pids.size, 2, 'requests were spread over both workers')
  for (let scrape = 0; scrape < 4; scrape++) {
    const m = parse((await get(`http://127.0.0.1:${port}/metrics`)).body)
    t.equal(m.samples.get(key('django_http_requests_total_by_view_transport_method_total', { view: '/who', transport: 'http', method: 'GET' })), 40, `scrape ${scrape}: /who total over both workers`)
    t.equal(m.samples.get(key('django_http_responses_before_middlewares_total')), 40 + scrape, 'every earlier scrape counted once')
  }
})

t.test('fuzz: malformed requests crash nothing and the metrics still parse', async (t) => {
  const app = Fastify({ logger: false, requestTimeout: 2000, connectionTimeout: 2000 })
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.post('/upload', async (request) => ({ size: JSON.stringify(request.body).length }))
  app.get('/ok', async () => 'ok')
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  // Every response the server started has closed (its last event): nothing is left to record for it.
  let open = 0
  let idle = deferred()
  idle.resolve()
  app.server.on('request', (_request: IncomingMessage, response: ServerResponse) => {
    if (open++ === 0) idle = deferred()
    response.once('close', () => { if (--open === 0) idle.resolve() })
  })
  const settled = async (): Promise<void> => {
    await idle.promise
    await setImmediate()
  }
  let seed = 42
  const rand = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n }
  const garbage = (n: number) => Buffer.from(Array.from({ length: n }, () => rand(256)))
  const payloads: Array<() => Buffer | string> = [
    () => garbage(1 + rand(200)),
    () => `GET /${'a'.repeat(20_000 + rand(60_000))} HTTP/1.1\r\nHost: x\r\n\r\n`,
    () => `GET /ok HTTP/1.1\r\nHost: x\r\nX-Bad\u0000: ${garbage(10).toString('latin1')}\r\n\r\n`,
    () => 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"partial":',
    () => 'GET /ok HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n',
    () => 'BREW /ok HTTP/1.1\r\nHost: x\r\n\r\n',
    () => `GET /ok HTTP/1.1\r\n${'X-H: y\r\n'.repeat(3000)}\r\n`,
    () => 'GET /ok HTTP/1.1\r\nHost: x\r\n\r\n'
  ]
  const deadline = Date.now() + 30_000
  for (let i = 0; i < 240 && Date.now() < deadline; i++) {
    await new Promise<void>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      const done = () => { socket.destroy(); resolve() }
      socket.setTimeout(500, done)
      socket.on('error', done)
      socket.on('close', done)
      socket.on('connect', () => {
        socket.write(payloads[i % payloads.length]!())
        if (rand(3) === 0) socket.destroy()
        else setTimeout(done, rand(30))
      })
    })
  }
  const ok = await get(`http://127.0.0.1:${port}/ok`)
  t.equal(ok.status, 200, 'the server is healthy')
  await settled()
  const scraped = await get(`http://127.0.0.1:${port}/metrics`)
  t.equal(scraped.status, 200)
  const m = parse(scraped.body)
  const requests = m.samples.get('django_http_requests_before_middlewares_total')!
  const responses = m.samples.get('django_http_responses_before_middlewares_total')!
  t.equal(requests, responses + 1, 'requests and responses counted once each (the scrape is still in flight)')
  t.ok(responses > 0)
  t.ok(series(m, 'django_http_responses_total_by_status_total').length > 0)
})

t.test('a registration that fails half-way leaves nothing running or patched', async (t) => {
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => blocker.close())
  const port = (blocker.address() as { port: number }).port
  const before = { pg: patchRefs('pg'), ioredis: patchRefs('ioredis') }
  const app = Fastify({ logger: false })
  await t.rejects(async () => { await app.register(upstreamMetrics, { listener: { host: '127.0.0.1', port } }) }, { code: 'EADDRINUSE' })
  await app.close().catch(() => {})
  t.same({ pg: patchRefs('pg'), ioredis: patchRefs('ioredis') }, before, 'patch references released')
})

t.test('exclusion patterns with the g flag exclude every time', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, excludePaths: [/^\/ready/g], countScrape: false })
  app.get('/ready', async () => 'ok')
  t.teardown(() => app.close())
  for (let i = 0; i < 4; i++) await app.inject('/ready')
  t.equal(parse((await app.inject('/metrics')).body).samples.get('django_http_requests_before_middlewares_total'), 0)
})

t.test('cluster: a round missing a worker fails the scrape instead of answering partial totals', async (t) => {
  const port = await startCluster(t, { SILENT_WORKER: '1', PRIMARY_TIMEOUT_MS: '800' })
  // The silent worker has no /metrics route (404); the other one must refuse to answer a partial sum.
  const statuses = new Set<number>()
  for (let i = 0; i < 8; i++) statuses.add((await get(`http://127.0.0.1:${port}/metrics`)).status)
  t.ok(statuses.has(500), 'a worker that never answers makes the scrape fail')
  t.notOk(statuses.has(200), 'never partial totals, which Prometheus would read as a counter reset')
})
