import { Agent, request } from 'node:http'
import { connect, type Socket } from 'node:net'
import { Readable } from 'node:stream'
import { setImmediate } from 'node:timers/promises'
import t from 'tap'
import Fastify, { type FastifyInstance, type FastifyReply, type InjectOptions, type onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import upstreamMetrics from '../lib/index'
import { key, parse, series, type Exposition } from './helpers/metrics'
import { deferred, waitFor } from './helpers/wait'

class MaintenanceError extends Error { statusCode = 503 }
class NotAllowed extends Error { statusCode = 403 }
class UploadInterrupted extends Error {}

/** Everything but timings: latency `_sum` and bucket counts depend on the machine, `_created` on the clock. */
function comparable (text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k, v] of parse(text).samples) {
    if (!k.startsWith('django_http_')) continue
    if (/latency.*_(sum|bucket)|_created(\{|$)/.test(k)) continue
    out[k] = v
  }
  return out
}

/**
 * App gates that answer in `onRequest` before any route runs: an auth check (reply 401), a rate
 * limit (reply 429), a maintenance switch (throws a 503), an IP allow-list (`done(error)` 403).
 */
const gate: onRequestHookHandler = (request, reply, done) => {
  const url = request.url
  if (url.startsWith('/private') && request.headers.authorization !== 'Bearer ok') {
    reply.code(401).send({ error: 'unauthorized' })
    return
  }
  if (url.startsWith('/busy')) {
    reply.code(429).header('retry-after', '1').send('slow down')
    return
  }
  if (url === '/maintenance') throw new MaintenanceError('down for maintenance')
  if (url === '/admin') {
    done(new NotAllowed('not from this address'))
    return
  }
  if (url === '/healthz') {
    reply.send('ok')
    return
  }
  done()
}

async function gatedApp (order: 'plugin first' | 'gate first'): Promise<FastifyInstance> {
  const app = Fastify()
  if (order === 'gate first') {
    app.addHook('onRequest', gate)
    await app.register(upstreamMetrics, { runtimeMetrics: false, excludePaths: ['/healthz'] })
  } else {
    await app.register(upstreamMetrics, { runtimeMetrics: false, excludePaths: ['/healthz'] })
    app.addHook('onRequest', gate)
  }
  await app.register(rateLimit, { global: false })
  app.get('/private/claims/:id', async () => ({ claim: 1 }))
  app.get('/busy', async () => 'never')
  app.get('/maintenance', async () => 'never')
  app.get('/admin', async () => 'never')
  app.get('/healthz', async () => 'never')
  app.get('/hidden', { config: { metrics: { exclude: true } } }, async () => 'never')
  app.get('/limited', { config: { rateLimit: { max: 2, timeWindow: 60_000 } } }, async () => 'ok')
  app.post('/ajax', async () => ({ ok: true }))
  return app
}

async function gatedTraffic (app: FastifyInstance): Promise<number[]> {
  const statuses: number[] = []
  const send = async (options: string | InjectOptions) => statuses.push((await app.inject(options)).statusCode)
  for (let i = 0; i < 10; i++) await send('/busy')
  await send('/private/claims/1')
  await send({ url: '/private/claims/2', headers: { authorization: 'Bearer ok' } })
  await send({ method: 'POST', url: '/private/claims/3', payload: { a: 1 }, headers: { 'x-requested-with': 'XMLHttpRequest' } })
  await send('/maintenance')
  await send('/admin')
  await send('/healthz')
  await send('/hidden')
  for (let i = 0; i < 4; i++) await send('/limited')
  await send({ method: 'POST', url: '/ajax', payload: { a: 1 } })
  return statuses
}

