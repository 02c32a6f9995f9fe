// Checks that two builds expose the same /metrics text for the same requests, latency
// and body sizes aside: node bench/equivalence.mjs <distA> <distB>. Used to keep performance
// changes output-neutral.
import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import Fastify from 'fastify'

const require = createRequire(import.meta.url)

async function scrape (dist) {
  const { default: upstreamMetrics } = require(`${dist}/index.js`)
  const app = Fastify({ logger: false })
  app.get('/early/:id', async () => 'declared before the plugin')
  await app.register(upstreamMetrics, { runtimeMetrics: false, excludePaths: ['/health', /^\/skip/] })
  app.get('/', async () => ({ hello: 'world' }))
  app.get('/items/:id', async (request) => ({ id: request.params.id }))
  app.post('/items', async (request, reply) => { reply.code(201); return request.body })
  app.get('/named', { config: { metrics: { view: 'named-view' } } }, async () => 'named')
  app.get('/excluded', { config: { metrics: { exclude: true } } }, async () => 'x')
  app.get('/health', async () => 'ok')
  app.get('/skip/me', async () => 'ok')
  app.get('/boom', async () => { throw new TypeError('boom') })
  app.get('/latin', async (request, reply) => reply.type('text/html; charset=ISO-8859-1').send('x'))
  app.get('/empty', async (request, reply) => reply.code(204).send())
  app.get('/stream', async (request, reply) => reply.type('application/octet-stream').send(Readable.from(['a', 'b'])))
  app.all('/any', async () => 'any')
  await app.ready()
  const requests = [
    { url: '/' }, { url: '/' }, { url: '/items/1' }, { url: '/items/2?x=1' },
    { method: 'POST', url: '/items', payload: { a: 1 } }, { method: 'POST', url: '/items', payload: 'x'.repeat(5000), headers: { 'content-type': 'text/plain' } },
    { url: '/named' }, { url: '/excluded' }, { url: '/health' }, { url: '/skip/me' }, { url: '/boom' }, { url: '/boom' },
    { url: '/latin' }, { url: '/empty' }, { url: '/stream' }, { url: '/nope' }, { method: 'DELETE', url: '/nope/2' },
    { method: 'HEAD', url: '/' }, { method: 'OPTIONS', url: '/any' }, { method: 'PROPFIND', url: '/any' }, { method: 'PATCH', url: '/any' },
    { url: '/early/1' }, { url: '/', headers: { 'x-requested-with': 'XMLHttpRequest' } }, { url: '/metrics' }
  ]
  for (let round = 0; round < 3; round++) {
    for (const r of requests) await app.inject(r)
  }
  const text = await app.upstreamMetrics.metrics()
  await app.close()
  // Timing-dependent values: latencies, the size of the scrape response that printed them, creation times.
  return text.split('\n').map((line) => /^[^#].*(latency.*_(bucket|sum)|responses_body_total_bytes_sum|_created)/.test(line) ? line.replace(/ [^ ]+$/, ' <timing>') : line)
}

const [a, b] = process.argv.slice(2).map((p) => new URL(p, `file://${process.cwd()}/`).pathname.replace(/\/$/, ''))
const [left, right] = [await scrape(a), await scrape(b)]
let differences = 0
for (let i = 0; i < Math.max(left.length, right.length); i++) {
  if (left[i] !== right[i]) {
    if (differences++ < 20) console.log(`line ${i + 1}:\n- ${left[i]}\n+ ${right[i]}`)
  }
}
console.log(differences === 0 ? `identical (${left.length} lines)` : `${differences} lines differ`)
process.exitCode = differences === 0 ? 0 : 1
