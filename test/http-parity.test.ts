import { createReadStream, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import Fastify from 'fastify'
import fastifyStatic from '@fastify/static'
import fastifyView from '@fastify/view'
import upstreamMetrics from '../lib/index'
import { key, parse, series, type Exposition } from './helpers/metrics'
import { get } from './helpers/net'

// ejs ships no type declarations; @fastify/view only needs the module object.
const ejs = require('ejs') as object
const fixtures = join(__dirname, 'fixtures', 'http')
const report = join(fixtures, 'public', 'report.csv')

function byLabel (m: Exposition, name: string, label: string): Record<string, number> {
  return Object.fromEntries(series(m, name).map((s) => [s.labels[label], s.value]))
}

t.test('charset keeps the case the Content-Type spells, and stays bounded', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/latin1', async (_request, reply) => reply.type('text/csv; charset=ISO-8859-1').send('caf\xe9'))
  app.get('/quoted', async (_request, reply) => reply.type('text/html; charset="UTF-8"').send('<p>'))
  app.get('/binary', async (_request, reply) => reply.type('application/octet-stream').send(Buffer.from([1, 2])))
  app.get('/odd/:n', async (request, reply) => reply.type(`text/plain; charset=${'x'.repeat(50)}${(request.params as { n: string }).n}`).send('?'))
  t.teardown(() => app.close())
  await app.inject('/latin1')
  await app.inject('/latin1')
  await app.inject('/quoted')
  await app.inject('/binary')
  for (let i = 0; i < 5; i++) await app.inject(`/odd/${i}`)
  const m = parse((await app.inject('/metrics')).body)
  t.same(byLabel(m, 'django_http_responses_total_by_charset_total', 'charset'), {
    'ISO-8859-1': 2,
    'UTF-8': 1,
    'utf-8': 1, // no charset given: django's DEFAULT_CHARSET
    other: 5
  })
})

t.test('a stream payload is a streaming response even with a Content-Length, as django counts every FileResponse', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  await app.register(fastifyStatic, { root: join(fixtures, 'public'), prefix: '/static/' })
  app.get('/download', async (_request, reply) => {
    return reply.type('text/csv; charset=utf-8').header('content-length', statSync(report).size).send(createReadStream(report))
  })
  app.get('/web-stream', async (_request, reply) => reply.type('text/plain').send(new Blob(['web']).stream()))
  app.get('/text', async () => 'not a stream')
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const size = statSync(report).size
  const download = await get(`${base}/download`)
  t.equal(download.headers['content-length'], String(size))
  t.equal(download.body.length, size)
  const file = await get(`${base}/static/report.csv`)
  t.equal(file.status, 200)
  t.equal(file.headers['content-length'], String(size), '@fastify/static sends the length')
  t.equal((await get(`${base}/web-stream`)).body, 'web')
  t.equal((await get(`${base}/text`)).body, 'not a stream')
  const m = parse((await get(`${base}/metrics`)).body)
  t.equal(m.samples.get(key('django_http_responses_streaming_total')), 3, 'the read stream, the static file and the web stream')
  t.equal(m.samples.get(key('django_http_responses_body_total_bytes_count')), 1, 'only /text has its body observed')
  t.equal(m.samples.get(key('django_http_responses_body_total_bytes_sum')), 'not a stream'.length)
  t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '200', view: '/static/*', method: 'GET' })), 1)
})

t.test('a fetch Response with a body is a streaming response, even with a Content-Length; a plain object, a class instance and an empty Response are not', async (t) => {
  class Order { constructor (readonly id: number) {} }
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/response', async () => new Response('from a Response', { headers: { 'content-type': 'text/plain', 'content-length': '15' } }))
  app.get('/empty-response', async () => new Response(null, { status: 200 }))
  app.get('/object', async () => ({ plain: true }))
  app.get('/instance', async () => new Order(7))
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  t.equal((await get(`${base}/response`)).body, 'from a Response')
  t.equal((await get(`${base}/empty-response`)).status, 200)
  const object = await get(`${base}/object`)
  const instance = await get(`${base}/instance`)
  const m = parse((await get(`${base}/metrics`)).body)
  t.equal(m.samples.get(key('django_http_responses_streaming_total')), 1, 'only the Response with a body')
  t.equal(m.samples.get(key('django_http_responses_body_total_bytes_count')), 3, 'the empty Response, the object and the instance have their bodies observed')
  t.equal(m.samples.get(key('django_http_responses_body_total_bytes_sum')), object.body.length + instance.body.length)
})