t.test('responses sent by a gate registered before the plugin are counted as when it is registered after', async (t) => {
  const results: Record<string, { statuses: number[], text: string }> = {}
  for (const order of ['plugin first', 'gate first'] as const) {
    const app = await gatedApp(order)
    const statuses = await gatedTraffic(app)
    results[order] = { statuses, text: (await app.inject('/metrics')).body }
    await app.close()
  }
  const first = results['plugin first']!
  const late = results['gate first']!
  t.same(first.statuses, [...Array(10).fill(429), 401, 200, 401, 503, 403, 200, 200, 200, 200, 429, 429, 200])
  t.same(late.statuses, first.statuses)

  const m = parse(late.text)
  const v = (name: string, labels?: Record<string, string>) => m.samples.get(key(name, labels))
  t.equal(v('django_http_responses_total_by_status_total', { status: '429' }), 12, '10 gated 429s and 2 from @fastify/rate-limit')
  t.equal(v('django_http_responses_total_by_status_view_method_total', { status: '429', view: '/busy', method: 'GET' }), 10)
  t.equal(v('django_http_responses_total_by_status_view_method_total', { status: '401', view: '<unnamed view>', method: 'POST' }), 1, 'no POST route: unmatched, as django labels a resolver miss')
  t.equal(v('django_http_requests_total_by_view_transport_method_total', { view: '/busy', transport: 'http', method: 'GET' }), 10)
  t.equal(v('django_http_exceptions_total_by_type_total', { type: 'MaintenanceError' }), 1, 'a gate that throws is an exception, as with the plugin first')
  t.equal(v('django_http_exceptions_total_by_type_total', { type: 'NotAllowed' }), 1)
  t.equal(v('django_http_exceptions_total_by_view_total', { view: '/maintenance' }), 1)
  t.equal(v('django_http_requests_latency_seconds_by_view_method_count', { view: '/maintenance', method: 'GET' }), 2, 'observed twice, as every exception')
  t.equal(v('django_http_ajax_requests_total'), 1)
  t.equal(v('django_http_requests_before_middlewares_total'), 21, '22 requests less /healthz and /hidden (excluded), and the scrape')
  t.equal(v('django_http_responses_before_middlewares_total'), 20)
  t.notOk(series(m, 'django_http_requests_total_by_view_transport_method_total').some((s) => s.labels.view === '/hidden'), 'an excluded route stays excluded')
  t.same(comparable(late.text), comparable(first.text), 'every django HTTP series equal, whatever the registration order')
})

t.test('a global gate beside @fastify/rate-limit, both before the plugin', async (t) => {
  const texts: string[] = []
  for (const order of ['plugin first', 'gate first'] as const) {
    const app = Fastify()
    const allowList: onRequestHookHandler = (request, reply, done) => {
      if (request.headers['x-forwarded-for'] === '203.0.113.9') reply.code(403).send('blocked')
      else done()
    }
    if (order === 'gate first') app.addHook('onRequest', allowList)
    await app.register(rateLimit, { max: 3, timeWindow: 60_000, allowList: (request) => request.url === '/metrics' })
    await app.register(upstreamMetrics, { runtimeMetrics: false })
    if (order === 'plugin first') app.addHook('onRequest', allowList)
    app.get('/claims', async () => ({ claims: [] }))
    const statuses = []
    for (let i = 0; i < 5; i++) statuses.push((await app.inject('/claims')).statusCode)
    for (let i = 0; i < 2; i++) statuses.push((await app.inject({ url: '/claims', headers: { 'x-forwarded-for': '203.0.113.9' } })).statusCode)
    t.same(statuses, [200, 200, 200, 429, 429, 403, 403], order)
    texts.push((await app.inject('/metrics')).body)
    await app.close()
  }
  const m = parse(texts[1]!)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '429', view: '/claims', method: 'GET' })), 2)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '403', view: '/claims', method: 'GET' })), 2)
  t.same(comparable(texts[1]!), comparable(texts[0]!))
})

async function openSocket (port: number): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket))
    socket.on('error', reject)
  })
}

/**
 * A handler held open until `finish()`: `running` resolves when it is entered, `closed` when the
 * server sees its connection close.
 */
function holdHandler (): { running: Promise<void>, released: Promise<void>, finish: () => Promise<void>, enter: (reply: FastifyReply) => void, closed: Promise<void> } {
  const running = deferred()
  const released = deferred()
  const closed = deferred()
  return {
    running: running.promise,
    released: released.promise,
    /**
     * Lets the handler return, and resolves once the reply it returns has gone through Fastify: its
     * continuation runs before this one, and on a closed connection nothing of the reply waits on I/O
     * (no `finish`, `error` nor `onResponse` follow), so the ticks and microtasks it queued are all.
     */
    async finish () {
      released.resolve()
      await released.promise
      await setImmediate()
    },
    enter (reply) {
      reply.raw.once('close', () => closed.resolve())
      running.resolve()
    },
    closed: closed.promise
  }
}

/**
 * Resolves once `n` responses of `app` have closed (a response's last event), and the ticks and
 * microtasks queued by their close have run: nothing more can be recorded for them.
 */
function responsesClosed (app: FastifyInstance): (n: number) => Promise<void> {
  let closed = 0
  const waiting: Array<{ n: number, done: () => void }> = []
  app.addHook('onRequest', (_request, reply, done) => {
    reply.raw.once('close', () => {
      closed++
      for (const w of waiting) if (closed >= w.n) w.done()
    })
    done()
  })
  return async (n) => {
    const all = deferred()
    waiting.push({ n, done: all.resolve })
    if (closed >= n) all.resolve()
    await all.promise
    await setImmediate()
  }
}

async function local (app: FastifyInstance): Promise<Exposition> {
  return parse(await app.upstreamMetrics.metrics())
}

