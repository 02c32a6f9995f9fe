import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t, { type Test } from 'tap'
import pg from 'pg'
import { POSTGRES_JS_WARNING } from '../lib/db/postgres-js'

// postgres.js (the `postgres` package from npm, against the real PostgreSQL) is not measured: an app
// using it gets one warning naming the doc, whichever way the package arrives, never a silent nothing.
const root = join(__dirname, '..')
const url = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test')
const database = `um_postgres_js_${process.pid}`
const databaseUrl = new URL(url.href)
databaseUrl.pathname = `/${database}`
const plugin = join(root, 'dist', 'index.js')
// postgres 4 is ESM only: CommonJS apps require() it (Node's require of ESM) and take its default export.
const postgresFile = join(root, 'node_modules', 'postgres', 'src', 'index.js')
const postgresEsm = pathToFileURL(postgresFile).href
const fastify = require.resolve('fastify')

t.before(async () => {
  const admin = new pg.Client({ connectionString: url.href })
  await admin.connect()
  await admin.query(`DROP DATABASE IF EXISTS ${database}`)
  await admin.query(`CREATE DATABASE ${database}`)
  await admin.end()
})
t.teardown(async () => {
  const admin = new pg.Client({ connectionString: url.href })
  await admin.connect()
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
  await admin.end()
})

/** 20 queries through postgres.js, then the scrape's django_db_execute_total lines; the app logs as JSON lines. */
const QUERIES = `
  const sql = postgres(process.env.DATABASE_URL, { max: 1 })
  for (let i = 0; i < 20; i++) await sql\`SELECT \${i}::int AS n\`
  await sql.end()
  const text = (await app.inject('/metrics')).body
  console.log(JSON.stringify({ db: text.split('\\n').filter((l) => l.startsWith('django_db_execute_total')) }))
  await app.close()
`
const APP = `
  const logs = []
  const app = require(${JSON.stringify(fastify)})({ logger: { level: 'warn', stream: { write: (line) => logs.push(JSON.parse(line)) } } })
  await app.register(require(${JSON.stringify(plugin)}).default, { runtimeMetrics: false })
  await app.ready()
`

interface Run { stdout: string, stderr: string }

async function run (t: Test, file: string, source: string, manifest: object, args: string[] = []): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'um-postgres-js-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'postgres-js-app', private: true, ...manifest }))
  writeFileSync(join(dir, file), source)
  return await new Promise((resolve, reject) => {
    execFile(process.execPath, [...args, file], { cwd: dir, env: { ...process.env, DATABASE_URL: databaseUrl.href }, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${err.message}\n${stderr}`))
      else resolve({ stdout, stderr })
    })
  })
}

function result (stdout: string): { warnings: string[], db: string[] } {
  const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as { warnings?: string[], db?: string[] })
  return { warnings: lines.flatMap((l) => l.warnings ?? []), db: lines.flatMap((l) => l.db ?? []) }
}

const REPORT = 'console.log(JSON.stringify({ warnings: logs.filter((l) => l.module === \'postgres\').map((l) => l.msg) }))'

t.test('required after register: one warning on its first load, not on the second instance', async (t) => {
  const { stdout } = await run(t, 'app.cjs', `(async () => {
    ${APP}
    const postgres = require(${JSON.stringify(postgresFile)}).default
    ${QUERIES}
    {
      const app = require(${JSON.stringify(fastify)})({ logger: { level: 'warn', stream: { write: (line) => logs.push(JSON.parse(line)) } } })
      await app.register(require(${JSON.stringify(plugin)}).default, { runtimeMetrics: false })
      require(${JSON.stringify(postgresFile)})
      await app.close()
    }
    ${REPORT}
  })().catch((err) => { console.error(err); process.exit(1) })`, {})
  const { warnings, db } = result(stdout)
  t.same(warnings, [POSTGRES_JS_WARNING], 'one warning, through the app\'s logger')
  t.match(POSTGRES_JS_WARNING, 'docs/postgresql.md, section "postgres.js"')
  const doc = readFileSync(join(root, 'docs', 'postgresql.md'), 'utf8')
  t.ok(doc.includes('\n## postgres.js\n') && doc.includes(POSTGRES_JS_WARNING), 'the section it names exists and quotes it')
  t.same(db, [], 'its queries are not counted (what the warning says)')
})

t.test('required before register: the warning at register', async (t) => {
  const { stdout } = await run(t, 'app.cjs', `(async () => {
    const postgres = require(${JSON.stringify(postgresFile)}).default
    ${APP}
    ${QUERIES}
    ${REPORT}
  })().catch((err) => { console.error(err); process.exit(1) })`, {})
  t.same(result(stdout).warnings, [POSTGRES_JS_WARNING])
})

t.test('imported by an ESM app before register: found in the app\'s dependencies', async (t) => {
  const { stdout } = await run(t, 'app.mjs', `import postgres from ${JSON.stringify(postgresEsm)}
    import { createRequire } from 'node:module'
    const require = createRequire(import.meta.url)
    ${APP}
    ${QUERIES}
    ${REPORT}`, { type: 'module', dependencies: { postgres: '^4.2.0' } })
  t.same(result(stdout).warnings, [POSTGRES_JS_WARNING])
})

t.test('imported by an ESM app under the preload: a process warning as it loads', async (t) => {
  const { stderr } = await run(t, 'app.mjs', `const { default: postgres } = await import(${JSON.stringify(postgresEsm)})
    const sql = postgres(process.env.DATABASE_URL, { max: 1 })
    await sql\`SELECT 1\`
    await sql.end()`, { type: 'module' }, ['--import', pathToFileURL(join(root, 'dist', 'register.js')).href])
  t.equal(stderr.split(POSTGRES_JS_WARNING).length - 1, 1, 'once, on stderr')
  t.match(stderr, 'UPSTREAM_METRICS_NOT_MEASURED')
})

t.test('an app without postgres.js hears nothing of it', async (t) => {
  const { stdout, stderr } = await run(t, 'app.cjs', `(async () => {
    ${APP}
    await app.close()
    ${REPORT}
  })().catch((err) => { console.error(err); process.exit(1) })`, {})
  t.same(result(stdout).warnings, [])
  t.notMatch(stderr, 'postgres.js')
})
