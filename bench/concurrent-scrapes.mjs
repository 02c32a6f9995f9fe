// Concurrent scrapes of a large exposition: N scrapes sent at once over HTTP, with one app request
// sent right after them, from a child process (so the clients do not share the server's event loop).
// Prints the exposition size, the time until every scrape answered and the app request's latency as
// the client saw them, and the server's CPU time and longest event-loop block per round (medians of
// several rounds; the server-side figures are the steadier ones on a shared machine).
// Not part of `npm run bench`: node bench/concurrent-scrapes.mjs [scrapes] [routes] [rounds]
// Another build can be measured with BENCH_DIST=path (e.g. a copy of dist/ from before a change).
import { fork } from 'node:child_process'
import { request } from 'node:http'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import autocannon from 'autocannon'
import Fastify from 'fastify'

if (process.argv[2] === '--client') {
  await client(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]))
  process.exit(0)
}

const [scrapes = 20, routes = 1000, rounds = 9] = process.argv.slice(2).map(Number)
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

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const blocks = monitorEventLoopDelay({ resolution: 1 })
blocks.enable()
const serverCpu = []
const serverBlock = []
let cpuAtStart
const child = fork(new URL(import.meta.url).pathname, ['--client', String(port), String(scrapes), String(rounds)])
const result = await new Promise((resolve, reject) => {
  child.on('message', (message) => {
    if (message === 'start') {
      blocks.reset()
      cpuAtStart = process.cpuUsage()
      child.send('go')
    } else if (message === 'end') {
      const cpu = process.cpuUsage(cpuAtStart)
      serverCpu.push((cpu.user + cpu.system) / 1000)
      serverBlock.push(blocks.max / 1e6)
      child.send('go')
    } else resolve(message)
  })
  child.once('exit', (code) => reject(new Error(`client exited ${code}`)))
})
await app.close()
console.log(JSON.stringify({ scrapes, routes, ...result, serverCpuMs: Math.round(median(serverCpu)), longestBlockMs: Math.round(median(serverBlock)) }))

async function client (port, scrapes, rounds) {
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
  const go = () => new Promise((resolve) => process.once('message', resolve))
  const all = []
  const ping = []
  let size = 0
  for (let round = 0; round < rounds; round++) {
    process.send('start')
    await go()
    const started = performance.now()
    const pending = Array.from({ length: scrapes }, () => get('/metrics'))
    const app = get('/ping')
    const results = await Promise.all(pending)
    all.push(performance.now() - started)
    ping.push((await app).ms)
    size = results[0].bytes
    if (results.some((r) => r.status !== 200)) throw new Error('a scrape failed')
    process.send('end')
    await go()
  }
  process.send({ expositionMB: +(size / 1e6).toFixed(2), allScrapesMs: Math.round(median(all)), appRequestMs: Math.round(median(ping)) })
}
