import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import pg from 'pg'
import { INVALID_SPAN_CONTEXT, trace } from '@opentelemetry/api'
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg'
import Fastify, { type FastifyInstance } from 'fastify'
import upstreamMetrics from '../lib/index'
import { patchRefs } from '../lib/patch'
import script from './fixtures/db/script.cjs'

// pg is imported above, before any plugin registers: the usual order in real apps.
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const { setup, teardown, run, expectedSamples, parseSamples, dbSamples, key } = script

async function metrics (app: FastifyInstance): Promise<Map<string, number>> {
  const res = await app.inject('/metrics')
  return parseSamples(res.body)
}

function wrapped (): boolean {
  return (pg.Client.prototype.query as { __wrapped?: boolean }).__wrapped === true
}

t.test('the known script gives exact counts, errors by psycopg2 class and model rows', async (t) => {
  const p = 'um_pg_core'
  await setup(pg, url, p)
  t.teardown(() => teardown(pg, url, p))
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  await app.ready()
  await run(pg, url, p)
  const samples = await metrics(app)
  await app.close()
  t.same(Object.fromEntries(dbSamples(samples)), Object.fromEntries(expectedSamples(p)))
  t.equal(samples.get(key('django_db_query_duration_seconds_bucket', { alias: 'default', le: '+Inf', vendor: 'postgresql' })), 19)
})

t.test('two instances count separately; a closed one stops; the last close removes the patch', async (t) => {
  const a = Fastify()
  const b = Fastify()
  await a.register(upstreamMetrics, { runtimeMetrics: false })
  await b.register(upstreamMetrics, { runtimeMetrics: false, db: { alias: 'replica' } })
  t.ok(wrapped(), 'pg, loaded before the plugin, is patched')
  t.equal(patchRefs('pg'), 2)
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  await pool.query('SELECT 1')
  await a.close()
  t.equal(patchRefs('pg'), 1)
  await pool.query('SELECT 2')
  await pool.query('SELECT 3')
  const inB = await metrics(b)
  await b.close()
  t.equal(patchRefs('pg'), 0)
  t.notOk(wrapped(), 'the patch is gone with the last instance')
  await pool.query('SELECT 4')
  await pool.end()
  t.equal(inB.get(key('django_db_execute_total', { alias: 'replica', vendor: 'postgresql' })), 3)
  t.equal(inB.get(key('django_db_new_connections_total', { alias: 'replica', vendor: 'postgresql' })), 1)

  const c = Fastify()
  await c.register(upstreamMetrics, { runtimeMetrics: false })
  t.ok(wrapped(), 'patched again by a new instance')
  const pool2 = new pg.Pool({ connectionString: url, max: 1 })
  await pool2.query('SELECT 1')
  await pool2.end()
  const inC = await metrics(c)
  await c.close()
  t.equal(inC.get(key('django_db_execute_total', { alias: 'default', vendor: 'postgresql' })), 1)
})

t.test('an alias function tells databases apart', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, db: { alias: ({ database }) => database === 'postgres' ? 'other' : 'default' } })
  const main = new pg.Pool({ connectionString: url, max: 1 })
  const other = new pg.Pool({ connectionString: url.replace(/\/[^/]*$/, '/postgres'), max: 1 })
  await main.query('SELECT 1')
  await other.query('SELECT 1')
  await other.query('SELECT 2')
  await main.end()
  await other.end()
  const samples = await metrics(app)
  await app.close()
  t.equal(samples.get(key('django_db_execute_total', { alias: 'default', vendor: 'postgresql' })), 1)
  t.equal(samples.get(key('django_db_execute_total', { alias: 'other', vendor: 'postgresql' })), 2)
  t.equal(samples.get(key('django_db_new_connections_total', { alias: 'other', vendor: 'postgresql' })), 1)
})

t.test('db: false measures nothing and patches nothing', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, db: false })
  t.notOk(wrapped())
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  await pool.query('SELECT 1')
  await pool.end()
  const samples = await metrics(app)
  await app.close()
  t.equal(samples.get(key('django_db_execute_total', { alias: 'default', vendor: 'postgresql' })), undefined)
})

