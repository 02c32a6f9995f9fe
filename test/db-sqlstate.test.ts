import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import pg from 'pg'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { djangoDatabaseError, errorType } from '../lib/db/errors'
import { SQLSTATE_CLASSES } from '../lib/db/sqlstate'
import { parse, series } from './helpers/metrics'
import { python } from './helpers/python'

// django_db_errors_total{type} is the class psycopg2 raises: these tests ask the real psycopg2
// (Debian's python3-psycopg2, on the same PostgreSQL) and fail, never skip, without it.
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const root = join(__dirname, '..')
const probe = join(__dirname, 'fixtures', 'db', 'psycopg-errors.py')

/** The class psycopg2 raises for each statement (null: it succeeded). */
async function psycopgRaises (statements: string[], raiser: 'psycopg2' | 'django' = 'psycopg2'): Promise<Array<string | null>> {
  const args = raiser === 'django' ? [probe, url, '--django'] : [probe, url]
  return JSON.parse(await python(args, JSON.stringify(statements))) as Array<string | null>
}

const raise = (code: string) => `DO $$BEGIN RAISE EXCEPTION 'probe' USING ERRCODE = '${code}'; END$$`
const CHARACTERS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'

t.test('lib/db/sqlstate.ts is what scripts/sqlstate-table.py prints from the installed psycopg2', async (t) => {
  const generated = await python([join(root, 'scripts', 'sqlstate-table.py')])
  const committed = readFileSync(join(root, 'lib', 'db', 'sqlstate.ts'), 'utf8')
  t.ok(generated.length > 10_000, 'the script printed the tables')
  t.equal(committed, generated, 'regenerate with: /usr/bin/python3 scripts/sqlstate-table.py > lib/db/sqlstate.ts')
})

t.test('every SQLSTATE psycopg2 knows, and an unknown code of every class, gets the class psycopg2 raises', async (t) => {
  const codes = [...SQLSTATE_CLASSES.keys()]
  for (const a of CHARACTERS) for (const b of CHARACTERS) codes.push(`${a}${b}ZZZ`)
  t.ok(codes.length > 1500)
  const raised = await psycopgRaises(codes.map(raise))
  const differences = codes
    .map((code, i) => ({ code, psycopg2: raised[i], plugin: errorType(code, 'probe', true) }))
    .filter((d) => d.psycopg2 !== d.plugin)
  t.same(differences, [], 'no SQLSTATE is labelled differently')
})

t.test('an error PostgreSQL sent, thrown by pg, is named as the django.db class Django raises for it', async (t) => {
  const codes = [...SQLSTATE_CLASSES.keys()]
  for (const a of CHARACTERS) for (const b of CHARACTERS) codes.push(`${a}${b}ZZZ`)
  const statements = codes.map(raise)
  const django = await psycopgRaises(statements, 'django')
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  t.teardown(async () => await client.end())
  const differences = []
  for (let i = 0; i < statements.length; i++) {
    const thrown = await client.query(statements[i]!).then(() => null, (err: unknown) => err)
    const plugin = thrown === null ? null : djangoDatabaseError(thrown) ?? 'not a database error'
    if (plugin !== django[i]) differences.push({ code: codes[i], django: django[i], plugin })
  }
  t.same(new Set(django), new Set(['DataError', 'OperationalError', 'IntegrityError', 'InternalError', 'ProgrammingError', 'NotSupportedError', 'DatabaseError']), 'Django raises each of its classes for some code')
  t.same(differences, [], 'no SQLSTATE is named differently')
  t.equal(djangoDatabaseError(new Error('Connection terminated unexpectedly')), undefined, 'an error without a SQLSTATE is not one')
  t.equal(djangoDatabaseError(Object.assign(new Error('read EPIPE'), { code: 'EPIPE' })), undefined, 'nor a system error')
})

t.test('django_db_errors_total{type} counts the classes psycopg2 raises for the same statements', async (t) => {
  const setup = new pg.Client({ connectionString: url })
  await setup.connect()
  await setup.query('DROP TABLE IF EXISTS um_pg_sqlstate; CREATE TABLE um_pg_sqlstate (id int PRIMARY KEY, n int NOT NULL)')
  await setup.query('INSERT INTO um_pg_sqlstate VALUES (1, 1)')
  t.teardown(async () => {
    await setup.query('DROP TABLE IF EXISTS um_pg_sqlstate')
    await setup.end()
  })
  const statements = [
    'INSERT INTO um_pg_sqlstate VALUES (1, 2)', // duplicate key
    'SELECT * FROM um_pg_sqlstate_missing',
    'SELECT missing_column FROM um_pg_sqlstate',
    'SELECT 1 / 0',
    'SELEC 1',
    "SELECT 'x'::int",
    'INSERT INTO um_pg_sqlstate VALUES (2, NULL)',
    "DO $$BEGIN RAISE EXCEPTION 'boom'; END$$",
    raise('22ZZZ'), raise('40ZZZ'), raise('56ZZZ'), raise('EAZZZ'), raise('ZZZZZ'),
    'BEGIN', 'INSERT INTO um_pg_sqlstate VALUES (1, 3)', 'SELECT 1', 'ROLLBACK',
    'SELECT n FROM um_pg_sqlstate'
  ]
  const raised = await psycopgRaises(statements)
  const expected = new Map<string, number>()
  for (const type of raised) if (type !== null) expected.set(type, (expected.get(type) ?? 0) + 1)
  t.equal(expected.get('UniqueViolation'), 2, 'psycopg2 says UniqueViolation for a duplicate key')
  t.equal(expected.get('UndefinedTable'), 1)
  t.equal(expected.get('UndefinedColumn'), 1)
  t.equal(expected.get('DivisionByZero'), 1)

  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  for (const statement of statements) await client.query(statement).catch(() => {})
  await client.end()
  const exposition = parse((await app.inject('/metrics')).body)
  await app.close()
  const counted = new Map(series(exposition, 'django_db_errors_total').map((s) => [s.labels.type!, s.value]))
  t.same(Object.fromEntries(counted), Object.fromEntries(expected))
})

t.test('errors without a SQLSTATE are the ones psycopg2 raises in the client', async (t) => {
  const cases: Array<[string | undefined, string, boolean, string]> = [
    [undefined, 'Client was closed and is not queryable', false, 'InterfaceError'],
    [undefined, 'Connection terminated unexpectedly', false, 'OperationalError'],
    [undefined, 'Query read timeout', false, 'OperationalError'],
    ['ECONNRESET', 'read ECONNRESET', false, 'OperationalError'],
    ['EPIPE', 'write EPIPE', false, 'OperationalError'],
    ['EPIPE', 'a server error with that SQLSTATE', true, 'DatabaseError'],
    ['23505', 'duplicate key', false, 'UniqueViolation']
  ]
  for (const [code, message, fromServer, want] of cases) t.equal(errorType(code, message, fromServer), want, `${code} ${message}`)
})
