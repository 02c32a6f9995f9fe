import pg from 'pg'
import type { Test } from 'tap'

/** A database of the test's own on the tests' PostgreSQL, created fresh before it and dropped after it. */
export function ownDatabase (t: Test, admin: URL, database: string): void {
  const run = async (sql: string[]): Promise<void> => {
    const client = new pg.Client({ connectionString: admin.href })
    await client.connect()
    try {
      for (const statement of sql) await client.query(statement)
    } finally {
      await client.end()
    }
  }
  t.before(async () => { await run([`DROP DATABASE IF EXISTS ${database}`, `CREATE DATABASE ${database}`]) })
  t.teardown(async () => { await run([`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`]) })
}
