// One HTTP server for the CPU bench, in its own (pinned) process. The parent asks for
// snapshots over IPC; CPU time and request counts come from this process only.
import { getHeapSpaceStatistics } from 'node:v8'
import Fastify from 'fastify'

const setup = process.argv[2]
// Another build (bench/callgrind.mjs compares builds) with BENCH_DIST=path.
const dist = process.env.BENCH_DIST === undefined ? new URL('../dist/', import.meta.url) : new URL(`${process.env.BENCH_DIST}/`, `file://${process.cwd()}/`)
const app = Fastify({ logger: false })
let served = 0

if (setup === 'plugin' || setup === 'plugin+runtime' || setup === 'plugin+semconv') {
  const { default: upstreamMetrics } = await import(new URL('entry.mjs', dist))
  await app.register(upstreamMetrics, { runtimeMetrics: setup === 'plugin+runtime', http: { semconvMetrics: setup === 'plugin+semconv' } })
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
} else if (setup !== 'bare') {
  throw new Error(`unknown setup ${setup}`)
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
  } else if (message === 'exit') {
    app.close().then(() => process.exit(0))
  }
})
process.send({ port: app.server.address().port })