t.test('a loaded pg that cannot be instrumented gets one warning naming the preload', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'um-pg-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const pkg = join(dir, 'node_modules', 'pg')
  mkdirSync(pkg, { recursive: true })
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'pg', version: '99.0.0', main: 'index.js' }))
  writeFileSync(join(pkg, 'index.js'), 'class Client { query () {} }\nmodule.exports = { Client }\n')
  const fake = require(pkg) as { Client: { prototype: { query: { __wrapped?: boolean } } } }
  t.teardown(() => { delete require.cache[join(pkg, 'index.js')] })

  const warnings: string[] = []
  const logger = { level: 'warn', stream: { write: (line: string) => { warnings.push(line) } } }
  const a = Fastify({ logger })
  const b = Fastify({ logger })
  await a.register(upstreamMetrics, { runtimeMetrics: false })
  await b.register(upstreamMetrics, { runtimeMetrics: false })
  await a.close()
  await b.close()
  const about = warnings.filter((w) => w.includes('99.0.0'))
  t.equal(about.length, 1, 'one warning for that copy, whatever the number of instances')
  t.match(about[0], /could not be instrumented/)
  t.match(about[0], /--import upstream-metrics\/register/)
  t.match(about[0], /--require upstream-metrics\/register/)
  t.notOk(fake.Client.prototype.query.__wrapped)
})

t.test('migrations: applied rows and unapplied files of node-pg-migrate, or an app count', async (t) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  t.teardown(async () => {
    await client.query('DROP SCHEMA IF EXISTS um_pg_mig CASCADE')
    await client.end()
  })
  await client.query('DROP SCHEMA IF EXISTS um_pg_mig CASCADE')
  await client.query('CREATE SCHEMA um_pg_mig')
  await client.query('CREATE TABLE um_pg_mig.pgmigrations (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL DEFAULT now())')
  await client.query("INSERT INTO um_pg_mig.pgmigrations (name) VALUES ('1700000000000_init'), ('1700000000001_users')")
  const dir = mkdtempSync(join(tmpdir(), 'um-pg-mig-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const f of ['1700000000000_init.js', '1700000000001_users.js', '1700000000002_orders.js', '1700000000003_index.sql']) writeFileSync(join(dir, f), '')

  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false, db: { migrations: { client, tool: 'node-pg-migrate', table: 'um_pg_mig.pgmigrations', dir } } })
  await app.ready()
  const samples = await metrics(app)
  await app.close()
  t.equal(samples.get(key('django_migrations_applied_total', { connection: 'default' })), 2)
  t.equal(samples.get(key('django_migrations_unapplied_total', { connection: 'default' })), 2)

  const off = Fastify()
  await off.register(upstreamMetrics, { runtimeMetrics: false })
  await off.ready()
  const none = await metrics(off)
  await off.close()
  t.equal(none.get(key('django_migrations_applied_total', { connection: 'default' })), undefined, 'off by default')

  const counted = Fastify()
  await counted.register(upstreamMetrics, { runtimeMetrics: false, db: { alias: 'main', migrations: { count: async () => ({ applied: 7, unapplied: 1 }) } } })
  await counted.ready()
  const own = await metrics(counted)
  await counted.close()
  t.equal(own.get(key('django_migrations_applied_total', { connection: 'main' })), 7)
  t.equal(own.get(key('django_migrations_unapplied_total', { connection: 'main' })), 1)
})

t.test('semantic-convention metrics only when asked', async (t) => {
  const on = Fastify()
  const off = Fastify()
  await on.register(upstreamMetrics, { runtimeMetrics: false, db: { semconvMetrics: true } })
  await off.register(upstreamMetrics, { runtimeMetrics: false })
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  await pool.query('SELECT 1')
  await pool.query('SELEC 1').catch(() => {})
  await pool.end()
  const withSemconv = (await on.inject('/metrics')).body
  const without = (await off.inject('/metrics')).body
  await on.close()
  await off.close()
  t.match(withSemconv, /^db_client_operation_duration\w*_count\{[^}]*db_operation_name="SELECT"[^}]*\} 1/m)
  t.match(withSemconv, /^db_client_operation_duration\w*_count\{[^}]*db_operation_name="OTHER"[^}]*error_type="42601"[^}]*\} 1/m, 'no SQL text in the label')
  t.notMatch(withSemconv, /SELEC"/)
  t.notMatch(without, /db_client_operation_duration/)
})

t.test('invalid db options fail at register, naming the option', async (t) => {
  const cases: Array<[unknown, string]> = [
    [{ alias: '' }, 'db.alias'],
    [{ alias: 3 }, 'db.alias'],
    [{ defaultSchema: '' }, 'db.defaultSchema'],
    [{ semconvMetrics: 'yes' }, 'db.semconvMetrics'],
    [{ migrations: {} }, 'db.migrations'],
    [{ migrations: { client: {} } }, 'db.migrations.client'],
    [{ migrations: { count: 1 } }, 'db.migrations.count'],
    [{ migrations: { count: () => ({ applied: 0, unapplied: 0 }), tool: 'flyway' } }, 'db.migrations.tool'],
    [{ migrations: { count: () => ({ applied: 0, unapplied: 0 }), tool: 'knex', table: 'x; drop' } }, 'db.migrations.table'],
    [{ migrations: { count: () => ({ applied: 0, unapplied: 0 }), table: 'knex_migrations' } }, 'db.migrations.table'],
    [{ vendor: 'mysql' }, 'db.vendor'],
    ['yes', 'db']
  ]
  for (const [db, name] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(upstreamMetrics, { db } as never) }, { code: 'UPSTREAM_METRICS_INVALID_OPTION', message: new RegExp(`option "${name.replace(/\./g, '\\.')}"`) }, name)
    await app.close()
  }
})

