// `npm start` on a fresh machine: no DATABASE_URL, no Redis — embedded PostgreSQL and an in-process
// cache; after the traffic generator's mix, /metrics has every HTTP and runtime family. Also: what the
// demo says without Redis, a Redis that is down, and the traffic generator's command line.
import t, { type Test } from 'tap'
import { execFile, spawn } from 'node:child_process'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { exposedName, HTTP, RUNTIME, type MetricSpec } from '../lib/names'
// @ts-expect-error the traffic generator is plain JavaScript
import { generateTraffic } from '../example/traffic.mjs'
import { freePort } from './helpers/net'
import { parse, series } from './helpers/metrics'
import { waitFor } from './helpers/wait'
import { killOnExit } from './helpers/children'

// The first start initialises an embedded PostgreSQL cluster: tens of seconds on a loaded machine.
t.setTimeout(300_000)

const ROOT = resolve(__dirname, '..')
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

interface Demo { base: string, output: () => string, exited: Promise<unknown>, child: ReturnType<typeof spawn> }

/** Starts example/server.mjs with `env` on a free port and waits for /healthz (bounded); stops it at teardown. */
async function startDemo (t: Test, env: NodeJS.ProcessEnv): Promise<Demo> {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const child = killOnExit(spawn(process.execPath, ['example/server.mjs'], {
    cwd: ROOT,
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  }))
  let output = ''
  child.stdout.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr.on('data', (c: Buffer) => { output += c.toString() })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    if (await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]) === false) child.kill('SIGKILL')
  })

  // 'exited': nothing more to wait for.
  const ready = await waitFor('the demo to answer /healthz', async () => child.exitCode !== null ? 'exited' : (await fetch(`${base}/healthz`)).ok, { timeoutMs: 120_000, intervalMs: 250 })
    .catch(() => 'timed out')
  t.equal(ready, true, `the demo answers /healthz\n${output.slice(-4000)}`)
  return { base, output: () => output, exited, child }
}

t.test('the demo runs with nothing installed and every HTTP and runtime metric has data', async (t) => {
  const { base, output, exited, child } = await startDemo(t, { DATABASE_URL: '', REDIS_URL: '' })
  t.match(output(), /No Redis .*the dashboard's Workers row stays empty/, 'it says at startup which dashboard row stays empty, and why')

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

t.test('with its Redis down the demo keeps answering, logs the outage once per interval and stops cleanly', async (t) => {
  const redisPort = await freePort() // nothing listens there
  const started = Date.now()
  const { base, output, exited, child } = await startDemo(t, { DATABASE_URL, REDIS_URL: `redis://:s3cret@127.0.0.1:${redisPort}/0` })
  const sent = await generateTraffic({ baseUrl: base, durationMs: 5000, maxRequests: 100, concurrency: 2 }) as { requests: number, byStatus: Record<string, number>, failures: number }
  t.equal(sent.failures, 0, `every request got an answer: ${JSON.stringify(sent)}`)
  const exposition = parse(await (await fetch(`${base}/metrics`)).text())
  const failed = series(exposition, 'django_cache_get_fail_total').find((s) => s.labels.backend === 'redis')?.value ?? 0
  t.ok(failed > 0, `cache reads failed, and were counted (django_cache_get_fail_total{backend="redis"} ${failed})`)
  t.equal(series(exposition, 'django_http_responses_total_by_status_view_method_total').filter((s) => s.labels.view === '/api/payers/:id' && s.labels.status === '500').length, 0, 'the cached route never answered 500: a failed read is a miss')

  child.kill('SIGTERM')
  t.equal(await Promise.race([exited, sleep(10_000).then(() => 'timeout')]), 0, 'SIGTERM shuts the demo down cleanly while Redis is down')
  const log = output()
  t.notMatch(log, /Unhandled error event/, 'no ioredis "Unhandled error event"')
  t.notMatch(log, /s3cret/, 'the Redis password is never logged')
  const demoLines = log.split('\n').filter((line) => /Redis at .* unavailable|demo worker:/.test(line)).length
  const intervals = Math.ceil((Date.now() - started) / 10_000)
  t.ok(demoLines >= 1 && demoLines <= intervals + 1, `the demo logged the outage ${demoLines} times in ${intervals} 10 s intervals`)
})

t.test('npm run traffic -- --help prints the usage; a bad option prints it with status 2, without a stack trace', async (t) => {
  const run = async (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> => await new Promise((resolve) => {
    killOnExit(execFile(process.execPath, ['example/traffic.mjs', ...args], { cwd: ROOT, timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? -1, stdout, stderr })
    }))
  })
  const help = await run('--help')
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: npm run traffic -- \[options\]/)
  t.match(help.stdout, /--duration SECONDS/)
  for (const args of [['--bogus'], ['--duration', 'soon'], ['--url', 'not a url']]) {
    const bad = await run(...args)
    t.equal(bad.code, 2, `${args.join(' ')}: status 2`)
    t.match(bad.stderr, /Usage: npm run traffic/, `${args.join(' ')}: the usage`)
    t.notMatch(bad.stderr, /\n\s+at /, `${args.join(' ')}: no stack trace`)
  }
})
