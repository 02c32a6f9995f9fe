import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { installPacked } from './helpers/app-dir'
import { killOnExit } from './helpers/children'

// The typings the Fastify way, checked by the real compiler in the five setups TypeScript users have:
// CommonJS and ESM under node16 and nodenext, and ESM under a bundler; each strict, with
// exactOptionalPropertyTypes and the libraries' own declarations checked (skipLibCheck: false).
// Every `@ts-expect-error` must be needed, so each proves a wrong use is rejected.
// About 35 s of CPU in all (five compilers at ~7 s each); the limit leaves room for a busy machine.
t.setTimeout(300_000)
const root = join(__dirname, '..')
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')

const CJS_IMPORTS = `import upstreamMetrics = require('upstream-metrics')
import defaultImport from 'upstream-metrics'
import { upstreamMetrics as named, DJANGO_LATENCY_BUCKETS, setupClusterPrimary, type RouteMetricsConfig, type UpstreamMetricsOptions } from 'upstream-metrics'
import Fastify = require('fastify')
`
const ESM_IMPORTS = `import upstreamMetrics, { upstreamMetrics as named, DJANGO_LATENCY_BUCKETS, setupClusterPrimary, type RouteMetricsConfig, type UpstreamMetricsOptions } from 'upstream-metrics'
import Fastify from 'fastify'
const defaultImport = upstreamMetrics
`
const BODY = `
const app = Fastify()
const options: UpstreamMetricsOptions = {
  path: '/metrics',
  namespace: process.env.METRICS_NAMESPACE,
  latencyBuckets: [0.1, 1],
  auth: { bearerToken: 'x' },
  listener: { host: process.env.METRICS_HOST, port: 9464 },
  db: { alias: ({ port }) => port === 5433 ? 'replica' : 'default', models: { app_claim: 'claim' } }
}
void app.register(upstreamMetrics, options)
void app.register(defaultImport, { namespace: process.env.METRICS_NAMESPACE, cache: { backend: 'locmem' } })
void app.register(named, { logLevel: 'warn' })
void app.register(upstreamMetrics)

// @ts-expect-error path is a string or false
void app.register(upstreamMetrics, { path: 5 })
// @ts-expect-error path is a string or false
void app.register(defaultImport, { path: 5 })
// @ts-expect-error path is a string or false
void app.register(named, { path: 5 })
// @ts-expect-error an unknown option
void app.register(upstreamMetrics, { pathh: '/metrics' })
// @ts-expect-error an unknown nested option
void app.register(upstreamMetrics, { db: { alais: 'replica' } })
// @ts-expect-error latencyBuckets are numbers
void app.register(upstreamMetrics, { latencyBuckets: 'fast' })

const route: RouteMetricsConfig = { view: process.env.VIEW, exclude: false }
app.get('/p/:id', { config: { metrics: { view: 'patient-detail' } } }, async () => 'ok')
app.get('/q', { config: { metrics: route } }, async () => 'ok')
// @ts-expect-error view is a string
app.get('/r', { config: { metrics: { view: 42 } } }, async () => 'ok')
// @ts-expect-error an unknown route setting (Fastify infers a route's config type, so the check holds where the type is named)
export const misspelt: RouteMetricsConfig = { veiw: 'x' }

const counter = app.upstreamMetrics.meter.createCounter('upstream_alerts_delivered')
counter.add(1)
export const text: Promise<string> = app.upstreamMetrics.metrics()
export const flushed: Promise<void> = app.upstreamMetrics.flush()
// @ts-expect-error not a member of the decorator
app.upstreamMetrics.nope()
export const buckets: readonly number[] = DJANGO_LATENCY_BUCKETS
// @ts-expect-error the buckets are read-only
DJANGO_LATENCY_BUCKETS.push(1)
export const primary: typeof setupClusterPrimary = setupClusterPrimary
`

const SETUPS = [
  { name: 'cjs-node16', type: 'commonjs', module: 'node16', moduleResolution: 'node16', imports: CJS_IMPORTS },
  { name: 'cjs-nodenext', type: 'commonjs', module: 'nodenext', moduleResolution: 'nodenext', imports: CJS_IMPORTS },
  { name: 'esm-node16', type: 'module', module: 'node16', moduleResolution: 'node16', imports: ESM_IMPORTS },
  { name: 'esm-nodenext', type: 'module', module: 'nodenext', moduleResolution: 'nodenext', imports: ESM_IMPORTS },
  { name: 'esm-bundler', type: 'module', module: 'esnext', moduleResolution: 'bundler', imports: ESM_IMPORTS }
]

t.test('the packed typings in CJS node16/nodenext, ESM node16/nodenext and bundler projects', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'upstream-metrics-types-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const started = Date.now()
  // One install of the tarball; each project is a directory below it, resolving it from there.
  installPacked(dir, [`fastify@${require('fastify/package.json').version as string}`, `@types/node@${require('@types/node/package.json').version as string}`])
  t.comment(`packed and installed in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  const check = async (setup: typeof SETUPS[number]): Promise<void> => {
    const project = join(dir, setup.name)
    mkdirSync(project)
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: setup.name, private: true, type: setup.type }))
    writeFileSync(join(project, 'app.ts'), setup.imports + BODY)
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        strict: true,
        exactOptionalPropertyTypes: true,
        skipLibCheck: false,
        module: setup.module,
        moduleResolution: setup.moduleResolution,
        target: 'es2023',
        types: ['node'],
        noEmit: true
      },
      files: ['app.ts']
    }))
    const checked = Date.now()
    const diagnostics = await new Promise<string | undefined>((resolve) => {
      killOnExit(execFile(process.execPath, [tsc, '-p', '.'], { cwd: project, encoding: 'utf8', timeout: 90_000 }, (err, stdout) => resolve(err === null ? undefined : stdout || String(err))))
    })
    t.equal(diagnostics, undefined, `${setup.name}: type-checks, every expected error present`)
    t.comment(`${setup.name}: tsc ${((Date.now() - checked) / 1000).toFixed(1)} s`)
  }
  // Two compilers at a time: each takes one core for several seconds.
  const queue = [...SETUPS]
  await Promise.all([0, 1].map(async () => {
    for (let setup = queue.shift(); setup !== undefined; setup = queue.shift()) await check(setup)
  }))
})
