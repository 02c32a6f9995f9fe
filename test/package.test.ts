import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Queue, Worker } from 'bullmq'
import { OTLP_EXPORTER_VERSION } from '../lib/otlp/options'
import { REDIS_URL, byName, connection, dropPrefix, key, scrape, startExporter, tasks, uniquePrefix } from './fixtures/worker-harness'
import { waitFor } from './helpers/wait'

// The packed tarball, installed into a fresh app, must work from CommonJS and ESM, without
// ioredis (an optional peer dependency), and with ioredis 6 installed for the worker command.
// npm pack and installs from the registry, each bounded at 180 s: more room than the suite's 120 s, as in the
// other files that install from npm.
t.setTimeout(300_000)

const root = join(__dirname, '..')
const npm = (args: string[], cwd: string) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 })

t.test('npm pack, install into a fresh app, require / import', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'upstream-metrics-pack-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  npm(['pack', '--pack-destination', dir], root)
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!
  const files = execFileSync('tar', ['-tzf', join(dir, tarball)], { encoding: 'utf8' })
  t.comment(`tarball: ${files.trim().split('\n').filter((f) => !f.startsWith('package/dist/')).join(' ')} and ${files.split('\n').filter((f) => f.startsWith('package/dist/')).length} files in dist/`)
  t.match(files, 'package/dist/entry.cjs')
  t.notMatch(files, /package\/(lib|test|example|bench|scripts|dashboards\/src)\//, 'the compiled output and the kit, not the sources, tests or demo')
  // The kit a user imports from node_modules/upstream-metrics/ (the README says where).
  for (const kit of [
    'dashboards/upstream-dashboard.json', 'alerts/upstream.yml', 'alerts/workers.yml', 'alerts/tests/upstream.test.yml',
    'monitoring/prometheus/prometheus.yml', 'monitoring/grafana/provisioning/datasources/prometheus.yml', 'README.md', 'docs/metrics.md'
  ]) {
    t.match(files, `package/${kit}\n`, `the package ships ${kit}`)
  }
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const start = readme.indexOf('## Dashboard and alerts')
  const kitRows = readme.slice(start, readme.indexOf('\n## ', start + 1)).split('\n').filter((line) => line.startsWith('| `'))
  t.ok(kitRows.length >= 3, 'the README lists the kit files')
  for (const row of kitRows) {
    for (const [, path] of row.split(' | ')[0]!.matchAll(/`([^`]+)`/g)) t.ok(files.includes(`package/${path}`), `the README's ${path} is in the package`)
  }

  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'user-app', private: true }))
  const fastifyVersion = require('fastify/package.json').version as string
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', `./${tarball}`, `fastify@${fastifyVersion}`, `@types/node@${require('@types/node/package.json').version as string}`], dir)

  const check = `
    await app.register(upstreamMetrics, { runtimeMetrics: false })
    app.get('/hello', async () => 'hi')
    await app.inject('/hello')
    const res = await app.inject('/metrics')
    if (res.statusCode !== 200 || !res.body.includes('view="/hello"')) throw new Error('no metrics: ' + res.statusCode)
    if (typeof named !== 'function' || named !== upstreamMetrics) throw new Error('named export missing')
    await app.close()
    console.log('ok')`
  writeFileSync(join(dir, 'app.cjs'), `const upstreamMetrics = require('upstream-metrics')
const { upstreamMetrics: named } = require('upstream-metrics')
const Fastify = require('fastify')
const app = Fastify();
(async () => {${check}})().catch((e) => { console.error(e); process.exit(1) })`)
  writeFileSync(join(dir, 'app.mjs'), `import upstreamMetrics, { upstreamMetrics as named } from 'upstream-metrics'
import Fastify from 'fastify'
const app = Fastify()
${check}`)
  t.equal(execFileSync(process.execPath, ['app.cjs'], { cwd: dir, encoding: 'utf8' }).trim(), 'ok', 'CommonJS app')
  t.equal(execFileSync(process.execPath, ['app.mjs'], { cwd: dir, encoding: 'utf8' }).trim(), 'ok', 'ESM app')

  // TypeScript projects of every module setting: test/types.test.ts.

  // ioredis is an optional peer dependency: the apps above ran without it; only worker metrics ask for it.
  t.notOk(existsSync(join(dir, 'node_modules', 'ioredis')), 'ioredis is not installed with the plugin')
  t.comment(`installed: ${execFileSync('du', ['-sh', join(dir, 'node_modules')], { encoding: 'utf8' }).split('\t')[0]!} (the plugin, fastify, @types/node)`)
  writeFileSync(join(dir, 'worker.cjs'), `const app = require('fastify')()
app.register(require('upstream-metrics'), { worker: true })
app.ready().then(() => { console.log('registered'); return app.close() }, (err) => console.log(err.code + ' ' + err.message))`)
  const refused = execFileSync(process.execPath, ['worker.cjs'], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
  t.match(refused, /^UPSTREAM_METRICS_MISSING_PEER upstream-metrics: the worker option needs the package "ioredis", which is not installed/, 'worker: true fails at register, naming the package')
  t.match(refused, 'npm install ioredis')
  const bin = join(dir, 'node_modules', '.bin', 'upstream-metrics-worker')
  t.equal(spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8', timeout: 30_000 }).status, 0, 'the command still prints its help')
  const command = spawnSync(process.execPath, [bin, '--broker', REDIS_URL, '--addr', '127.0.0.1:0'], { encoding: 'utf8', timeout: 30_000 })
  t.equal(command.status, 1, 'the command fails at start')
  t.match(command.stderr, /^upstream-metrics-worker: error: upstream-metrics-worker needs the package "ioredis", which is not installed; install it next to upstream-metrics \(npm install ioredis\)/)
  t.notMatch(command.stderr, /usage:|\n\s+at /, 'a clear line: no usage, no stack')

  // Push over OTLP needs its exporter, an optional peer dependency of the plugin's OpenTelemetry line.
  t.notOk(existsSync(join(dir, 'node_modules', '@opentelemetry', 'exporter-metrics-otlp-proto')), 'the OTLP exporter is not installed with the plugin')
  writeFileSync(join(dir, 'otlp.cjs'), `const app = require('fastify')()
app.register(require('upstream-metrics'), { otlp: { endpoint: 'http://127.0.0.1:9/v1/metrics', timeoutMs: 200 } })
app.ready().then(() => { console.log('registered'); return app.close() }, (err) => console.log(err.code + ' ' + err.message))`)
  // The command names the exporter of the plugin's own OpenTelemetry line; the peer range also admits an SDK's neighbour (test/otel-sdk.test.ts).
  const exporterVersion = OTLP_EXPORTER_VERSION
  t.match(execFileSync(process.execPath, ['otlp.cjs'], { cwd: dir, encoding: 'utf8', timeout: 30_000 }),
    `UPSTREAM_METRICS_MISSING_PEER upstream-metrics: the otlp option needs the package "@opentelemetry/exporter-metrics-otlp-proto", which is not installed; install it next to upstream-metrics (npm install @opentelemetry/exporter-metrics-otlp-proto@${exporterVersion})`,
    'otlp fails at register, naming the exact version to install')
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', `@opentelemetry/exporter-metrics-otlp-proto@${exporterVersion}`], dir)
  t.match(execFileSync(process.execPath, ['otlp.cjs'], { cwd: dir, encoding: 'utf8', timeout: 30_000 }), /^registered/, 'otlp registers once the exporter is installed')
  t.same(readdirSync(join(dir, 'node_modules'), { recursive: true }).map(String).filter((f) => f.endsWith(join('@opentelemetry', 'sdk-metrics'))), [join('@opentelemetry', 'sdk-metrics')], 'one copy of sdk-metrics')

  // The peer range admits ioredis 4 (the cache metrics count its GETs); the worker metrics refuse it by name.
  const old = join(dir, 'node_modules', 'ioredis')
  mkdirSync(old)
  writeFileSync(join(old, 'package.json'), JSON.stringify({ name: 'ioredis', version: '4.28.5', main: 'index.js' }))
  writeFileSync(join(old, 'index.js'), 'module.exports = class Redis {}')
  t.match(execFileSync(process.execPath, ['worker.cjs'], { cwd: dir, encoding: 'utf8', timeout: 30_000 }),
    /^UPSTREAM_METRICS_PEER_VERSION upstream-metrics: the worker option needs ioredis 5 or 6; the installed version is 4\.28\.5/, 'ioredis 4 is refused by version')
  rmSync(old, { recursive: true })

  // With ioredis 6 installed (what `npm install ioredis` gives today), the command follows BullMQ queues.
  const ioredis6 = require('ioredis-6/package.json').version as string
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', `ioredis@${ioredis6}`], dir)
  t.equal(require(join(dir, 'node_modules', 'ioredis', 'package.json')).version, ioredis6)
  t.notOk(existsSync(join(dir, 'node_modules', 'upstream-metrics', 'node_modules', 'ioredis')), 'one copy of ioredis: the app\'s')
  const prefix = uniquePrefix('pkg')
  const exporter = await startExporter(['--broker', REDIS_URL, '--queue', 'mail', '--prefix', prefix], bin)
  const queue = new Queue('mail', { connection, prefix })
  const worker = new Worker('mail', async (job) => {
    if (job.name === 'boom') throw new Error('boom')
    return 'ok'
  }, { connection, prefix, autorun: false })
  t.teardown(async () => {
    await worker.close(true)
    await queue.close()
    exporter.child.kill('SIGKILL')
    await dropPrefix(prefix)
  })
  await exporter.waitFor('Connected to broker')
  for (const name of ['send', 'send', 'send', 'boom']) await queue.add(name, {})
  const waiting = await waitFor('the jobs to be seen', async () => { const s = await scrape(exporter.url); return tasks(s).PENDING === 4 && s })
  t.equal(waiting.get(key('celery_queue_length', { queue_name: 'mail' })), 4)
  worker.run().catch(() => {})
  const done = await waitFor('the jobs to finish', async () => { const s = await scrape(exporter.url); return tasks(s).SUCCESS === 3 && tasks(s).FAILURE === 1 && s })
  t.same(tasks(done), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 3, FAILURE: 1, REVOKED: 0, RETRY: 0 }, 'exact counts through ioredis 6')
  t.same(byName(done, 'send'), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 3, FAILURE: 0, REVOKED: 0, RETRY: 0 })
  t.equal(done.get('celery_workers'), 1)
  t.equal(done.get('celery_task_latency_count'), 4)
  t.equal(done.get(key('celery_task_runtime_seconds_count', { name: 'send' })), 3)
  exporter.child.kill('SIGTERM')
  t.same(await exporter.exit, { code: 0, signal: null })
  t.match(execFileSync(process.execPath, ['worker.cjs'], { cwd: dir, encoding: 'utf8', timeout: 30_000, env: { ...process.env, BROKER_URL: REDIS_URL } }), /^registered/, 'worker: true registers once ioredis is installed')
})