t.test('a request the client abandons while the handler runs is counted when the handler finishes', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const held = holdHandler()
  app.get('/slow/:id', async (request, reply) => {
    held.enter(reply)
    await held.released
    reply.code(202)
    return { queued: (request.params as { id: string }).id }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port

  const socket = await openSocket(port)
  socket.write('GET /slow/1 HTTP/1.1\r\nHost: localhost\r\n\r\n')
  await held.running
  socket.destroy()
  await held.closed
  let m = await local(app)
  t.equal(m.samples.get(key('django_http_responses_before_middlewares_total')), 0, 'nothing to record while the handler runs')
  await held.finish()
  m = await local(app)
  t.equal(m.samples.get(key('django_http_requests_before_middlewares_total')), 1)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '202', view: '/slow/:id', method: 'GET' })), 1, 'with the status the handler set')
  t.equal(m.samples.get(key('django_http_requests_latency_seconds_by_view_method_count', { view: '/slow/:id', method: 'GET' })), 1)
  t.equal(m.samples.get(key('django_http_requests_latency_including_middlewares_seconds_count')), 1)
  t.equal(m.samples.get(key('django_http_responses_body_total_bytes_count')), 1, 'the body the handler produced')
  t.equal(m.samples.get(key('django_http_responses_body_total_bytes_sum')), Buffer.byteLength(JSON.stringify({ queued: '1' })))
  t.same(series(m, 'django_http_exceptions_total_by_type_total'), [], 'an abort is not an exception')
  t.equal(m.samples.get(key('django_http_responses_before_middlewares_total')), 1, 'recorded once')
})

t.test('an aborted request whose handler throws is one exception and one 500', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const held = holdHandler()
  app.get('/fails', async (_request, reply) => {
    held.enter(reply)
    await held.released
    throw new RangeError('late failure')
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const socket = await openSocket((app.server.address() as { port: number }).port)
  socket.write('GET /fails HTTP/1.1\r\nHost: localhost\r\n\r\n')
  await held.running
  socket.destroy()
  await held.closed
  await held.finish()
  const m = await local(app)
  t.equal(m.samples.get(key('django_http_responses_before_middlewares_total')), 1)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '500', view: '/fails', method: 'GET' })), 1)
  t.same(series(m, 'django_http_exceptions_total_by_type_total'), [{ labels: { type: 'RangeError' }, value: 1 }])
  t.equal(m.samples.get(key('django_http_requests_latency_seconds_by_view_method_count', { view: '/fails', method: 'GET' })), 2, 'observed twice, as every exception')
})

t.test('an aborted upload is a response with the status Fastify set, not an exception, unless the app threw', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const closed = responsesClosed(app)
  const arrived = new Map<string, Socket>()
  app.addHook('onRequest', (request, _reply, done) => {
    arrived.set(request.url, request.raw.socket)
    done()
  })
  app.post('/upload', async (request) => ({ bytes: String(request.body).length }))
  // This route reads the body itself and throws its own error when the upload breaks.
  app.register(async (streaming) => {
    streaming.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload))
    streaming.post('/upload-stream', async (request) => {
      let bytes = 0
      try {
        for await (const chunk of request.body as Readable) bytes += (chunk as Buffer).length
      } catch {
        throw new UploadInterrupted(`stopped after ${bytes} bytes`)
      }
      return { bytes }
    })
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port

  for (const [i, [path, type]] of ([['/upload', 'text/plain'], ['/upload-stream', 'application/octet-stream']] as const).entries()) {
    const socket = await openSocket(port)
    const head = `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${type}\r\nContent-Length: 100000\r\n\r\n`
    socket.write(head)
    socket.write('x'.repeat(1000))
    const server = await waitFor('the request to reach the app', () => arrived.get(path))
    await waitFor('the part of the body sent to reach the server', () => server.bytesRead >= Buffer.byteLength(head) + 1000)
    socket.destroy()
    await closed(i + 1)
  }
  const m = await local(app)
  t.equal(m.samples.get(key('django_http_requests_before_middlewares_total')), 2)
  t.equal(m.samples.get(key('django_http_responses_before_middlewares_total')), 2)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '400', view: '/upload', method: 'POST' })), 1, 'Fastify answers the broken body with 400')
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '500', view: '/upload-stream', method: 'POST' })), 1)
  t.same(series(m, 'django_http_exceptions_total_by_type_total'), [{ labels: { type: 'UploadInterrupted' }, value: 1 }], 'no Error for the disconnect itself; the app\'s own error counts')
  t.same(series(m, 'django_http_exceptions_total_by_view_total'), [{ labels: { view: '/upload-stream' }, value: 1 }])
  t.equal(m.samples.get(key('django_http_requests_body_total_bytes_sum')), 200000, 'the announced Content-Length, as django reads it')
})

