import t, { type Test } from 'tap'
import pg from 'pg'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { key, scrape } from './helpers/metrics'

// db.models: django labels model series with the name given to ExportModelOperationsMixin('claim'),
// not with the table (app_claim); the mapping gives dashboards the same values.
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

async function withTables (t: Test): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  const reset = 'DROP SCHEMA IF EXISTS um_pg_models_s CASCADE; DROP TABLE IF EXISTS um_pg_models_claim, um_pg_models_payer, um_pg_models_note'
  await client.query(reset)
  await client.query(`CREATE TABLE um_pg_models_claim (id int PRIMARY KEY, v text);
    CREATE TABLE um_pg_models_payer (id int PRIMARY KEY);
    CREATE TABLE um_pg_models_note (id int);
    CREATE SCHEMA um_pg_models_s; CREATE TABLE um_pg_models_s.events (id int)`)
  t.teardown(async () => {
    await client.query(reset)
    await client.end()
  })
  return client
}

const model = (name: string, op: 'inserts' | 'updates' | 'deletes') => key(`django_model_${op}_total`, { model: name })

t.test('a record maps tables to model names; the mapped models start at 0 as with the mixin', async (t) => {
  const client = await withTables(t)
  const app = Fastify()
  await app.register(upstreamMetrics, {
    runtimeMetrics: false,
    db: { models: { um_pg_models_claim: 'claim', um_pg_models_payer: 'payer', 'um_pg_models_s.events': 'event' } }
  })
  await app.ready()
  const start = await scrape(app)
  for (const name of ['claim', 'payer', 'event']) {
    for (const op of ['inserts', 'updates', 'deletes'] as const) t.equal(start.samples.get(model(name, op)), 0, `${name} ${op} at 0 from the start`)
  }

  await client.query("INSERT INTO um_pg_models_claim VALUES (1, 'a'), (2, 'b')")
  await client.query("UPDATE public.um_pg_models_claim SET v = 'c' WHERE id = 1") // schema written out: same table
  await client.query('DELETE FROM "um_pg_models_claim" WHERE id = 2')
  await client.query('INSERT INTO um_pg_models_s.events VALUES (1)')
  await client.query('INSERT INTO um_pg_models_note VALUES (1)') // not in the record: its table name
  const after = await scrape(app)
  await app.close()
  t.equal(after.samples.get(model('claim', 'inserts')), 2)
  t.equal(after.samples.get(model('claim', 'updates')), 1)
  t.equal(after.samples.get(model('claim', 'deletes')), 1)
  t.equal(after.samples.get(model('event', 'inserts')), 1)
  t.equal(after.samples.get(model('payer', 'inserts')), 0)
  t.equal(after.samples.get(model('um_pg_models_note', 'inserts')), 1)
  t.equal(after.samples.get(model('um_pg_models_claim', 'inserts')), undefined, 'no series under the table name')
})

t.test('a function maps tables to model names; undefined or a throw keeps the table name', async (t) => {
  const client = await withTables(t)
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'error', stream: { write: (line: string) => { lines.push(line) } } } })
  const seen: string[] = []
  await app.register(upstreamMetrics, {
    runtimeMetrics: false,
    db: {
      models: (table) => {
        seen.push(table)
        if (table === 'um_pg_models_payer') throw new Error('boom')
        return table.startsWith('um_pg_models_') && !table.includes('.') ? table.slice('um_pg_models_'.length) : undefined
      }
    }
  })
  await app.ready()
  t.same([...(await scrape(app)).samples.keys()].filter((k) => k.startsWith('django_model_')), [], 'nothing created before a write')
  await client.query("INSERT INTO um_pg_models_claim VALUES (1, 'a'), (2, 'b')")
  await client.query("INSERT INTO um_pg_models_claim VALUES (3, 'a')")
  await client.query('INSERT INTO um_pg_models_payer VALUES (1)')
  await client.query('INSERT INTO um_pg_models_s.events VALUES (1)')
  const after = await scrape(app)
  await app.close()
  t.equal(after.samples.get(model('claim', 'inserts')), 3)
  t.equal(after.samples.get(model('um_pg_models_payer', 'inserts')), 1, 'the function threw: the table name')
  t.equal(after.samples.get(model('um_pg_models_s.events', 'inserts')), 1, 'undefined: the table name')
  t.same(seen, ['um_pg_models_claim', 'um_pg_models_payer', 'um_pg_models_s.events'], 'called once per table')
  t.ok(lines.some((l) => l.includes('recording a metric failed')), 'the throw is logged')
})

t.test('tables are keyed as their default label: bare when unqualified or in defaultSchema, else schema.table', async (t) => {
  const client = await withTables(t)
  const app = Fastify()
  await app.register(upstreamMetrics, {
    runtimeMetrics: false,
    db: { defaultSchema: 'um_pg_models_s', models: { events: 'event', 'public.um_pg_models_claim': 'claim', um_pg_models_payer: 'payer' } }
  })
  await client.query('INSERT INTO um_pg_models_s.events VALUES (1)') // in defaultSchema: keyed bare
  await client.query("INSERT INTO public.um_pg_models_claim VALUES (1, 'a')") // elsewhere: schema.table
  await client.query('INSERT INTO um_pg_models_payer VALUES (1)') // no schema written: keyed bare
  const after = await scrape(app)
  await app.close()
  t.equal(after.samples.get(model('event', 'inserts')), 1)
  t.equal(after.samples.get(model('claim', 'inserts')), 1)
  t.equal(after.samples.get(model('payer', 'inserts')), 1)
})

t.test('invalid db.models fail at register, naming the option', async (t) => {
  const cases: Array<[unknown, string]> = [
    ['claim', 'db.models'],
    [['claim'], 'db.models'],
    [null, 'db.models'],
    [{ app_claim: '' }, 'db.models.app_claim'],
    [{ app_claim: 3 }, 'db.models.app_claim'],
    [{ '': 'claim' }, 'db.models']
  ]
  for (const [models, name] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(upstreamMetrics, { db: { models } } as never) }, { code: 'UPSTREAM_METRICS_INVALID_OPTION', message: new RegExp(`option "${name.replace(/\./g, '\\.')}"`) }, JSON.stringify(models))
    await app.close()
  }
})
