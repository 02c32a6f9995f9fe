import { execFile, execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ownDatabase } from './helpers/database'
import { installPacked } from './helpers/app-dir'
import { key, parse } from './helpers/metrics'
import { killOnExit } from './helpers/children'

// The packed tarball installed, with no flags, into an app that already runs the OpenTelemetry SDK: the
// newest @opentelemetry/sdk-node and the previous minor of its line, each with the pg, ioredis and redis
// (node-redis) instrumentations of its own line. The app registers the plugin, then starts the SDK, then loads pg,
// ioredis and node-redis (the order that used to lose every django_db_* and django_cache_* series): HTTP, DB and cache
// series, the app's own spans and an OTLP push through the SDK's exporter must all be there. Update SDKS
// when a new sdk-node minor is released.
const SDKS = [
  { sdk: '0.301.2', instrumentationPg: '0.78.0', instrumentationIoredis: '0.72.0', instrumentationRedis: '0.72.0' },
  { sdk: '0.300.0', instrumentationPg: '0.77.0', instrumentationIoredis: '0.72.0', instrumentationRedis: '0.72.0' }
]
// Two installs of the SDK (~20 s each with a warm npm cache) and two short runs; the limit leaves room for a busy machine.
t.setTimeout(300_000)
const root = join(__dirname, '..')
const url = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test')
const database = `um_otel_sdk_${process.pid}`

interface Report {
  answers: number[]
  status: number
  metrics: string
  spans: string[]
  pushes: Array<{ path: string, type: string, bytes: number }>
  versions: { sdk: string, exporter: string, sdkExporter: string }
}

ownDatabase(t, url, database)

for (const { sdk, instrumentationPg, instrumentationIoredis, instrumentationRedis } of SDKS) {
  t.test(`next to @opentelemetry/sdk-node ${sdk}`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'upstream-metrics-otel-sdk-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const started = Date.now()
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'otel-app', private: true }))
    // The app's own dependencies first, then `npm install upstream-metrics` as a user would add it.
    execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', `@opentelemetry/sdk-node@${sdk}`, `@opentelemetry/instrumentation-pg@${instrumentationPg}`,
      `@opentelemetry/instrumentation-ioredis@${instrumentationIoredis}`, `@opentelemetry/instrumentation-redis@${instrumentationRedis}`, `redis@${require('redis/package.json').version as string}`, `ioredis@${require('ioredis/package.json').version as string}`, `pg@${require('pg/package.json').version as string}`, `fastify@${require('fastify/package.json').version as string}`], { cwd: dir, stdio: 'pipe', timeout: 180_000 })
    installPacked(dir, [])
    t.comment(`installed in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    cpSync(join(root, 'test', 'fixtures', 'otel-sdk', 'app.cjs'), join(dir, 'app.cjs'))
    const databaseUrl = new URL(url.href)
    databaseUrl.pathname = `/${database}`
    const out = await new Promise<string>((resolve, reject) => {
      killOnExit(execFile(process.execPath, ['app.cjs'], { cwd: dir, env: { ...process.env, DATABASE_URL: databaseUrl.href, REDIS_URL: 'redis://127.0.0.1:6379/0', KEY_PREFIX: `um-otel-sdk-${process.pid}` }, timeout: 60_000 }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`${err.message}\n${stderr}`))
        else resolve(stdout)
      }))
    })
    const report = JSON.parse(out) as Report
    t.equal(report.versions.sdk, sdk)
    t.equal(report.versions.exporter, report.versions.sdkExporter, `the plugin loads the SDK's OTLP exporter (${report.versions.exporter}), no copy of its own`)
    t.same(report.answers, [1, 2, 3], 'the app answers')
    t.equal(report.status, 200)
    const samples = parse(report.metrics).samples
    t.equal(samples.get(key('django_http_responses_total_by_status_view_method_total', { method: 'GET', status: '200', view: '/claims/:id' })), 3, 'the requests are measured')
    t.equal(samples.get(key('django_db_execute_total', { alias: 'default', vendor: 'postgresql' })), 3, 'every query is measured, pg loaded after the SDK started')
    t.equal(samples.get(key('django_db_new_connections_total', { alias: 'default', vendor: 'postgresql' })), 1)
    t.equal(samples.get(key('django_cache_get_total', { backend: 'redis' })), 6, 'every Redis GET is counted, ioredis and node-redis loaded after the SDK started')
    t.equal(samples.get(key('django_cache_get_misses_total', { backend: 'redis' })), 6)
    t.equal(report.spans.filter((name) => name.startsWith('pg.query:')).length, 3, 'the app\'s own pg spans are still recorded')
    // ioredis sends a command issued while connecting twice, and the instrumentation makes a span of each.
    t.ok(report.spans.filter((name) => name === 'get').length >= 3, 'and its ioredis spans')
    t.equal(report.spans.filter((name) => name === 'redis-GET').length, 3, 'and its node-redis spans', { spans: report.spans })
    t.ok(report.pushes.length >= 1 && report.pushes.every((p) => p.path === '/v1/metrics' && p.type === 'application/x-protobuf' && p.bytes > 0), 'the otlp option pushes through the SDK\'s exporter')
  })
}
