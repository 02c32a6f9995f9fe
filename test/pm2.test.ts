import { readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { killPidsOnExit } from './helpers/children'
import { key, parse } from './helpers/metrics'
import { freePort } from './helpers/net'
import { waitFor } from './helpers/wait'
import { docFiles, npm, packed, packedApp } from './helpers/packed-app'
import { startPrometheus } from './helpers/prometheus'

// npm installs and PM2 daemons: more room than the suite's 120 s when the machine is loaded (about a minute idle).
t.setTimeout(300_000)

const PM2 = '6.0.14'
const base = packed('pm2')
t.teardown(base.remove)
const app = packedApp(base, 'app', [`pm2@${PM2}`, `close-with-grace@${require('close-with-grace/package.json').version as string}`], {
  'app.js': docFiles().get('app.js')!,
  // The default registration (a scrape route on the shared port), and cluster: true.
  'shared.js': `const app = require('fastify')({ logger: true })
app.register(require('upstream-metrics'), { runtimeMetrics: false })
app.listen({ port: Number(process.env.PORT) })`,
  'cluster.js': `const app = require('fastify')()
app.register(require('upstream-metrics'), { cluster: true })
app.listen({ port: Number(process.env.PORT) }).catch((err) => { console.error(err.code + ' ' + err.message); process.exit(1) })`
})
// Its own PM2 daemon, state and logs, killed at the end. An app's environment is the one `pm2 start` runs in.
const PM2_HOME = join(base.dir, 'pm2-home')
const pm2 = (args: string[], env: NodeJS.ProcessEnv = {}): string => npm(['exec', '--', 'pm2', ...args], app, { PM2_HOME, ...env })
let daemonKilled = false
t.teardown(() => { pm2(['kill']); daemonKilled = true })
// Should the file end before that teardown runs (a timeout): the daemon and its apps, by their pid files.
killPidsOnExit(() => daemonKilled ? [] : pidFiles(PM2_HOME))

function pidFiles (home: string): number[] {
  const read = (file: string): number => { try { return Number(readFileSync(file, 'utf8').trim()) } catch { return NaN } }
  let apps: string[] = []
  try { apps = readdirSync(join(home, 'pids')).map((f) => join(home, 'pids', f)) } catch {}
  return [join(home, 'pm2.pid'), ...apps].map(read).filter((pid) => Number.isInteger(pid) && pid > 0)
}

async function samples (url: string): Promise<Map<string, number> | undefined> {
  const res = await fetch(url).catch(() => undefined)
  return res?.status === 200 ? parse(await res.text()).samples : undefined
}

/** A free port whose next one is free too: METRICS_PORT + NODE_APP_INSTANCE for two instances. */
async function portPair (): Promise<number> {
  for (;;) {
    const port = await freePort()
    const next = await new Promise<boolean>((resolve) => {
      const probe = createServer().once('error', () => resolve(false)).listen(port + 1, '127.0.0.1', () => probe.close(() => resolve(true)))
    })
    if (next) return port
  }
}

/** Everything the instances of `name` wrote (PM2 keeps one out and one error log per instance). */
function readLogs (name: string): string {
  const logs = join(PM2_HOME, 'logs')
  return readdirSync(logs).filter((f) => f.startsWith(`${name}-`)).map((f) => readFileSync(join(logs, f), 'utf8')).join('')
}

const patients = key('django_http_responses_total_by_status_view_method_total', { method: 'GET', status: '200', view: '/patients/:id' })

t.test('the recipe of docs/apps.md under `pm2 start app.js -i 2`: the instances\' metrics ports add up to exact totals', async (t) => {
  const port = await freePort()
  const metricsPort = await portPair()
  pm2(['start', 'app.js', '-i', '2', '--name', 'recipe'], { PORT: String(port), METRICS_PORT: String(metricsPort) })
  t.teardown(() => { pm2(['delete', 'recipe']) })
  const ports = [metricsPort, metricsPort + 1]
  const first = await waitFor('both instances\' metrics ports', async () => {
    const both = await Promise.all(ports.map(async (p) => await samples(`http://127.0.0.1:${p}/metrics`)))
    return both.every((s) => s !== undefined) ? both as Array<Map<string, number>> : undefined
  }, { timeoutMs: 60_000, details: () => readLogs('recipe') })
  await waitFor('the shared port', async () => await fetch(`http://127.0.0.1:${port}/patients/0`).then((res) => res.status === 200, () => false), { timeoutMs: 30_000 })

  // One request above; 106 more, each on a new connection, which PM2 hands to the instances in turn.
  let sent = 1
  for (let i = 1; i < 107; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/patients/${i}`, { headers: { connection: 'close' } })
    if (res.status === 200) sent++
  }
  t.equal(sent, 107)
  const sentAt = Date.now()
  const after = await Promise.all(ports.map(async (p) => (await samples(`http://127.0.0.1:${p}/metrics`))!))
  const counts = after.map((s) => s.get(patients) ?? 0)
  t.equal(counts[0]! + counts[1]!, 107, `the two ports add up to every request (${counts.join(' + ')})`)
  t.ok(counts.every((c) => c > 0), 'both instances answered some')
  for (const [i, s] of after.entries()) {
    t.equal(s.get('process_start_time_seconds'), first[i]!.get('process_start_time_seconds'), `port ${ports[i]!}: one instance, the same start time at every scrape`)
  }
  t.notOk(readLogs('recipe').includes('PM2 cluster mode'), 'no warning: nothing is served on the shared port')

  // A real Prometheus scraping the instances' ports, as docs/apps.md configures it.
  const prometheus = await startPrometheus(t, {
    global: { scrape_interval: '1s' },
    scrape_configs: [{ job_name: 'upstream', static_configs: [{ targets: ports.map((p) => `127.0.0.1:${p}`) }] }]
  })
  await prometheus.scrapedAfter('upstream', sentAt, 2, 30_000)
  const total = await prometheus.query('sum(django_http_responses_total_by_status_view_method_total{view="/patients/:id"})')
  t.equal(total[0]?.value[1], '107', 'Prometheus\'s sum over the instances is every request')
})

t.test('/metrics on the shared port under PM2 cluster mode: one warning per instance naming PM2 and the doc section', async (t) => {
  const port = await freePort()
  pm2(['start', 'shared.js', '-i', '2', '--name', 'shared'], { PORT: String(port) })
  t.teardown(() => { pm2(['delete', 'shared']) })
  const warnings = await waitFor('a warning from each instance', () => {
    const found = readLogs('shared').split('\n').filter((line) => line.includes('PM2 cluster mode'))
    return found.length === 2 ? found : undefined
  }, { timeoutMs: 60_000, details: () => readLogs('shared') })
  for (const line of warnings) {
    t.match(line, 'answers one instance\'s numbers per scrape')
    t.match(line, 'docs/apps.md#pm2')
  }
})

t.test('cluster: true under PM2 cluster mode fails at register, saying why', async (t) => {
  const port = await freePort()
  pm2(['start', 'cluster.js', '-i', '2', '--name', 'cluster', '--no-autorestart'], { PORT: String(port) })
  t.teardown(() => { pm2(['delete', 'cluster']) })
  const errors = await waitFor('the error of each instance', () => {
    const found = readLogs('cluster').split('\n').filter((line) => line.includes('UPSTREAM_METRICS_INVALID_OPTION'))
    return found.length === 2 ? found : undefined
  }, { timeoutMs: 60_000, details: () => readLogs('cluster') })
  for (const line of errors) {
    t.match(line, 'option "cluster" cannot work in PM2 cluster mode')
    t.match(line, 'docs/apps.md#pm2')
  }
})
