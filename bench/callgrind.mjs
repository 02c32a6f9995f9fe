// Instructions per request under valgrind's callgrind, for choosing between designs: a build repeats within ±0.3 k
// (counts shift a little while other work runs, so compare builds within one invocation).
// node bench/callgrind.mjs [--runs=bare,empty-hooks,plugin,plugin@other/dist] [--warmup=N] [--requests=N]
// [--connections=N] (CG_NODE_FLAGS: more node flags; CG_KEEP=<dir>: keep the main thread's dumps).
// Each run is bench/server.mjs with that setup (and that build of the plugin, `dist` unless given) under callgrind,
// uninstrumented until warm (20,000 requests: after 6,000 much of the hot path still ran Maglev's code, not TurboFan's
// as in the CPU bench); then only the main thread's instructions over the measured requests are counted. The young
// generation is fixed at 16 MB: left to V8's sizing, one process of a setup scavenged 7 times as often as another (35
// against 5 scavenges in 4,000 requests, each about a million instructions of root scanning), which read as a 4 k
// difference per request. One connection by default, so every request is one turn of the event loop; the CPU bench's
// 16 (--connections=16) batch several requests per turn. Repeat a setup in --runs to see the run-to-run spread.
import { execFileSync, fork } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'

const here = fileURLToPath(new URL('.', import.meta.url))
const args = process.argv.slice(2)
const value = (name, fallback) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const runs = value('runs', 'bare,empty-hooks,plugin').split(',').map((run) => {
  const [setup, dist = 'dist'] = run.split('@')
  return { setup, dist: resolve(dist) }
})
const warmup = Number(value('warmup', 20000))
const requests = Number(value('requests', 8000))
const connections = Number(value('connections', 1))

const PATHS = [
  { method: 'GET', path: '/' },
  { method: 'GET', path: '/api/items/42' },
  { method: 'POST', path: '/api/users/7/orders', body: '{"sku":"a-1","qty":2}', headers: { 'content-type': 'application/json' } }
]

const load = (port, amount) => new Promise((resolve, reject) => {
  autocannon({ url: `http://127.0.0.1:${port}`, connections, amount, requests: PATHS }, (err, result) => err ? reject(err) : resolve(result))
})

async function measure (setup, dist) {
  const out = mkdtempSync(join(tmpdir(), 'callgrind-'))
  const child = fork(join(here, 'server.mjs'), [setup], {
    execPath: 'valgrind',
    execArgv: ['--tool=callgrind', ...(process.env.CG_VALGRIND_FLAGS ?? '').split(' ').filter(Boolean), '--smc-check=all-non-file', '--separate-threads=yes', '--instr-atstart=no', `--callgrind-out-file=${out}/cg.%p`, process.execPath, '--min-semi-space-size=16', '--max-semi-space-size=16', ...(process.env.CG_NODE_FLAGS ?? '').split(' ').filter(Boolean)],
    env: { ...process.env, BENCH_DIST: dist },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc']
  })
  const { port } = await new Promise((resolve) => child.once('message', resolve))
  await load(port, warmup)
  execFileSync('callgrind_control', ['-i', 'on', String(child.pid)], { stdio: 'ignore' })
  await load(port, 300)
  execFileSync('callgrind_control', ['-z', String(child.pid)], { stdio: 'ignore' })
  const result = await load(port, requests)
  execFileSync('callgrind_control', ['-d', String(child.pid)], { stdio: 'ignore' })
  await new Promise((resolve) => { child.once('exit', resolve); child.send('exit') })
  // The main thread's part of the dump taken after the measured requests: V8's compiler and GC
  // helper threads run on their own schedule. (With --single-threaded they land on the main thread,
  // and a major GC or a tier-up inside the window moved the same setup by up to ±4 % between runs.)
  const dumps = readdirSync(out).filter((f) => /-01$/.test(f))
  const events = (file) => readFileSync(join(out, file), 'utf8').match(/^(?:summary|totals): ([\d ]+)/m)[1].trim().split(' ').map(Number)
  const instructions = (file) => events(file)[0]
  const mainDump = dumps.find((f) => /\.1-01$/.test(f))
  if (process.env.CG_VALGRIND_FLAGS) {
    const text = readFileSync(join(out, mainDump), 'utf8')
    console.error(`${setup}: ${text.match(/^events: (.*)$/m)[1]} = ${events(mainDump).join(' ')}`)
  }
  const main = instructions(mainDump)
  const all = dumps.reduce((sum, f) => sum + instructions(f), 0)
  if (process.env.CG_KEEP) execFileSync('cp', [join(out, mainDump), join(process.env.CG_KEEP, `${setup}.${child.pid}.cg`)])
  rmSync(out, { recursive: true, force: true })
  const answered = result.requests.total
  if (result.non2xx + result.errors > 0) throw new Error(`${setup}: ${result.non2xx + result.errors} failed requests`)
  return { perRequest: main / answered, allThreads: all / answered }
}

const rows = []
for (const { setup, dist } of runs) {
  const { perRequest, allThreads } = await measure(setup, dist)
  rows.push({ setup, dist, perRequest, allThreads })
  console.error(`${setup} (${dist}): ${(perRequest / 1000).toFixed(1)} k instructions / request (all threads: ${(allThreads / 1000).toFixed(1)} k)`)
}
const bare = rows.find((r) => r.setup === 'bare')?.perRequest
const bareAll = rows.find((r) => r.setup === 'bare')?.allThreads
for (const r of rows) console.log(`${r.setup}\t${r.dist}\t${(r.perRequest / 1000).toFixed(1)}k\t${bare === undefined ? '' : (r.perRequest / bare).toFixed(3)}\tall threads ${(r.allThreads / 1000).toFixed(1)}k\t${bareAll === undefined ? '' : (r.allThreads / bareAll).toFixed(3)}`)
