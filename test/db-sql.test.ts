import t from 'tap'
import { parseStatement, parseStatements, modelLabel } from '../lib/db/sql'

t.test('data-changing statements give (operation, table); the rest gives nothing', async (t) => {
  const cases: Array<[string, [string, string] | undefined]> = [
    ["INSERT INTO items (id, name) VALUES (1, 'a'), (2, 'b') ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING id", ['INSERT', 'items']],
    ['insert into public."Users" (a) values ($1)', ['INSERT', 'Users']],
    ['INSERT INTO audit.log SELECT 1', ['INSERT', 'audit.log']],
    ['INSERT INTO "Audit"."Log" AS l DEFAULT VALUES', ['INSERT', 'Audit.Log']],
    ['  -- leading comment\n/* block /* nested */ */ UPDATE ONLY "we ""ird" SET a = 1', ['UPDATE', 'we "ird']],
    ['UPDATE items* SET a = 1', ['UPDATE', 'items']],
    ['DELETE FROM mydb.public.t WHERE x = 1', ['DELETE', 't']],
    ['delete from only Items where true', ['DELETE', 'items']],
    ["WITH RECURSIVE x(a) AS (SELECT 1 UNION SELECT $$)($$), y AS MATERIALIZED (SELECT ')') DELETE FROM t2 USING x", ['DELETE', 't2']],
    ['WITH moved AS NOT MATERIALIZED (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved', ['INSERT', 'b']],
    ['SELECT * FROM items', undefined],
    ['WITH x AS (DELETE FROM a RETURNING *) SELECT * FROM x', undefined],
    ['MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE', undefined],
    ['INSERT INTO (x)', undefined],
    ['INSERT items VALUES (1)', undefined],
    ['UPDATE U&"d\\0061t" SET a = 1', undefined],
    ['INSERT INTO t.', undefined],
    ['INSERT INTO "" VALUES (1)', undefined],
    ['UPDATE t+1 SET a = 1', undefined],
    ['COPY items FROM STDIN', undefined],
    ['', undefined]
  ]
  for (const [sql, want] of cases) {
    const got = parseStatement(sql)
    t.same(got === undefined ? undefined : [got.op, got.table], want, sql)
  }
})

t.test('multi-statement texts are split outside literals, comments and parentheses', async (t) => {
  const got = parseStatements("INSERT INTO a VALUES (';'); SELECT ';' -- ;\n; DELETE FROM b; UPDATE c SET x = $t$;$t$; DELETE FROM d", 4)
  t.same(got.map((s) => s === undefined ? undefined : [s.op, s.table]), [['INSERT', 'a'], undefined, ['DELETE', 'b'], ['UPDATE', 'c']])
})

t.test('the model label depends on the default schema', async (t) => {
  const s = parseStatement('INSERT INTO app.users VALUES (1)')!
  t.equal(modelLabel(s, 'public'), 'app.users')
  t.equal(modelLabel(s, 'app'), 'users')
  t.equal(modelLabel(parseStatement('INSERT INTO public.users VALUES (1)')!, 'app'), 'public.users')
})
