// Scrape cost at N route templates, 10 requests each: this plugin's /metrics text vs
// prom-client holding the same django HTTP series. Prints one JSON line.
import { createRequire } from 'node:module'
import autocannon from 'autocannon'
import Fastify from 'fastify'

const require = createRequire(import.meta.url)
const [impl, routesArg, iterationsArg] = process.argv.slice(2)
const routes = Number(routesArg)
const iterations = Number(iterationsArg)
const PER_ROUTE = 10
// Another build (e.g. a copy of dist/ from before a change) can be compared with BENCH_DIST=path.
const dist = process.env.BENCH_DIST === undefined ? new URL('../dist/', import.meta.url) : new URL(`${process.env.BENCH_DIST}/`, `file://${process.cwd()}/`)

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

async function pluginScrape () {
  const { default: upstreamMetrics } = await import(new URL('entry.mjs', dist).href)
  const app = Fastify({ logger: false })
  await app.register(upstreamMetrics, { runtimeMetrics: false, cardinalityLimit: 100_000 })
  for (let r = 0; r < routes; r++) app.get(`/r${r}/items/:id`, async () => ({ ok: true }))
  // Real HTTP, not app.inject(): injected requests stay reachable here (~10 kB each), and the
  // bloated heap would be paid by the scrape's garbage collections.
  await app.listen({ host: '127.0.0.1', port: 0 })
  let next = 0
  const result = await autocannon({
    url: `http://127.0.0.1:${app.server.address().port}`,
    connections: 8,
    amount: routes * PER_ROUTE,
    requests: [{ setupRequest: (request) => ({ ...request, path: `/r${next % routes}/items/${Math.floor(next++ / routes)}` }) }]
  })
  if (result.non2xx > 0 || result.errors > 0) throw new Error('requests failed')
  return { scrape: () => app.upstreamMetrics.metrics(), close: () => app.close() }
}

/** The same series prom-client would hold for a django-style middleware (names from the plugin's table). */
async function promClientScrape () {
  const client = require('prom-client')
  const { HTTP, DJANGO_BODY_BUCKETS, DJANGO_LATENCY_BUCKETS, exposedName } = require(new URL('names.js', dist).pathname)
  const registry = new client.Registry()
  const m = {}
  for (const [key, spec] of Object.entries(HTTP)) {
    const config = { name: exposedName(spec.name, spec.type), help: spec.help, labelNames: [...spec.labels], registers: [registry] }
    m[key] = spec.type === 'histogram'
      ? new client.Histogram({ ...config, buckets: [...(spec.buckets === 'body' ? DJANGO_BODY_BUCKETS : DJANGO_LATENCY_BUCKETS)] })
      : new client.Counter(config)
    if (spec.labels.length === 0 && spec.type === 'counter') m[key].inc(0)
  }
  for (let r = 0; r < routes; r++) {
    const view = `/r${r}/items/:id`
    for (let i = 0; i < PER_ROUTE; i++) {
      m.requestsBefore.inc()
      m.byMethod.inc({ method: 'GET' })
      m.byTransport.inc({ transport: 'http' })
      m.byViewTransportMethod.inc({ view, transport: 'http', method: 'GET' })
      m.requestBody.observe(0)
      const seconds = 0.0001 + Math.random() * 0.001
      m.responsesBefore.inc()
      m.latencyIncluding.observe(seconds)
      m.latencyByViewMethod.observe({ view, method: 'GET' }, seconds)
      m.byStatus.inc({ status: '200' })
      m.byStatusViewMethod.inc({ status: '200', view, method: 'GET' })
      m.responseBody.observe(11)
      m.byCharset.inc({ charset: 'utf-8' })
    }
  }
  return { scrape: () => registry.metrics(), close: async () => {} }
}

const target = impl === 'plugin' ? await pluginScrape() : await promClientScrape()
let text = await target.scrape()
const times = []
for (let i = 0; i < iterations; i++) {
  const start = process.hrtime.bigint()
  text = await target.scrape()
  times.push(Number(process.hrtime.bigint() - start) / 1e6)
}
await target.close()
const samples = text.split('\n').filter((line) => line !== '' && !line.startsWith('#')).length
console.log(JSON.stringify({ impl, routes, medianMs: median(times), minMs: Math.min(...times), maxMs: Math.max(...times), bytes: Buffer.byteLength(text), samples }))
