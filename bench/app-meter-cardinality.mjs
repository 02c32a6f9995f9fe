// The app's own meter under unbounded labels: rounds of requests, each labelled with a new id,
// a scrape after each round. Prints, per round, the series the scrape holds and the RSS after a GC.
// Not part of `npm run bench`: node --expose-gc bench/app-meter-cardinality.mjs [rounds] [requestsPerRound] [cardinalityLimit]
// Another build can be measured with BENCH_DIST=path (e.g. a copy of dist/ from before a change).
import autocannon from 'autocannon'
import Fastify from 'fastify'

const [rounds = 5, perRound = 20_000, limit = 2000] = process.argv.slice(2).map(Number)
const dist = process.env.BENCH_DIST === undefined ? new URL('../dist/', import.meta.url) : new URL(`${process.env.BENCH_DIST}/`, `file://${process.cwd()}/`)
const { default: upstreamMetrics } = await import(new URL('entry.mjs', dist).href)

const app = Fastify({ logger: false })
await app.register(upstreamMetrics, { runtimeMetrics: false, cardinalityLimit: limit })
const orders = app.upstreamMetrics.meter.createCounter('shop_orders')
const amounts = app.upstreamMetrics.meter.createHistogram('shop_order_amount', { unit: 'By' })
app.get('/orders/:id', async (request) => {
  orders.add(1, { id: request.params.id })
  amounts.record(100, { id: request.params.id })
  return 'ok'
})
await app.listen({ host: '127.0.0.1', port: 0 })
const url = `http://127.0.0.1:${app.server.address().port}`

const memory = () => {
  globalThis.gc?.()
  const { rss, heapUsed } = process.memoryUsage()
  return { rssMiB: Math.round(rss / 2 ** 20), heapMiB: Math.round(heapUsed / 2 ** 20) }
}
const rows = [{ round: 0, series: 0, ...memory() }]
let next = 0
for (let round = 1; round <= rounds; round++) {
  await autocannon({ url, connections: 8, amount: perRound, requests: [{ setupRequest: (r) => ({ ...r, path: `/orders/${next++}` }) }] })
  const text = await app.upstreamMetrics.metrics()
  const series = text.split('\n').filter((l) => l.startsWith('shop_orders_total')).length
  rows.push({ round, series, ...memory() })
}
await app.close()
console.log(JSON.stringify({ cardinalityLimit: limit, perRound, rows }))
