import { request } from 'node:http'
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import upstreamMetrics from '../lib/index'
import { key, parse, type Exposition } from './helpers/metrics'

// A hijacked reply (server-sent events, long polls) is a streaming response for django: counted
// once, with the status it was written with, whether it ends or its client leaves.

async function local (app: FastifyInstance): Promise<Exposition> {
  return parse((await app.inject('/metrics')).body)
}

/** Opens `/events`, waits for its first event, then leaves. */
async function readFirstEventAndLeave (port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/events', agent: false }, (res) => {
      res.once('data', () => { req.destroy(); resolve() })
    })
    req.on('error', () => {})
    req.setTimeout(5000, () => reject(new Error('no event')))
    req.end()
  })
}

t.test('server-sent events the clients leave are counted as streaming responses', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const closed: Array<Promise<void>> = []
  app.get('/events', (request, reply) => {
    reply.hijack()
    closed.push(new Promise((resolve) => reply.raw.once('close', resolve)))
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    reply.raw.write('data: hello\n\n')
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const clients = 20
  await Promise.all(Array.from({ length: clients }, async () => await readFirstEventAndLeave(port)))
  t.equal(closed.length, clients)
  // Each response is recorded by the time the server sees it closed.
  await Promise.all(closed)
  const m = await local(app)
  t.equal(m.samples.get(key('django_http_requests_total_by_view_transport_method_total', { view: '/events', transport: 'http', method: 'GET' })), clients)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '200', view: '/events', method: 'GET' })), clients)
  t.equal(m.samples.get(key('django_http_requests_latency_seconds_by_view_method_count', { view: '/events', method: 'GET' })), clients)
  t.equal(m.samples.get(key('django_http_responses_streaming_total')), clients, 'no Content-Length: django\'s StreamingHttpResponse')
  t.equal(m.samples.get(key('django_http_responses_total_by_charset_total', { charset: 'utf-8' })), clients)
})

t.test('a hijacked long poll is counted once, whether it is answered or its client leaves', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const closed: Array<Promise<void>> = []
  app.get('/poll', (request, reply) => {
    reply.hijack()
    closed.push(new Promise((resolve) => reply.raw.once('close', resolve)))
    const answer = request.query as { now?: string }
    if (answer.now === '1') {
      reply.raw.writeHead(202, { 'content-type': 'application/json', 'content-length': '2' })
      reply.raw.end('{}')
    }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  // Answered by the app.
  await new Promise<void>((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/poll?now=1', agent: false }, (res) => { res.resume(); res.on('end', resolve) }).on('error', reject).end()
  })
  // Left by its client before any answer: the status is the one the response would have had.
  await new Promise<void>((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/poll', agent: false })
    req.on('error', () => resolve())
    req.end()
    // The request is on the server once its handler has run and hijacked the reply.
    const wait = (): void => { if (closed.length === 2) req.destroy(); else setImmediate(wait) }
    wait()
  })
  await Promise.all(closed)
  const m = await local(app)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '202', view: '/poll', method: 'GET' })), 1)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '200', view: '/poll', method: 'GET' })), 1)
  t.equal(m.samples.get(key('django_http_requests_latency_seconds_by_view_method_count', { view: '/poll', method: 'GET' })), 2)
  t.equal(m.samples.get(key('django_http_responses_streaming_total')), 2, 'written by the app, not by Fastify: streaming responses')
  t.equal(m.samples.get(key('django_http_responses_body_total_bytes_count')), 0)
})
