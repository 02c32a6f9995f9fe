import { hasSubscribers } from 'node:diagnostics_channel'
import { connect } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import upstreamMetrics from '../lib/index'
import { key, scrape } from './helpers/metrics'

// The response side is heard on Node's `http.server.response.finish` channel (HTTP/1), through
// listeners of the plugin's own otherwise (HTTP/2, inject()); the request side and the start of the
// latency are the plugin's `onRequest`, which runs before every other `onRequest` hook.

const CHANNEL = 'http.server.response.finish'

/** Any Fastify app, HTTP/1 or HTTP/2. */
interface App {
  inject: FastifyInstance['inject']
  listen: (options: { host: string, port: number }) => Promise<string>
  server: { address: () => AddressInfo | string | null }
}

async function listening (app: App): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return `http://127.0.0.1:${address.port}`
}

t.test('HTTP/2: every response is counted as over HTTP/1', async (t) => {
  const app = Fastify({ http2: true })
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/items/:id', async (request) => ({ id: (request.params as { id: string }).id }))
  app.post('/orders', async (request, reply) => reply.code(201).send({ ok: true }))
  t.teardown(() => app.close())
  const session = connect(await listening(app))
  t.teardown(() => session.close())
  const send = (headers: Record<string, string>, body?: string) => new Promise<number>((resolve, reject) => {
    const stream = session.request(headers)
    let status = 0
    stream.on('response', (h) => { status = Number(h[':status']) })
    stream.on('error', reject)
    stream.resume()
    stream.on('end', () => resolve(status))
    stream.end(body)
  })
  const statuses = []
  for (let i = 0; i < 3; i++) statuses.push(await send({ ':path': `/items/${i}` }))
  statuses.push(await send({ ':method': 'POST', ':path': '/orders', 'content-type': 'application/json' }, '{"a":1}'))
  statuses.push(await send({ ':path': '/nowhere' }))
  t.same(statuses, [200, 200, 200, 201, 404])

  const m = (await scrape(app)).samples
  t.equal(m.get(key('django_http_responses_total_by_status_view_method_total', { status: '200', view: '/items/:id', method: 'GET' })), 3)
  t.equal(m.get(key('django_http_responses_total_by_status_view_method_total', { status: '201', view: '/orders', method: 'POST' })), 1)
  t.equal(m.get(key('django_http_responses_total_by_status_total', { status: '404' })), 1)
  t.equal(m.get(key('django_http_requests_latency_including_middlewares_seconds_count')), 5)
  t.equal(m.get(key('django_http_responses_body_total_bytes_count')), 5)
  t.equal(m.get(key('django_http_responses_before_middlewares_total')), 5)
  t.equal(m.get(key('django_http_requests_before_middlewares_total')), 6, 'the five and the scrape')
})

t.test('two apps in one process: each counts its own responses only, and stops listening when closed', async (t) => {
  t.notOk(hasSubscribers(CHANNEL), 'nobody listens before the apps start')
  const app = async () => {
    const instance = Fastify()
    await instance.register(upstreamMetrics, { runtimeMetrics: false })
    instance.get('/', async () => 'hi')
    return instance
  }
  const first = await app()
  const second = await app()
  const firstUrl = await listening(first)
  const secondUrl = await listening(second)
  t.ok(hasSubscribers(CHANNEL))
  for (let i = 0; i < 4; i++) await (await fetch(`${firstUrl}/`)).text()
  await (await fetch(`${secondUrl}/`)).text()

  const view = (status: string) => key('django_http_responses_total_by_status_view_method_total', { status, view: '/', method: 'GET' })
  t.equal((await scrape(first)).samples.get(view('200')), 4)
  t.equal((await scrape(second)).samples.get(view('200')), 1)
  await first.close()
  t.ok(hasSubscribers(CHANNEL), 'the second app still listens')
  await (await fetch(`${secondUrl}/`)).text()
  t.equal((await scrape(second)).samples.get(view('200')), 2)
  await second.close()
  t.notOk(hasSubscribers(CHANNEL), 'closed apps leave no subscriber behind')
})

t.test('the latency includes the time of an onRequest hook added before the plugin', async (t) => {
  const app = Fastify()
  app.addHook('onRequest', async (request) => {
    if (request.url === '/slow-gate') await delay(40)
  })
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/slow-gate', async () => 'through')
  app.get('/fast', async () => 'through')
  t.teardown(() => app.close())
  const url = await listening(app)
  await (await fetch(`${url}/slow-gate`)).text()
  await (await fetch(`${url}/fast`)).text()

  const m = (await scrape(app)).samples
  const sum = (view: string) => m.get(key('django_http_requests_latency_seconds_by_view_method_sum', { view, method: 'GET' }))!
  t.ok(sum('/slow-gate') >= 0.035, `the gate's 40 ms are in the view's latency (${sum('/slow-gate')} s)`)
  t.ok(sum('/fast') < sum('/slow-gate'))
  t.ok(m.get(key('django_http_requests_latency_including_middlewares_seconds_sum'))! >= 0.035)
})