t.test('a keep-alive connection: requests before an abort are counted once, the aborted one when its handler ends', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const closed = responsesClosed(app)
  const held = holdHandler()
  app.get('/fast', async () => 'fast')
  app.get('/slow', async (_request, reply) => {
    held.enter(reply)
    await held.released
    reply.code(504)
    return 'too late'
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const sockets = new Set<unknown>()
  const call = async (path: string) => await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)) })
    req.on('socket', (socket) => sockets.add(socket))
    req.on('error', reject)
    req.end()
  })
  t.same([await call('/fast'), await call('/fast'), await call('/fast')], [200, 200, 200])
  t.equal(sockets.size, 1, 'one connection')
  const slow = request({ host: '127.0.0.1', port, path: '/slow', agent })
  slow.on('socket', (socket) => sockets.add(socket))
  const aborted = new Promise<void>((resolve) => slow.on('error', () => resolve()))
  slow.end()
  await held.running
  slow.destroy()
  await aborted
  t.equal(sockets.size, 1, 'the abandoned request came on the same connection')
  await held.closed
  await held.finish()
  await closed(4)
  const m = await local(app)
  t.equal(m.samples.get(key('django_http_requests_before_middlewares_total')), 4)
  t.equal(m.samples.get(key('django_http_responses_before_middlewares_total')), 4)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '200', view: '/fast', method: 'GET' })), 3)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '504', view: '/slow', method: 'GET' })), 1)
})

t.test('a stream the client stops reading half-way is a streaming response, counted once', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const closed = responsesClosed(app)
  let produced = 0
  app.get('/export', async (_request, reply) => {
    const rows = new Readable({
      read () {
        produced++
        if (produced > 2000) { this.push(null); return }
        setTimeout(() => this.push(`row ${produced} ${'x'.repeat(1000)}\n`), 1)
      }
    })
    return reply.type('text/csv; charset=utf-8').send(rows)
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  await new Promise<void>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/export', agent: false }, (res) => {
      res.once('data', () => { req.destroy(); resolve() })
    })
    req.on('error', () => {})
    req.setTimeout(5000, () => reject(new Error('no data')))
    req.end()
  })
  await closed(1)
  t.ok(produced < 2000, 'the client left before the end')
  const m = await local(app)
  t.equal(m.samples.get(key('django_http_responses_before_middlewares_total')), 1)
  t.equal(m.samples.get(key('django_http_responses_streaming_total')), 1)
  t.equal(m.samples.get(key('django_http_responses_body_total_bytes_count')), 0)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '200', view: '/export', method: 'GET' })), 1)
})

t.test('a body too large for the socket, cut by the client during the transfer, is counted once', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const closed = responsesClosed(app)
  const big = 'x'.repeat(32 * 1024 * 1024)
  app.get('/big', async (_request, reply) => reply.type('text/plain').send(big))
  app.get('/small', async () => 'small')
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  let received = 0
  await new Promise<void>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/big', agent: false }, (res) => {
      res.once('data', (chunk: Buffer) => { received += chunk.length; req.destroy(); resolve() })
    })
    req.on('error', () => {})
    req.setTimeout(5000, () => reject(new Error('no data')))
    req.end()
  })
  t.ok(received < big.length, 'the client left before the end')
  await closed(1)
  t.equal((await local(app)).samples.get(key('django_http_responses_before_middlewares_total')), 1, 'the cut response')
  await new Promise<void>((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/small', agent: false }, (res) => { res.resume(); res.on('end', resolve) }).on('error', reject).end()
  })
  await closed(2)
  const m = await local(app)
  t.equal(m.samples.get(key('django_http_responses_before_middlewares_total')), 2)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '200', view: '/big', method: 'GET' })), 1)
  t.equal(m.samples.get(key('django_http_responses_body_total_bytes_sum')), big.length + 'small'.length, 'the body the handler produced, as django observes len(response.content)')
  t.equal(m.samples.get(key('django_http_responses_streaming_total')), 0)
})

t.test('registered through nested fastify-plugin wrappers, it is at the root and measures every route', async (t) => {
  const app = Fastify()
  const observability = fp(async (instance) => {
    await instance.register(fp(async (inner) => { await inner.register(upstreamMetrics, { runtimeMetrics: false }) }))
  })
  await app.register(observability)
  app.register(async (child) => { child.get('/claims/:id', async () => 'c') }, { prefix: '/v1' })
  app.get('/root', async () => 'r')
  t.teardown(() => app.close())
  await app.inject('/v1/claims/1')
  await app.inject('/root')
  const m = parse((await app.inject('/metrics')).body)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '200', view: '/v1/claims/:id', method: 'GET' })), 1)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '200', view: '/root', method: 'GET' })), 1)
})
