// One HTTP server for the CPU bench, in its own (pinned) process. The parent asks for
// snapshots over IPC; CPU time and request counts come from this process only.
import { getHeapSpaceStatistics } from 'node:v8'
import Fastify from 'fastify'

const setup = process.argv[2]
// Another build (bench/callgrind.mjs compares builds) with BENCH_DIST=path.
const dist = process.env.BENCH_DIST === undefined ? new URL('../dist/', import.meta.url) : new URL(`${process.env.BENCH_DIST}/`, `file://${process.cwd()}/`)
const tracing = setup.endsWith('+tracing') || setup.endsWith('+tracing-noexemplars')
const app = Fastify({ logger: false, ...(tracing ? { serverFactory: await tracedServerFactory() } : {}) })
let served = 0

if (setup === 'plugin' || setup === 'plugin+runtime' || setup === 'plugin+semconv' || setup === 'plugin-noexemplars' ||
  setup === 'plugin+tracing' || setup === 'plugin+tracing-noexemplars') {
  const { default: upstreamMetrics } = await import(new URL('entry.mjs', dist))
  await app.register(upstreamMetrics, {
    runtimeMetrics: setup === 'plugin+runtime',
    exemplars: !setup.endsWith('noexemplars'),
    http: { semconvMetrics: setup === 'plugin+semconv' }
  })
} else if (setup === 'plugin+otlp') {
  // bench/otlp.mjs: the plugin pushing to its receiver.
  const { default: upstreamMetrics } = await import(new URL('entry.mjs', dist))
  await app.register(upstreamMetrics, { runtimeMetrics: false, otlp: { endpoint: process.env.OTLP_ENDPOINT, intervalMs: Number(process.env.OTLP_INTERVAL_MS) } })
} else if (setup === 'fastify-metrics') {
  const { default: fastifyMetrics } = await import('fastify-metrics')
  await app.register(fastifyMetrics, { endpoint: '/metrics', defaultMetrics: { enabled: false } })
} else if (setup === 'empty-hooks') {
  // The hook machinery alone: the same three hooks as the plugin, doing nothing.
  app.addHook('onRequest', (request, reply, done) => done())
  app.addHook('onResponse', (request, reply, done) => done())
  app.addHook('onError', (request, reply, error, done) => done())
} else if (setup === 'req-hook') {
  app.addHook('onRequest', (request, reply, done) => done())
} else if (setup === 'res-hook') {
  app.addHook('onResponse', (request, reply, done) => done())
} else if (setup.startsWith('load:')) {
  // Bare Fastify with one more module loaded and unused (e.g. load:@opentelemetry/sdk-metrics).
  await import(setup.slice(5))
} else if (setup !== 'bare' && setup !== 'bare+tracing') {
  throw new Error(`unknown setup ${setup}`)
}

/**
 * The app's own tracing, as an app with instrumentation-http has it: an AsyncLocalStorage context manager, every
 * request sampled, a server span per request made active around Fastify's handling of it (instrumentation-http wraps
 * the server's 'request' emit the same way) and ended when the response finishes; spans go through a
 * BatchSpanProcessor to an exporter that drops them.
 */
async function tracedServerFactory () {
  const { createServer } = await import('node:http')
  const { context, trace, SpanKind } = await import('@opentelemetry/api')
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks')
  const { AlwaysOnSampler, BatchSpanProcessor, TracerProvider } = await import('@opentelemetry/sdk-trace')
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  const exporter = { export: (spans, done) => done({ code: 0 }), shutdown: async () => {} }
  const provider = new TracerProvider({ sampler: new AlwaysOnSampler(), spanProcessors: [new BatchSpanProcessor({ exporter })] })
  trace.setGlobalTracerProvider(provider)
  const tracer = trace.getTracer('bench')
  return (handler) => createServer((req, res) => {
    const span = tracer.startSpan(req.method, { kind: SpanKind.SERVER, attributes: { 'http.request.method': req.method, 'url.path': req.url } })
    res.once('finish', () => {
      span.setAttribute('http.response.status_code', res.statusCode)
      span.end()
    })
    context.with(trace.setSpan(context.active(), span), handler, undefined, req, res)
  })
}

app.get('/', async () => { served++; return { hello: 'world' } })
app.get('/api/items/:id', async (request) => { served++; return { id: request.params.id, name: 'item' } })
app.post('/api/users/:id/orders', async (request, reply) => { served++; reply.code(201); return { user: request.params.id, ok: true } })

await app.listen({ host: '127.0.0.1', port: 0 })
process.on('message', (message) => {
  if (message === 'snapshot') {
    const { user, system } = process.cpuUsage()
    process.send({ cpu: user + system, served, rss: process.memoryUsage.rss() })
  } else if (message === 'settle') {
    const text = app.hasDecorator('upstreamMetrics') ? app.upstreamMetrics.metrics() : Promise.resolve('')
    text.then((body) => {
      const samples = body.split('\n').filter((line) => line !== '' && !line.startsWith('#')).length
      globalThis.gc?.()
      const newSpace = getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0
      process.send({ rss: process.memoryUsage.rss(), heapUsed: process.memoryUsage().heapUsed, newSpace, samples, served })
    })
  } else if (message === 'exemplars') {
    // The proof that the tracing setups record exemplars: an OpenMetrics scrape's exemplar count.
    app.inject({ url: '/metrics', headers: { accept: 'application/openmetrics-text; version=1.0.0' } })
      .then((reply) => process.send({ exemplars: reply.body.split('\n').filter((line) => line.includes(' # {')).length }))
  } else if (message === 'exit') {
    app.close().then(() => process.exit(0))
  }
})
process.send({ port: app.server.address().port })
