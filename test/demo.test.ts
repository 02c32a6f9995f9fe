// `npm start` on a fresh machine: no DATABASE_URL, no REDIS_URL — embedded PostgreSQL and an
// in-process cache; after the traffic generator's mix, /metrics has every HTTP and runtime family.
import t from 'tap'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { exposedName, HTTP, RUNTIME, type MetricSpec } from '../lib/names'
// @ts-expect-error the traffic generator is plain JavaScript
import { generateTraffic } from '../example/traffic.mjs'

const ROOT = resolve(__dirname, '..')

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

t.test('the demo runs with nothing installed and every HTTP and runtime metric has data', async (t) => {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const child = spawn(process.execPath, ['example/server.mjs'], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: '', REDIS_URL: '', HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (c: Buffer) => { output = (output + c.toString()).slice(-4000) })
  child.stderr.on('data', (c: Buffer) => { output = (output + c.toString()).slice(-4000) })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  t.teardown(async () => {
    if (child.exitCode !== null) return
    child.kill('SIGTERM')
    if (await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]) === false) child.kill('SIGKILL')
  })

  let ready = false
  for (let i = 0; i < 120 && !ready && child.exitCode === null; i++) {
    ready = await fetch(`${base}/healthz`).then((r) => r.ok, () => false)
    if (!ready) await sleep(250)
  }
  t.ok(ready, `the demo answers /healthz\n${output}`)

  const sent = await generateTraffic({ baseUrl: base, durationMs: 20_000, maxRequests: 200, concurrency: 2 }) as { requests: number, byStatus: Record<string, number>, failures: number }
  t.equal(sent.failures, 0, `every request got an answer: ${JSON.stringify(sent)}`)
  t.ok(sent.requests <= 200, 'the generator keeps to its request bound')
  // The first round sends every scenario once: these statuses cannot be missing.
  for (const status of ['200', '201', '302', '400', '404', '500']) t.ok((sent.byStatus[status] ?? 0) > 0, `the mix has ${status}s`)

  const text = await (await fetch(`${base}/metrics`)).text()
  const sampled = new Set(text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]))
  const families = [...Object.values(HTTP), ...Object.values(RUNTIME)] as MetricSpec[]
  for (const spec of families) {
    const name = exposedName(spec.name, spec.type)
    t.ok(sampled.has(spec.type === 'histogram' ? `${name}_count` : name), `${name} has samples`)
  }
  // The slow route and the failing route show up under their own views (label order aside).
  const sample = (name: string, ...labels: string[]): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.every((label) => l.includes(label)))
    return line === undefined ? 0 : Number(line.split(' ').at(-1))
  }
  t.ok(sample('django_http_requests_latency_seconds_by_view_method_count', 'view="/api/reports/drift"', 'method="GET"') > 0, 'the slow route is measured')
  t.ok(sample('django_http_responses_total_by_status_view_method_total', 'view="/api/reports/legacy"', 'status="500"') > 0, 'the failing route counts its 500s')

  child.kill('SIGTERM')
  t.equal(await Promise.race([exited, sleep(10_000).then(() => 'timeout')]), 0, 'SIGTERM shuts the demo down cleanly')
})
