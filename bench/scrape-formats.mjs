// What the scrape formats cost at N route templates, 10 requests each: bytes served for text 0.0.4
// and OpenMetrics (with and without the `_created` series), gzip's size at levels 1, 6 and 9, and
// the CPU time (process.cpuUsage, user + system: not the wall clock) of serializing and compressing,
// each measured alternately so that load affects them alike. Prints one JSON line.
import { gzipSync } from 'node:zlib'
import autocannon from 'autocannon'
import Fastify from 'fastify'

const [routesArg = '1000', iterationsArg = '15'] = process.argv.slice(2)
const routes = Number(routesArg)
const iterations = Number(iterationsArg)
const PER_ROUTE = 10
const dist = process.env.BENCH_DIST === undefined ? new URL('../dist/', import.meta.url) : new URL(`${process.env.BENCH_DIST}/`, `file://${process.cwd()}/`)
const OPENMETRICS = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
const LEVELS = [1, 6, 9]

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const cpuMs = (run) => {
  const before = process.cpuUsage()
  run()
  const used = process.cpuUsage(before)
  return (used.user + used.system) / 1000
}

async function app (createdSeries) {
  const { default: upstreamMetrics } = await import(new URL('entry.mjs', dist).href)
  const fastify = Fastify({ logger: false })
  await fastify.register(upstreamMetrics, { runtimeMetrics: false, cardinalityLimit: 100_000, countScrape: false, createdSeries })
  for (let r = 0; r < routes; r++) fastify.get(`/r${r}/items/:id`, async () => ({ ok: true }))
  await fastify.listen({ host: '127.0.0.1', port: 0 })
  let next = 0
  const result = await autocannon({
    url: `http://127.0.0.1:${fastify.server.address().port}`,
    connections: 8,
    amount: routes * PER_ROUTE,
    requests: [{ setupRequest: (request) => ({ ...request, path: `/r${next % routes}/items/${Math.floor(next++ / routes)}` }) }]
  })
  if (result.non2xx > 0 || result.errors > 0) throw new Error('requests failed')
  return fastify
}

async function scrape (fastify, accept) {
  const reply = await fastify.inject({ method: 'GET', url: '/metrics', headers: accept === undefined ? {} : { accept } })
  return reply.rawPayload
}

const out = { routes }
for (const created of [true, false]) {
  const fastify = await app(created)
  const text = await scrape(fastify, undefined)
  const openMetrics = await scrape(fastify, OPENMETRICS)
  const key = created ? 'created' : 'noCreated'
  out[key] = { textBytes: text.length, openMetricsBytes: openMetrics.length, samples: text.toString().split('\n').filter((l) => l !== '' && !l.startsWith('#')).length }
  if (created) {
    // Serializing (a scrape's whole collect + write) in each format, alternately.
    const times = { text: [], openMetrics: [] }
    for (let i = 0; i < iterations; i++) {
      const t0 = process.cpuUsage()
      await scrape(fastify, undefined)
      const t1 = process.cpuUsage(t0)
      const o0 = process.cpuUsage()
      await scrape(fastify, OPENMETRICS)
      const o1 = process.cpuUsage(o0)
      times.text.push((t1.user + t1.system) / 1000)
      times.openMetrics.push((o1.user + o1.system) / 1000)
    }
    out.scrapeCpuMs = { text: median(times.text), openMetrics: median(times.openMetrics) }
    const gzip = {}
    for (const level of LEVELS) gzip[level] = { bytes: gzipSync(text, { level }).length, cpuMs: [] }
    for (let i = 0; i < iterations; i++) for (const level of LEVELS) gzip[level].cpuMs.push(cpuMs(() => gzipSync(text, { level })))
    for (const level of LEVELS) gzip[level].cpuMs = median(gzip[level].cpuMs)
    out.gzipOfText = gzip
  }
  await fastify.close()
}
console.log(JSON.stringify(out))
