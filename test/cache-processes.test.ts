import { execFile } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'

// Real apps in child processes: the Redis clients loaded after the plugin (CommonJS and ESM),
// before it (ESM; the in-process tests cover loaded-before too), and with the preload entry. They load the built package (`npm test` builds).
const root = join(__dirname, '..')
const fixtures = join(__dirname, 'fixtures', 'cache')

async function runApp (args: string[], env: Record<string, string>): Promise<{ stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(Object.assign(err, { stderr }))
      else resolve({ stdout, stderr })
    })
  })
}

function cacheSamples (text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of text.split('\n')) {
    if (!line.startsWith('django_cache_')) continue
    const at = line.lastIndexOf(' ')
    out[line.slice(0, at)] = Number(line.slice(at + 1))
  }
  return out
}

const variants: Array<{ name: string, args: string[], env?: Record<string, string> }> = [
  { name: 'CommonJS, clients required after the plugin', args: [join(fixtures, 'app.cjs')], env: { UM_LATE: '1' } },
  { name: 'ESM, clients imported before the plugin', args: [join(fixtures, 'app.mjs')] },
  { name: 'ESM, clients imported after the plugin', args: [join(fixtures, 'app.mjs')], env: { UM_LATE: '1' } },
  { name: 'ESM with --import upstream-metrics/register, clients imported after', args: ['--import', 'upstream-metrics/register', join(fixtures, 'app.mjs')], env: { UM_LATE: '1' } }
]

variants.forEach((variant, i) => {
  t.test(variant.name, async (t) => {
    // Two reads through each client: one hit, one miss (each run has its own keys).
    const { stdout, stderr } = await runApp(variant.args, { UM_PREFIX: `um_cache:proc${i}:${process.pid}:`, ...variant.env })
    t.same(cacheSamples(stdout), {
      'django_cache_get_total{backend="redis"}': 4,
      'django_cache_get_hits_total{backend="redis"}': 2,
      'django_cache_hits_total{backend="redis"}': 2,
      'django_cache_get_misses_total{backend="redis"}': 2,
      'django_cache_misses_total{backend="redis"}': 2
    }, 'no get_fail series: nothing failed')
    t.notMatch(stderr, /could not be instrumented/, 'no warning')
  })
})