t.test('django_http_responses_total_by_templatename_total counts replies rendered with @fastify/view', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  await app.register(fastifyView, { engine: { ejs }, root: join(fixtures, 'views') })
  app.get('/claims', async (_request, reply) => reply.view('claims.ejs', { claims: ['a', 'b'] }))
  app.get('/hello', async (_request, reply) => reply.view('hello.ejs', { name: 'Ada' }))
  // The types say a string; @fastify/view also renders `{ raw }` source, with no template name.
  app.get('/inline', async (_request, reply) => reply.view({ raw: '<p><%= n %></p>' } as unknown as string, { n: 1 }))
  app.get('/missing', async (_request, reply) => reply.view('nope.ejs', {}))
  app.get('/async', async (_request, reply) => reply.type('text/html').send(await reply.viewAsync('hello.ejs', { name: 'Bo' })))
  app.get('/json', async () => ({ plain: true }))
  // A template given by the app's own code: its label would be unbounded, so it is folded.
  app.get('/odd', async (_request, reply) => reply.view(`claims.ejs?${'x'.repeat(300)}`, { claims: [] }))
  t.teardown(() => app.close())
  const claims = await app.inject('/claims')
  t.match(claims.body, /<li>a<\/li><li>b<\/li>/)
  await app.inject('/claims')
  await app.inject('/hello')
  t.equal((await app.inject('/inline')).body, '<p>1</p>')
  t.equal((await app.inject('/missing')).statusCode, 500)
  t.match((await app.inject('/async')).body, /Hello Bo/)
  await app.inject('/json')
  await app.inject('/odd')
  const text = (await app.inject('/metrics')).body
  const m = parse(text)
  t.equal(m.help.get('django_http_responses_total_by_templatename_total'), 'Count of responses by template name.')
  t.equal(m.type.get('django_http_responses_total_by_templatename_total'), 'counter')
  t.same(byLabel(m, 'django_http_responses_total_by_templatename_total', 'templatename'), {
    'claims.ejs': 2,
    'hello.ejs': 1,
    None: 1, // rendered from code, not from a named template
    'nope.ejs': 1, // django counts a template response before it renders
    other: 1
  }, 'viewAsync + send and plain replies are not template responses, as in django')
})

t.test('@fastify/view registered inside an encapsulated plugin is seen too', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.register(async (pages) => {
    await pages.register(fastifyView, { engine: { ejs }, root: join(fixtures, 'views') })
    pages.get('/hello', async (_request, reply) => reply.view('hello.ejs', { name: 'Cy' }))
  }, { prefix: '/pages' })
  t.teardown(() => app.close())
  t.match((await app.inject('/pages/hello')).body, /Hello Cy/)
  t.match((await app.inject('/pages/hello')).body, /Hello Cy/)
  const m = parse((await app.inject('/metrics')).body)
  t.same(byLabel(m, 'django_http_responses_total_by_templatename_total', 'templatename'), { 'hello.ejs': 2 })
})

t.test('no templatename series without @fastify/view, HELP and TYPE still there', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  t.teardown(() => app.close())
  const m = parse((await app.inject('/metrics')).body)
  t.equal(m.type.get('django_http_responses_total_by_templatename_total'), 'counter')
  t.same(series(m, 'django_http_responses_total_by_templatename_total'), [])
})

class AnonymousBase extends Error {}

t.test('exception type: the thrown value\'s class name as JavaScript reports it, Fastify\'s own errors included', async (t) => {
  const app = Fastify({ bodyLimit: 100 })
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.post('/claims', { schema: { body: { type: 'object', required: ['amount'] } } }, async () => 'ok')
  app.get('/type-error', async () => { throw new TypeError('t') })
  /* eslint-disable no-throw-literal -- thrown non-Error values must get a bounded, explained label */
  app.get('/string', async () => { throw 'boom' })
  app.get('/number', async () => { throw 42 })
  app.get('/null', async () => { throw null })
  /* eslint-enable no-throw-literal */
  app.get('/anonymous', async () => { throw new (class extends AnonymousBase {})('a') })
  app.get('/callback', (_request, reply) => { reply.send(new RangeError('r')) })
  t.teardown(() => app.close())
  const statuses = [
    (await app.inject({ method: 'POST', url: '/claims', payload: { other: 1 } })).statusCode, // schema validation
    (await app.inject({ method: 'POST', url: '/claims', payload: 'x', headers: { 'content-type': 'application/x-unknown' } })).statusCode, // content-type parser
    (await app.inject({ method: 'POST', url: '/claims', payload: JSON.stringify({ amount: 'x'.repeat(200) }), headers: { 'content-type': 'application/json' } })).statusCode, // body too large
    (await app.inject({ method: 'POST', url: '/claims', payload: '{"amount', headers: { 'content-type': 'application/json' } })).statusCode, // invalid JSON
    (await app.inject('/no-such-route')).statusCode,
    (await app.inject('/type-error')).statusCode,
    (await app.inject('/string')).statusCode,
    (await app.inject('/number')).statusCode,
    (await app.inject('/null')).statusCode,
    (await app.inject('/anonymous')).statusCode,
    (await app.inject('/callback')).statusCode
  ]
  t.same(statuses, [400, 415, 413, 400, 404, 500, 500, 500, 500, 500, 500])
  const m = parse((await app.inject('/metrics')).body)
  t.same(byLabel(m, 'django_http_exceptions_total_by_type_total', 'type'), {
    Error: 1, // schema validation errors are plain Error
    FastifyError: 3, // 415, 413, invalid JSON: made with @fastify/error
    TypeError: 1,
    String: 1,
    Number: 1,
    null: 1,
    AnonymousBase: 1, // an anonymous class: the nearest named class it extends
    RangeError: 1
  }, 'a 404 from the router is no exception, as a resolver miss in django')
})
