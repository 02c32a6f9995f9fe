import { execFile } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t, { type Test } from 'tap'
import { ownDatabase } from './helpers/database'
import { POSTGRES_JS_WARNING } from '../lib/db/postgres-js'
import { key, parse } from './helpers/metrics'
import { killOnExit } from './helpers/children'

// postgres.js from npm against the real PostgreSQL. Version 4 is measured through its diagnostics
// channels, in the same django_db_* / django_model_* series as pg; version 3 cannot be, and an app
// using it gets one warning naming the doc, whichever way the package arrives, never a silent nothing.
const root = join(__dirname, '..')
const url = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test')
const database = `um_postgres_js_${process.pid}`
const databaseUrl = new URL(url.href)
databaseUrl.pathname = `/${database}`
const plugin = join(root, 'dist', 'index.js')
const fastify = require.resolve('fastify')

ownDatabase(t, url, database)

/** An app whose `node_modules/postgres` is the given copy (4 from this repository, or 3 through its npm alias). */
async function run (t: Test, postgresCopy: string, file: string, source: string, manifest: object, args: string[] = []): Promise<{ stdout: string, stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'um-postgres-js-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(join(root, 'node_modules', postgresCopy), join(dir, 'node_modules', 'postgres'), { recursive: true })
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'postgres-js-app', private: true, ...manifest }))
  writeFileSync(join(dir, file), source)
  return await new Promise((resolve, reject) => {
    killOnExit(execFile(process.execPath, [...args, file], { cwd: dir, env: { ...process.env, DATABASE_URL: databaseUrl.href }, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${err.message}\n${stderr}`))
      else resolve({ stdout, stderr })
    }))
  })
}

const APP = `
  const logs = []
  const app = require(${JSON.stringify(fastify)})({ logger: { level: 'warn', stream: { write: (line) => logs.push(JSON.parse(line)) } } })
  await app.register(require(${JSON.stringify(plugin)}).default, { runtimeMetrics: false, db: { models: { pj_claim: 'claim' } } })
  await app.ready()
`
/** 20 queries, then the scrape and the warnings about postgres, as one JSON line. */
const QUERIES = `
  const sql = postgres(process.env.DATABASE_URL, { max: 1, onnotice: () => {} })
  await sql\`CREATE TABLE IF NOT EXISTS pj_claim (id int PRIMARY KEY)\`
  await sql\`DELETE FROM pj_claim\`
  for (let i = 0; i < 14; i++) await sql\`SELECT \${i}::int AS n\`
  await sql\`INSERT INTO pj_claim (id) VALUES (1), (2)\`
  await sql\`UPDATE pj_claim SET id = id + 10\`
  await sql\`SELECT * FROM pj_missing\`.catch(() => {})
  await sql\`INSERT INTO pj_claim (id) VALUES (11)\`.catch(() => {})
  await sql.end()
  const metrics = (await app.inject('/metrics')).body
  await app.close()
  console.log(JSON.stringify({ metrics, warnings: logs.filter((l) => l.module === 'postgres').map((l) => l.msg) }))
`
const CJS = (body: string) => `(async () => {${body}})().catch((err) => { console.error(err); process.exit(1) })`

function report (stdout: string): { samples: Map<string, number>, warnings: string[] } {
  const { metrics, warnings } = JSON.parse(stdout.trim().split('\n').at(-1)!) as { metrics: string, warnings: string[] }
  return { samples: parse(metrics).samples, warnings }
}

const db = (name: string, labels: Record<string, string> = {}) => key(name, { alias: 'default', vendor: 'postgresql', ...labels })

t.test('postgres.js 4: every query, error, model change and connection in the django series, silently', async (t) => {
  const { stdout } = await run(t, 'postgres', 'app.cjs', CJS(`
    const postgres = require('postgres').default
    ${APP}
    ${QUERIES}`), {})
  const { samples, warnings } = report(stdout)
  t.equal(samples.get(db('django_db_execute_total')), 20, 'each of the 20 queries once')
  t.equal(samples.get(db('django_db_query_duration_seconds_count')), 20)
  t.equal(samples.get(db('django_db_errors_total', { type: 'UndefinedTable' })), 1, 'errors by the class psycopg2 raises')
  t.equal(samples.get(db('django_db_errors_total', { type: 'UniqueViolation' })), 1)
  t.equal(samples.get(db('django_db_new_connections_total')), 1)
  t.equal(samples.get(key('django_model_inserts_total', { model: 'claim' })), 2)
  t.equal(samples.get(key('django_model_updates_total', { model: 'claim' })), 2)
  t.same(warnings, [], 'no warning: it is measured')
})

t.test('postgres.js 4 imported by an ESM app: measured too', async (t) => {
  const { stdout } = await run(t, 'postgres', 'app.mjs', `import postgres from 'postgres'
    import { createRequire } from 'node:module'
    const require = createRequire(import.meta.url)
    ${APP}
    ${QUERIES}`, { type: 'module', dependencies: { postgres: '^4.2.0' } })
  const { samples, warnings } = report(stdout)
  t.equal(samples.get(db('django_db_execute_total')), 20)
  t.same(warnings, [])
})

t.test('postgres.js 3 required after register: one warning on its first load, not on the second instance', async (t) => {
  const { stdout } = await run(t, 'postgres-3', 'app.cjs', CJS(`
    ${APP}
    const postgres = require('postgres')
    ${QUERIES.replace('await app.close()', `await app.close()
    {
      const app = require(${JSON.stringify(fastify)})({ logger: { level: 'warn', stream: { write: (line) => logs.push(JSON.parse(line)) } } })
      await app.register(require(${JSON.stringify(plugin)}).default, { runtimeMetrics: false })
      await app.close()
    }`)}`), {})
  const { samples, warnings } = report(stdout)
  t.same(warnings, [POSTGRES_JS_WARNING], 'one warning, through the app\'s logger')
  t.equal(samples.get(db('django_db_execute_total')), undefined, 'its queries are not counted (what the warning says)')
  t.match(POSTGRES_JS_WARNING, 'docs/postgresql.md, section "postgres.js"')
  const doc = readFileSync(join(root, 'docs', 'postgresql.md'), 'utf8')
  t.ok(doc.includes('\n## postgres.js\n') && doc.includes(POSTGRES_JS_WARNING), 'the section it names exists and quotes it')
})

t.test('postgres.js 3 required before register: the warning at register', async (t) => {
  const { stdout } = await run(t, 'postgres-3', 'app.cjs', CJS(`
    const postgres = require('postgres')
    ${APP}
    ${QUERIES}`), {})
  t.same(report(stdout).warnings, [POSTGRES_JS_WARNING])
})

t.test('postgres.js 3 imported by an ESM app before register: found in the app\'s dependencies', async (t) => {
  const { stdout } = await run(t, 'postgres-3', 'app.mjs', `import postgres from 'postgres'
    import { createRequire } from 'node:module'
    const require = createRequire(import.meta.url)
    ${APP}
    ${QUERIES}`, { type: 'module', dependencies: { postgres: '^3.4.9' } })
  t.same(report(stdout).warnings, [POSTGRES_JS_WARNING])
})

t.test('postgres.js 3 imported under the preload: a process warning as it loads', async (t) => {
  const { stderr } = await run(t, 'postgres-3', 'app.mjs', `const { default: postgres } = await import('postgres')
    const sql = postgres(process.env.DATABASE_URL, { max: 1 })
    await sql\`SELECT 1\`
    await sql.end()`, { type: 'module' }, ['--import', pathToFileURL(join(root, 'dist', 'register.js')).href])
  t.equal(stderr.split(POSTGRES_JS_WARNING).length - 1, 1, 'once, on stderr')
  t.match(stderr, 'UPSTREAM_METRICS_NOT_MEASURED')
})
