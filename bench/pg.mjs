// CPU time per query through pg, without and with upstream-metrics (every db metric on),
// sequential and at concurrency 4, against PostgreSQL (DATABASE_URL or 127.0.0.1:5432/test).
// Each round measures without, with, with, without (ABBA) so drift on a shared machine
// cancels; figures are medians over rounds of this process's user+system CPU per query,
// and the ratio is the median of the per-round ratios.
// Usage: npm run build && node bench/pg.mjs [--queries 4000] [--rounds 7]
import os from 'node:os'
import { parseArgs } from 'node:util'
import pg from 'pg'
import Fastify from 'fastify'
import upstreamMetrics from '../dist/entry.mjs'

const { values } = parseArgs({ options: { queries: { type: 'string', default: '4000' }, rounds: { type: 'string', default: '7' } } })
const QUERIES = Number(values.queries)
const ROUNDS = Number(values.rounds)
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const TABLE = 'um_pg_bench'

const workloads = {
  'SELECT 1': (pool) => pool.query('SELECT 1'),
  'mixed (select/insert/update, params)': (pool, i) => {
    switch (i % 3) {
      case 0: return pool.query(`SELECT id, name FROM ${TABLE} WHERE id = $1`, [i % 100 + 1])
      case 1: return pool.query(`INSERT INTO ${TABLE} (name) VALUES ($1) RETURNING id`, ['n' + (i % 10)])
      default: return pool.query(`UPDATE ${TABLE} SET name = $1 WHERE id = $2`, ['u', i % 100 + 1])
    }
  }
}

async function measure (pool, workload, concurrency) {
  let next = 0
  const start = process.cpuUsage()
  async function worker () {
    while (next < QUERIES) await workload(pool, next++)
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const used = process.cpuUsage(start)
  return (used.user + used.system) / QUERIES
}

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

async function main () {
  const setupClient = new pg.Client({ connectionString: url })
  await setupClient.connect()
  await setupClient.query(`DROP TABLE IF EXISTS ${TABLE}`)
  await setupClient.query(`CREATE TABLE ${TABLE} (id serial PRIMARY KEY, name text)`)
  await setupClient.query(`INSERT INTO ${TABLE} (name) SELECT 'x' FROM generate_series(1, 100)`)
  await setupClient.end()

  const rows = []
  for (const [name, workload] of Object.entries(workloads)) {
    for (const concurrency of [1, 4]) {
      const pool = new pg.Pool({ connectionString: url, max: concurrency })
      await measure(pool, workload, concurrency) // warm-up: JIT, connections
      const off = []
      const on = []
      const ratios = []
      for (let r = 0; r < ROUNDS; r++) {
        // ABBA order per round: a linear drift of the shared machine cancels out of the ratio.
        const a1 = await measure(pool, workload, concurrency)
        const app = Fastify()
        await app.register(upstreamMetrics, { runtimeMetrics: false })
        await app.ready()
        const b1 = await measure(pool, workload, concurrency)
        const b2 = await measure(pool, workload, concurrency)
        const body = (await app.inject('/metrics')).body
        if (!/django_db_execute_total\{alias="default",vendor="postgresql"\} [1-9]/.test(body)) throw new Error('the plugin measured nothing')
        await app.close()
        const a2 = await measure(pool, workload, concurrency)
        off.push((a1 + a2) / 2)
        on.push((b1 + b2) / 2)
        ratios.push((b1 + b2) / (a1 + a2))
      }
      await pool.end()
      const a = median(off)
      const b = median(on)
      const ratio = median(ratios)
      rows.push({ name, concurrency, off: a, on: b, ratio, spread: [Math.min(...ratios), Math.max(...ratios)] })
      console.error(`${name} c=${concurrency}: ${a.toFixed(1)} µs → ${b.toFixed(1)} µs (${ratio.toFixed(3)}×)`)
    }
  }

  const cleanup = new pg.Client({ connectionString: url })
  await cleanup.connect()
  await cleanup.query(`DROP TABLE IF EXISTS ${TABLE}`)
  await cleanup.end()

  console.log(`Node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'} × ${os.cpus().length}, ${new Date().toISOString().slice(0, 10)}, ${QUERIES} queries × ${ROUNDS} rounds, median\n`)
  console.log('| Workload | Concurrency | pg alone (CPU µs/query) | with upstream-metrics | Ratio (median of rounds) | Ratio range over rounds |')
  console.log('|---|---|---|---|---|---|')
  for (const r of rows) console.log(`| ${r.name} | ${r.concurrency} | ${r.off.toFixed(1)} | ${r.on.toFixed(1)} | ${r.ratio.toFixed(2)}× | ${r.spread[0].toFixed(2)}–${r.spread[1].toFixed(2)}× |`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
