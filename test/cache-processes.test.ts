import { execFile } from 'node:child_process'
import { dirname, join } from 'node:path'
import t from 'tap'
import { ioredisAppDir } from './helpers/app-dir'
import { killOnExit } from './helpers/children'

// Real apps in child processes, in every load order: the Redis clients required (CommonJS) or
// imported (ESM) before the plugin registers or after it, and after the preload entry. They load
// the built package (`npm test` builds). Each order runs with this repository's ioredis 5 and
// with ioredis 6 (the devDependency `ioredis-6`, copied into a temp app as node_modules/ioredis).
const root = join(__dirname, '..')
const fixtures = join(__dirname, 'fixtures', 'cache')
const IOREDIS_6 = dirname(require.resolve('ioredis-6/package.json'))

async function runApp (args: string[], cwd: string, env: Record<string, string>): Promise<{ stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    killOnExit(execFile(process.execPath, args, { cwd, env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(Object.assign(err, { stderr }))
      else resolve({ stdout, stderr })
    }))
  })
}

function cacheSamples (text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of text.split('\n')) {
    // Counts only: `_created` holds creation times.
    if (!line.startsWith('django_cache_') || /_created[{ ]/.test(line)) continue
    const at = line.lastIndexOf(' ')
    out[line.slice(0, at)] = Number(line.slice(at + 1))
  }
  return out
}

/** The cache series of `gets` reads through the fixture's clients, one hit and one miss per client. */
function counted (clients: number): Record<string, number> {
  return {
    'django_cache_get_total{backend="redis"}': 2 * clients,
    'django_cache_get_hits_total{backend="redis"}': clients,
    'django_cache_hits_total{backend="redis"}': clients,
    'django_cache_get_misses_total{backend="redis"}': clients,
    'django_cache_misses_total{backend="redis"}': clients
  }
}

const orders: Array<{ name: string, file: string, preload?: string[], late: boolean }> = [
  { name: 'CommonJS, clients required before the plugin', file: 'app.cjs', late: false },
  { name: 'CommonJS, clients required after the plugin', file: 'app.cjs', late: true },
  { name: 'ESM, clients imported before the plugin', file: 'app.mjs', late: false },
  { name: 'ESM, clients imported after the plugin', file: 'app.mjs', late: true },
  { name: 'ESM with --import upstream-metrics/register, clients imported after', file: 'app.mjs', preload: ['--import', 'upstream-metrics/register'], late: true },
  { name: 'CommonJS with --require upstream-metrics/register, clients required after', file: 'app.cjs', preload: ['--require', 'upstream-metrics/register'], late: true }
]

let run = 0
async function runOrder (order: typeof orders[number], where: { cwd: string, dir: string }): Promise<{ stdout: string, stderr: string }> {
  return await runApp([...order.preload ?? [], join(where.dir, order.file)], where.cwd, {
    UM_PREFIX: `um_cache:proc${run++}:${process.pid}:`,
    UM_LATE: order.late ? '1' : '0'
  })
}

t.test('ioredis 5 (this repository\'s) and node-redis, in every load order', async (t) => {
  for (const order of orders) {
    const { stdout, stderr } = await runOrder(order, { cwd: root, dir: fixtures })
    t.match(stderr, /^ioredis 5\./m, `${order.name}: ioredis 5 was loaded`)
    t.same(cacheSamples(stdout), counted(2), `${order.name}: both clients counted`)
    t.notMatch(stderr, /could not be instrumented/, `${order.name}: no warning`)
  }
})

t.test('ioredis 6 and node-redis, in every load order', async (t) => {
  const app = ioredisAppDir(IOREDIS_6, { files: ['cache/app.cjs', 'cache/app.mjs'] })
  t.teardown(app.remove)
  for (const order of orders) {
    const { stdout, stderr } = await runOrder(order, { cwd: app.dir, dir: app.dir })
    t.match(stderr, /^ioredis 6\.0\.0$/m, `${order.name}: ioredis 6 was loaded`)
    t.same(cacheSamples(stdout), counted(2), `${order.name}: both clients counted`)
    t.notMatch(stderr, /could not be instrumented/, `${order.name}: no warning`)
  }
})

t.test('an ioredis version outside the supported range: not patched, and one warning says so, in every load order', async (t) => {
  const app = ioredisAppDir(IOREDIS_6, { version: '7.0.0', files: ['cache/app.cjs', 'cache/app.mjs'] })
  t.teardown(app.remove)
  for (const order of orders) {
    const { stdout, stderr } = await runOrder(order, { cwd: app.dir, dir: app.dir })
    t.match(stderr, /^ioredis 7\.0\.0$/m, `${order.name}: the out-of-range copy was loaded`)
    t.same(cacheSamples(stdout), counted(1), `${order.name}: node-redis counted, ioredis left alone`)
    const warnings = stderr.split('\n').filter((line) => line.includes('could not be instrumented'))
    t.equal(warnings.length, 1, `${order.name}: one warning`)
    t.match(warnings[0], /upstream-metrics: ioredis@7\.0\.0 is loaded \(.*node_modules\/ioredis\) but could not be instrumented: version 7\.0\.0 is outside the supported /, `${order.name}: it names the copy and the reason`)
  }
})
