// CPU per call of the instrumented query path alone, without network or server: a query
// function answering at once, called bare, through the stock instrumentation-pg wrapper
// with no plugin instance registered, and with one (every db metric on). It isolates what
// bench/pg.mjs measures end to end, where a shared machine's noise is larger than the cost.
// Usage: npm run build && node bench/pg-path.mjs
import 'pg'
import Fastify from 'fastify'
import upstreamMetrics from '../dist/entry.mjs'

const N = 500_000
const client = { connectionParameters: { database: 'test', host: '127.0.0.1', port: 5432 }, database: 'test' }
const done = () => {}
const select = function (_text, _values, cb) { cb(null, { command: 'SELECT', rowCount: 1 }) }
const insert = function (_text, _values, cb) { cb(null, { command: 'INSERT', rowCount: 2 }) }

function cpu (fn) {
  for (let i = 0; i < 20_000; i++) fn()
  const start = process.cpuUsage()
  for (let i = 0; i < N; i++) fn()
  const used = process.cpuUsage(start)
  return (used.user + used.system) * 1000 / N
}

function median (xs) {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
}

const app = Fastify()
await app.register(upstreamMetrics, { runtimeMetrics: false })
const instrumentation = globalThis[Symbol.for('upstream-metrics.patch-registry')].get('pg').instrumentation
const wrappedSelect = instrumentation._getClientQueryPatch()(select)
const wrappedInsert = instrumentation._getClientQueryPatch()(insert)
const rows = { bare: [], on: [], onInsert: [], off: [] }
for (let r = 0; r < 5; r++) {
  rows.bare.push(cpu(() => select.call(client, 'SELECT 1', [], done)))
  rows.on.push(cpu(() => wrappedSelect.call(client, 'SELECT 1', [], done)))
  rows.onInsert.push(cpu(() => wrappedInsert.call(client, 'INSERT INTO um_pg_bench (a) VALUES ($1), ($2)', [1, 2], done)))
}
await app.close()
for (let r = 0; r < 5; r++) rows.off.push(cpu(() => wrappedSelect.call(client, 'SELECT 1', [], done)))

console.log(`Node ${process.version}, ${N} calls × 5 rounds, median, ns per call\n`)
console.log('| Path | CPU ns/call |')
console.log('|---|---|')
console.log(`| query function alone | ${median(rows.bare).toFixed(0)} |`)
console.log(`| + stock instrumentation-pg wrapper, no instance registered | ${median(rows.off).toFixed(0)} |`)
console.log(`| + one instance, SELECT | ${median(rows.on).toFixed(0)} |`)
console.log(`| + one instance, INSERT (model rows parsed, cached) | ${median(rows.onInsert).toFixed(0)} |`)