t.test('several copies of pg already loaded are all patched, and all unpatched at the end', async (t) => {
  const copies = join(__dirname, 'fixtures', 'db', 'copies')
  const copy = join(copies, 'node_modules', 'pg')
  cpSync(join(__dirname, '..', 'node_modules', 'pg'), copy, { recursive: true })
  t.teardown(() => {
    for (const file of Object.keys(require.cache)) if (file.startsWith(copies)) delete require.cache[file]
    rmSync(copies, { recursive: true, force: true })
  })
  const other = require(copy) as typeof pg
  t.not(other.Client, pg.Client, 'a distinct copy')
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  t.ok(wrapped())
  t.equal((other.Client.prototype.query as { __wrapped?: boolean }).__wrapped, true)
  const a = new pg.Pool({ connectionString: url, max: 1 })
  const b = new other.Pool({ connectionString: url, max: 1 })
  await a.query('SELECT 1')
  await b.query('SELECT 1')
  await a.end()
  await b.end()
  const samples = await metrics(app)
  await app.close()
  t.equal(samples.get(key('django_db_execute_total', { alias: 'default', vendor: 'postgresql' })), 2)
  t.notOk(wrapped())
  t.notOk((other.Client.prototype.query as { __wrapped?: boolean }).__wrapped)
})

t.test('a failing alias function never reaches the app: its queries count as default', async (t) => {
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'error', stream: { write: (line: string) => { lines.push(line) } } } })
  await app.register(upstreamMetrics, { runtimeMetrics: false, db: { alias: () => { throw new Error('boom') } } })
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  const { rows } = await pool.query('SELECT 41 + 1 AS n')
  await pool.end()
  const samples = await metrics(app)
  await app.close()
  t.equal(rows[0].n, 42)
  t.equal(samples.get(key('django_db_execute_total', { alias: 'default', vendor: 'postgresql' })), 1)
  t.ok(lines.some((l) => l.includes('recording a metric failed')))
})

t.test("an app's own OpenTelemetry pg instrumentation keeps working beside the plugin", async (t) => {
  const seen: string[] = []
  const tracer = {
    startSpan (name: string) {
      seen.push(name)
      return trace.wrapSpanContext(INVALID_SPAN_CONTEXT)
    },
    startActiveSpan () { throw new Error('unused') }
  }
  const theirs = new PgInstrumentation({ enabled: false })
  theirs.setTracerProvider({ getTracer: () => tracer as never })
  const definition = theirs.getModuleDefinitions().find((d) => d.name === 'pg')!
  definition.patch!(pg, '8')
  t.teardown(() => { definition.unpatch!(pg, '8') })

  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  await pool.query('SELECT 1')
  const samples = await metrics(app)
  await app.close()
  await pool.query('SELECT 2')
  await pool.end()
  t.equal(samples.get(key('django_db_execute_total', { alias: 'default', vendor: 'postgresql' })), 1)
  t.equal(seen.filter((n) => n.startsWith('pg.query')).length, 2, 'their spans, before and after the plugin closed')
})

