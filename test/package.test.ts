import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

// The packed tarball, installed into a fresh app, must work from CommonJS, ESM and TypeScript.
const root = join(__dirname, '..')
const npm = (args: string[], cwd: string) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 })

t.test('npm pack, install into a fresh app, require / import / type-check', async (t) => {
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

  writeFileSync(join(dir, 'app.mts'), `import Fastify from 'fastify'
import upstreamMetrics, { type UpstreamMetricsOptions } from 'upstream-metrics'
const options: UpstreamMetricsOptions = { path: '/metrics', latencyBuckets: [0.1, 1], auth: { bearerToken: 'x' } }
const app = Fastify()
await app.register(upstreamMetrics, options)
app.get('/p/:id', { config: { metrics: { view: 'patient-detail', exclude: false } } }, async () => 'ok')
const counter = app.upstreamMetrics.meter.createCounter('upstream_alerts_delivered')
counter.add(1)
const text: string = await app.upstreamMetrics.metrics()
console.log(text.length)
`)
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2023', noEmit: true, types: ['node'] }, files: ['app.mts'] }))
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  t.doesNotThrow(() => execFileSync(process.execPath, [tsc, '-p', '.'], { cwd: dir, encoding: 'utf8' }), 'a strict TypeScript user app type-checks')
  writeFileSync(join(dir, 'bad.mts'), `import Fastify from 'fastify'
import upstreamMetrics from 'upstream-metrics'
const app = Fastify()
await app.register(upstreamMetrics, { latencyBuckets: 'fast' })
app.get('/p', { config: { metrics: { view: 42 } } }, async () => 'ok')
`)
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2023', noEmit: true, types: ['node'] }, files: ['bad.mts'] }))
  t.throws(() => execFileSync(process.execPath, [tsc, '-p', '.'], { cwd: dir, encoding: 'utf8', stdio: 'pipe' }), 'wrong option and route config types are rejected by the compiler')
})
