// OTLP push (option `otlp`): what it costs the app.
// 1. CPU per request with push on vs off, paired: bench/server.mjs with and without push, side by side at the
//    same rate on the same core, pushing every --interval ms to a receiver in another process.
// 2. One export (collect + encode + send, `fastify.upstreamMetrics.flush()`) at 1,000 route templates: wall
//    time and this process's CPU; the receiver runs in another process.
// 3. The receiver down for --down intervals: the failed exports and dropped points the plugin counts.
// Usage: npm run build && node bench/otlp.mjs [--quick] [--rounds 5] [--rate 3000] [--interval 1000]
// (npm run bench adds it to bench/RESULTS.md; --only=otlp runs it alone.)
import { execFileSync, fork } from 'node:child_process'
import { createServer } from 'node:http'
import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = fileURLToPath(new URL('.', import.meta.url))

if (process.argv[2] === '--receiver') {
  // Drains each export and answers 200, counting bytes; its CPU is not the app's.
  let bytes = 0
  let exports = 0
  const server = createServer((req, res) => {
    let size = 0
    req.on('data', (chunk) => { size += chunk.length })
    req.on('end', () => {
      bytes = size
      exports++
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }))
  process.on('disconnect', () => process.exit(0))
  process.on('message', (message) => {
    if (message === 'stats') process.send({ bytes, exports })
    else if (message === 'exit') server.close(() => process.exit(0))
  })
}

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const spread = (xs, digits = 1) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`

function child (script, args, env = {}) {
  const proc = fork(script, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const ask = (message) => new Promise((resolve) => {
    proc.once('message', resolve)
    proc.send(message)
  })
  const stop = () => new Promise((resolve) => {
    proc.once('exit', resolve)
    proc.send('exit')
  })
  return new Promise((resolve, reject) => {
    proc.once('error', reject)
    proc.once('message', (first) => resolve({ proc, first, ask, stop }))
  })
}

async function main () {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      rate: { type: 'string' },
      interval: { type: 'string', default: '1000' },
      down: { type: 'string' }
    }
  })
  const quick = values.quick
  const rounds = Number(values.rounds ?? (quick ? 2 : 5))
  const rate = Number(values.rate ?? (quick ? 2000 : 3000))
  const intervalMs = Number(values.interval)
  const downIntervals = Number(values.down ?? (quick ? 10 : 30))
  const warmupSeconds = quick ? 2 : 3
  const measureSeconds = quick ? 3 : 8
  const exportsMeasured = quick ? 5 : 20

  const receiver = await child(fileURLToPath(import.meta.url), ['--receiver'])
  const endpoint = `http://127.0.0.1:${receiver.first.port}/v1/metrics`
  const lines = []

  // 1. CPU per request, push on vs off, paired.
  const { default: autocannon } = await import('autocannon')
  const load = (port, options) => new Promise((resolve, reject) => {
    autocannon({ url: `http://127.0.0.1:${port}`, connections: 16, pipelining: 1, ...options }, (err, result) => err ? reject(err) : resolve(result))
  })
  const PATHS = [
    { method: 'GET', path: '/' },
    { method: 'GET', path: '/api/items/42' },
    { method: 'POST', path: '/api/users/7/orders', body: '{"sku":"a-1","qty":2}', headers: { 'content-type': 'application/json' } }
  ]
  const core = String(availableParallelism() - 1)
  const taskset = existsSync('/usr/bin/taskset') || existsSync('/bin/taskset')
  const ratios = []
  const on = []
  const off = []
  for (let round = 0; round < rounds; round++) {
    const servers = await Promise.all(['plugin', 'plugin+otlp'].map((setup) => child(`${here}server.mjs`, [setup], { OTLP_ENDPOINT: endpoint, OTLP_INTERVAL_MS: String(intervalMs) })))
    if (taskset) for (const s of servers) try { execFileSync('taskset', ['-a', '-p', '-c', core, String(s.proc.pid)], { stdio: 'ignore' }) } catch {}
    await Promise.all(servers.map((s) => load(s.first.port, { requests: PATHS, overallRate: rate, duration: warmupSeconds })))
    const before = await Promise.all(servers.map((s) => s.ask('snapshot')))
    await Promise.all(servers.map((s) => load(s.first.port, { requests: PATHS, overallRate: rate, duration: measureSeconds })))
    const after = await Promise.all(servers.map((s) => s.ask('snapshot')))
    await Promise.all(servers.map((s) => s.stop()))
    const [plain, pushing] = after.map((a, i) => (a.cpu - before[i].cpu) / (a.served - before[i].served))
    off.push(plain)
    on.push(pushing)
    ratios.push(pushing / plain)
    console.error(`otlp cpu round ${round + 1}/${rounds}: push on ${pushing.toFixed(1)} µs/req, off ${plain.toFixed(1)} µs/req`)
  }
  lines.push(
    `Paired: bench/server.mjs with all HTTP metrics (runtimeMetrics: false), without and with \`otlp\` pushing every ${intervalMs} ms ` +
    `(60 s by default) to a receiver in another process, side by side at ${rate} req/s, ${warmupSeconds} s warm-up, ${measureSeconds} s measured, ` +
    `${rounds} rounds${taskset ? `, both pinned to core ${core}` : ''}. CPU is each server's own \`process.cpuUsage()\` over the window per request served. Median (min–max).`,
    '',
    '| setup | server CPU µs / request | vs push off |',
    '|---|---|---|',
    `| push off | ${spread(off)} | 1.00 |`,
    `| push on, every ${intervalMs} ms | ${spread(on)} | ${spread(ratios, 2)} |`,
    ''
  )

  // 2. One export at 1,000 route templates.
  const { default: Fastify } = await import('fastify')
  const { default: upstreamMetrics } = await import('../dist/entry.mjs')
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, countScrape: false, otlp: { endpoint, intervalMs: 600_000 } })
  for (let i = 0; i < 1000; i++) app.get(`/route${i}/:id`, async () => 'ok')
  await app.ready()
  for (let i = 0; i < 1000; i++) for (let j = 0; j < 10; j++) await app.inject(`/route${i}/${j}`)
  const samples = (await app.upstreamMetrics.metrics()).split('\n').filter((l) => l !== '' && !l.startsWith('#')).length
  await app.upstreamMetrics.flush() // warm
  const wall = []
  const cpu = []
  for (let i = 0; i < exportsMeasured; i++) {
    const t0 = process.hrtime.bigint()
    const c0 = process.cpuUsage()
    await app.upstreamMetrics.flush()
    const c = process.cpuUsage(c0)
    wall.push(Number(process.hrtime.bigint() - t0) / 1e6)
    cpu.push((c.user + c.system) / 1000)
  }
  const { bytes } = await receiver.ask('stats')
  await app.close()
  lines.push(
    `One export at 1,000 route templates (10 GET each; ${samples} samples on /metrics): \`flush()\` = collect + encode (protobuf) + send ` +
    `to the receiver in another process and its answer, ${exportsMeasured} times. Payload ${(bytes / 1024).toFixed(0)} KiB. Median (min–max).`,
    '',
    '| wall ms / export | this process CPU ms / export |',
    '|---|---|',
    `| ${spread(wall, 2)} | ${spread(cpu, 2)} |`,
    ''
  )

  // 3. Receiver down: nothing listens on the port.
  await receiver.stop()
  const downInterval = 200
  const down = Fastify()
  await down.register(upstreamMetrics, { runtimeMetrics: false, countScrape: false, otlp: { endpoint, intervalMs: downInterval, timeoutMs: 150 } })
  down.get('/x', async () => 'ok')
  await down.ready()
  const start = Date.now()
  let served = 0
  let failedRequests = 0
  while (Date.now() - start < downIntervals * downInterval + downInterval / 2) {
    const res = await down.inject('/x')
    served++
    if (res.statusCode !== 200) failedRequests++
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const text = await down.upstreamMetrics.metrics()
  await down.close()
  const value = (name) => Number(text.split('\n').find((l) => l.startsWith(name))?.split(' ').pop() ?? NaN)
  lines.push(
    `Receiver down for ${downIntervals} intervals of ${downInterval} ms (timeoutMs 150), the app serving requests meanwhile:`,
    '',
    '| intervals | failed exports | successful exports | dropped points | requests served | failed requests |',
    '|---|---|---|---|---|---|',
    `| ${downIntervals} | ${value('upstream_metrics_otlp_exports_total{result="failure"}')} | ${value('upstream_metrics_otlp_exports_total{result="success"}')} | ${value('upstream_metrics_otlp_dropped_points_total')} | ${served} | ${failedRequests} |`
  )
  console.log(lines.join('\n'))
}

if (process.argv[2] !== '--receiver') await main()
