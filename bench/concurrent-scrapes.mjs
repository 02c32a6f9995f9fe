// Concurrent scrapes of a large exposition: N scrapes sent at once over HTTP, with one app request
// sent right after them. Prints the exposition size, the time until every scrape answered and the
// app request's latency (median of several rounds).
// Not part of `npm run bench`: node bench/concurrent-scrapes.mjs [scrapes] [routes] [rounds]
// Another build can be measured with BENCH_DIST=path (e.g. a copy of dist/ from before a change).
import { request } from 'node:http'
import autocannon from 'autocannon'
import Fastify from 'fastify'

const [scrapes = 20, routes = 1500, rounds = 7] = process.argv.slice(2).map(Number)
const dist = process.env.BENCH_DIST === undefined ? new URL('../dist/', import.meta.url) : new URL(`${process.env.BENCH_DIST}/`, `file://${process.cwd()}/`)
const { default: upstreamMetrics } = await import(new URL('entry.mjs', dist).href)

const app = Fastify({ logger: false })
await app.register(upstreamMetrics, { runtimeMetrics: false, cardinalityLimit: 100_000 })
for (let r = 0; r < routes; r++) app.get(`/r${r}/items/:id`, async () => 'ok')
app.get('/ping', async () => 'pong')
await app.listen({ host: '127.0.0.1', port: 0 })
const port = app.server.address().port
let next = 0
await autocannon({ url: `http://127.0.0.1:${port}`, connections: 8, amount: routes * 3, requests: [{ setupRequest: (r) => ({ ...r, path: `/r${next++ % routes}/items/1` }) }] })

function get (path) {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let bytes = 0
      res.on('data', (chunk) => { bytes += chunk.length })
      res.on('end', () => resolve({ ms: performance.now() - started, bytes, status: res.statusCode }))
    })
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const all = []
const app_ = []
let size = 0
for (let round = 0; round < rounds; round++) {
  const started = performance.now()
  const pending = Array.from({ length: scrapes }, () => get('/metrics'))
  const ping = get('/ping')
  const results = await Promise.all(pending)
  all.push(performance.now() - started)
  app_.push((await ping).ms)
  size = results[0].bytes
  if (results.some((r) => r.status !== 200)) throw new Error('a scrape failed')
}
await app.close()
console.log(JSON.stringify({ scrapes, routes, expositionMB: +(size / 1e6).toFixed(2), allScrapesMs: Math.round(median(all)), appRequestMs: Math.round(median(app_)) }))
