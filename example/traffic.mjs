// Bounded traffic for the demo: a realistic mix of 2xx, redirects, validation 4xx, 404s, 5xx,
// database writes and errors, cache hits and misses.
//   npm run traffic -- [--url http://127.0.0.1:8000] [--duration 60] [--requests 5000] [--concurrency 4] (--help)
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'

const PAYERS = 5
let sequence = 0

function json (body) {
  return { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
}

/** [weight, name, request] — weights are relative frequencies. */
const SCENARIOS = [
  [14, 'list payers', () => ['GET', '/api/payers']],
  // A small id range makes most reads cache hits; ids past the seeded payers miss and 404.
  [20, 'payer (cached)', () => ['GET', `/api/payers/${1 + Math.floor(Math.random() * (PAYERS + 1))}`]],
  [8, 'list claims', () => ['GET', '/api/claims?limit=10']],
  [3, 'list claims, bad limit (400)', () => ['GET', '/api/claims?limit=1000']],
  [10, 'create claim', () => ['POST', '/api/claims', json({ payerId: 1 + (sequence % PAYERS), externalRef: `t-${process.pid}-${Date.now()}-${sequence++}`, amountCents: Math.floor(Math.random() * 50000) })]],
  [2, 'create claim, duplicate (409, db error)', () => ['POST', '/api/claims', json({ payerId: 1, externalRef: 'duplicate-ref', amountCents: 100 })]],
  [2, 'create claim, invalid (400)', () => ['POST', '/api/claims', json({ payerId: 'one', amountCents: -5 })]],
  [5, 'update claim', () => ['PATCH', `/api/claims/${1 + Math.floor(Math.random() * Math.max(sequence, 1))}`, json({ status: Math.random() < 0.3 ? 'denied' : 'approved' })]],
  [3, 'delete claim', () => ['DELETE', `/api/claims/${1 + Math.floor(Math.random() * Math.max(sequence, 1))}`]],
  [4, 'forecast (sometimes 500)', () => ['GET', `/api/payers/${1 + Math.floor(Math.random() * PAYERS)}/forecast`]],
  [3, 'drift report (slow)', () => ['GET', '/api/reports/drift']],
  [2, 'drift scan', () => ['POST', '/api/drift/scan']],
  [1, 'legacy report (500, db error)', () => ['GET', '/api/reports/legacy']],
  [3, 'claims page (template)', () => ['GET', '/claims']],
  [3, 'home (302)', () => ['GET', '/']],
  [3, 'unknown path (404)', () => ['GET', `/wp-login.php?x=${Math.floor(Math.random() * 3)}`]]
]
const TOTAL_WEIGHT = SCENARIOS.reduce((sum, [w]) => sum + w, 0)

function pick () {
  let r = Math.random() * TOTAL_WEIGHT
  for (const scenario of SCENARIOS) {
    r -= scenario[0]
    if (r < 0) return scenario
  }
  return SCENARIOS[0]
}

/**
 * Sends requests until `durationMs` passes or `maxRequests` were sent.
 * The first round sends every scenario once, so even a short run covers the whole mix.
 * @returns {Promise<{ requests: number, byStatus: Record<string, number>, failures: number }>}
 */
export async function generateTraffic ({ baseUrl = 'http://127.0.0.1:8000', durationMs = 60_000, maxRequests = 5000, concurrency = 4, signal } = {}) {
  const deadline = Date.now() + durationMs
  const byStatus = {}
  let sent = 0
  let failures = 0
  const queue = SCENARIOS.slice()

  async function send ([, , make]) {
    const [method, path, init = {}] = make()
    try {
      const response = await fetch(new URL(path, baseUrl), { method, redirect: 'manual', signal: AbortSignal.timeout(10_000), ...init })
      await response.arrayBuffer()
      byStatus[response.status] = (byStatus[response.status] ?? 0) + 1
    } catch {
      failures++
    }
  }

  async function worker () {
    while (sent < maxRequests && Date.now() < deadline && signal?.aborted !== true) {
      sent++
      await send(queue.shift() ?? pick())
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return { requests: sent, byStatus, failures }
}

const USAGE = `Usage: npm run traffic -- [options]
Sends a bounded, realistic mix of requests to the demo (2xx, redirects, 400s, 404s, 500s,
database writes and errors, cache hits and misses), then prints what it got back.

  --url URL             the demo (default $TRAFFIC_URL, else http://127.0.0.1:8000)
  --duration SECONDS    stop after this long (default 60)
  --requests N          stop after this many requests (default 5000)
  --concurrency N       requests in flight (default 4)
  -h, --help            this text`

/** Parses the command line; a bad one prints the usage and exits with status 2. */
function options (args) {
  let values
  try {
    ({ values } = parseArgs({
      args,
      options: {
        url: { type: 'string', default: process.env.TRAFFIC_URL ?? 'http://127.0.0.1:8000' },
        duration: { type: 'string', default: '60' },
        requests: { type: 'string', default: '5000' },
        concurrency: { type: 'string', default: '4' },
        help: { type: 'boolean', short: 'h', default: false }
      }
    }))
  } catch (err) {
    console.error(`${err.message}\n\n${USAGE}`)
    process.exit(2)
  }
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  for (const name of ['duration', 'requests', 'concurrency']) {
    const n = Number(values[name])
    if (!Number.isFinite(n) || n <= 0) {
      console.error(`--${name} must be a positive number\n\n${USAGE}`)
      process.exit(2)
    }
  }
  try {
    new URL(values.url) // eslint-disable-line no-new
  } catch {
    console.error(`--url must be a URL such as http://127.0.0.1:8000\n\n${USAGE}`)
    process.exit(2)
  }
  return values
}

async function main () {
  const values = options(process.argv.slice(2))
  const controller = new AbortController()
  process.once('SIGINT', () => controller.abort())
  console.log(`traffic: ${values.url} for at most ${values.duration}s / ${values.requests} requests`)
  const result = await generateTraffic({
    baseUrl: values.url,
    durationMs: Number(values.duration) * 1000,
    maxRequests: Number(values.requests),
    concurrency: Number(values.concurrency),
    signal: controller.signal
  })
  console.log(JSON.stringify(result))
  if (result.requests > 0 && result.failures === result.requests) {
    console.error(`no answer from ${values.url}: is the demo running (npm start)?`)
    process.exitCode = 1
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