t.test('migrations of knex, Prisma and drizzle', async (t) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  t.teardown(async () => {
    await client.query('DROP SCHEMA IF EXISTS um_pg_mig2 CASCADE')
    await client.end()
  })
  await client.query('DROP SCHEMA IF EXISTS um_pg_mig2 CASCADE')
  await client.query('CREATE SCHEMA um_pg_mig2')
  await client.query('CREATE TABLE um_pg_mig2.knex_migrations (id serial PRIMARY KEY, name varchar(255), batch int, migration_time timestamptz)')
  await client.query("INSERT INTO um_pg_mig2.knex_migrations (name, batch) VALUES ('20240101_a.js', 1), ('20240102_b.js', 1), ('20240103_c.js', 2)")
  await client.query('CREATE TABLE um_pg_mig2._prisma_migrations (id varchar(36) PRIMARY KEY, migration_name varchar(255), finished_at timestamptz, rolled_back_at timestamptz)')
  await client.query("INSERT INTO um_pg_mig2._prisma_migrations VALUES ('1', '20240101_init', now(), NULL), ('2', '20240102_users', NULL, NULL), ('3', '20240103_bad', now(), now())")
  await client.query('CREATE TABLE um_pg_mig2.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at bigint)')
  await client.query("INSERT INTO um_pg_mig2.__drizzle_migrations (hash, created_at) VALUES ('h1', 1700000000000), ('h2', 1700000001000)")

  const root = mkdtempSync(join(tmpdir(), 'um-pg-tools-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  mkdirSync(join(root, 'knex'))
  for (const f of ['20240101_a.js', '20240102_b.js', '20240103_c.js', '20240104_d.js']) writeFileSync(join(root, 'knex', f), '')
  for (const d of ['20240101_init', '20240102_users', '20240103_bad', '20240104_orders']) mkdirSync(join(root, 'prisma', d), { recursive: true })
  writeFileSync(join(root, 'prisma', 'migration_lock.toml'), '')
  mkdirSync(join(root, 'drizzle', 'meta'), { recursive: true })
  writeFileSync(join(root, 'drizzle', 'meta', '_journal.json'), JSON.stringify({ entries: [{ when: 1700000000000 }, { when: 1700000001000 }, { when: 1700000002000 }] }))

  const cases = [
    { tool: 'knex', table: 'um_pg_mig2.knex_migrations', dir: join(root, 'knex'), applied: 3, unapplied: 1 },
    { tool: 'prisma', table: 'um_pg_mig2._prisma_migrations', dir: join(root, 'prisma'), applied: 1, unapplied: 3 },
    { tool: 'drizzle', table: 'um_pg_mig2.__drizzle_migrations', dir: join(root, 'drizzle'), applied: 2, unapplied: 1 },
    { tool: 'knex', table: 'um_pg_mig2.knex_migrations', dir: join(root, 'absent'), applied: 3, unapplied: undefined }
  ] as const
  for (const c of cases) {
    const app = Fastify()
    await app.register(upstreamMetrics, { runtimeMetrics: false, db: { migrations: { client, tool: c.tool, table: c.table, dir: c.dir } } })
    await app.ready()
    const samples = await metrics(app)
    await app.close()
    t.equal(samples.get(key('django_migrations_applied_total', { connection: 'default' })), c.applied, `${c.tool} applied`)
    t.equal(samples.get(key('django_migrations_unapplied_total', { connection: 'default' })), c.unapplied, `${c.tool} unapplied`)
  }
})

t.test('a multi-statement text is one execute, as one psycopg execute() is; its rows count per statement', async (t) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  await client.query('DROP TABLE IF EXISTS um_pg_multi; CREATE TABLE um_pg_multi (id int, v text)')
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  await client.query("INSERT INTO um_pg_multi VALUES (1, 'a'), (2, 'b'); SELECT 1; UPDATE um_pg_multi SET v = 'c' WHERE id = 2; DELETE FROM um_pg_multi")
  const samples = await metrics(app)
  await app.close()
  await client.query('DROP TABLE IF EXISTS um_pg_multi')
  await client.end()
  const db = { alias: 'default', vendor: 'postgresql' }
  t.equal(samples.get(key('django_db_execute_total', db)), 1, 'django adds 1 per execute() call')
  t.equal(samples.get(key('django_db_query_duration_seconds_count', db)), 1, 'one call, one observation')
  t.equal(samples.get(key('django_model_inserts_total', { model: 'um_pg_multi' })), 2)
  t.equal(samples.get(key('django_model_updates_total', { model: 'um_pg_multi' })), 1)
  t.equal(samples.get(key('django_model_deletes_total', { model: 'um_pg_multi' })), 2)
  t.equal(samples.get(key('django_db_new_connections_total', db)), undefined, 'the client connected before the plugin: no series')
})

t.test('a failed connection attempt is a new connection and a connection error, and creates no query series', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const port = await script.closedPort()
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'test' })
  await t.rejects(client.connect()) // promise form
  const pool = new pg.Pool({ host: '127.0.0.1', port, user: 'postgres', database: 'test', max: 1 })
  await t.rejects(pool.query('SELECT 1')) // the pool connects with a callback
  await pool.end()
  const text = (await app.inject('/metrics')).body
  await app.close()
  const samples = parseSamples(text)
  const db = { alias: 'default', vendor: 'postgresql' }
  t.equal(samples.get(key('django_db_new_connections_total', db)), 2, 'django counts before connecting')
  t.equal(samples.get(key('django_db_new_connection_errors_total', db)), 2)
  t.same([...dbSamples(samples).keys()].sort(), [key('django_db_new_connection_errors_total', db), key('django_db_new_connections_total', db)].sort(),
    'no execute, duration, error or query series, not even at 0')
  t.match(text, /^# TYPE django_db_execute_total counter$/m, 'the families are still declared')
})
