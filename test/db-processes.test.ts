import { execFile } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import pg from 'pg'
import script from './fixtures/db/script.cjs'
import { killOnExit } from './helpers/children'

// Real apps in child processes: CommonJS and ESM, pg loaded before or after the plugin,
// with and without the preload entry. They load the built package (`npm run build`).
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const root = join(__dirname, '..')
const fixtures = join(__dirname, 'fixtures', 'db')
const { setup, teardown, expectedSamples, parseSamples, dbSamples } = script

function newest (dir: string): number {
  let max = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    max = Math.max(max, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs)
  }
  return max
}

function distFresh (): boolean {
  try {
    return statSync(join(root, 'dist', 'register.js')).mtimeMs >= newest(join(root, 'lib'))
  } catch {
    return false
  }
}

async function runApp (args: string[], env: Record<string, string>): Promise<{ stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    killOnExit(execFile(process.execPath, args, { cwd: root, env: { ...process.env, DATABASE_URL: url, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(Object.assign(err, { stderr }))
      else resolve({ stdout, stderr })
    }))
  })
}

const variants: Array<{ name: string, args: string[], env?: Record<string, string>, preload: boolean }> = [
  { name: 'CommonJS, pg required before the plugin', args: [join(fixtures, 'app.cjs')], preload: false },
  { name: 'ESM, pg imported before the plugin', args: [join(fixtures, 'app.mjs')], preload: false },
  { name: 'ESM, pg imported after the plugin', args: [join(fixtures, 'app.mjs')], env: { UM_LATE: '1' }, preload: false },
  { name: 'CommonJS with --require upstream-metrics/register', args: ['--require', 'upstream-metrics/register', join(fixtures, 'app.cjs')], preload: true },
  { name: 'ESM with --import upstream-metrics/register', args: ['--import', 'upstream-metrics/register', join(fixtures, 'app.mjs')], preload: true }
]

t.test('the build is up to date', async (t) => {
  t.ok(distFresh(), 'dist/ is older than lib/: run `npm run build` first (npm test does)')
})

variants.forEach((variant, i) => {
  t.test(variant.name, async (t) => {
    const p = `um_pg_proc${i}`
    await setup(pg, url, p)
    t.teardown(() => teardown(pg, url, p))
    const { stdout, stderr } = await runApp(variant.args, { UM_PREFIX: p, ...variant.env })
    t.same(Object.fromEntries(dbSamples(parseSamples(stdout))), Object.fromEntries(expectedSamples(p)), 'exact values')
    t.notMatch(stderr, /could not be instrumented/, 'no warning')
    // The preload keeps its hold for the life of the process; otherwise the last close unpatches.
    t.match(stdout, `# pg patched after close: ${variant.preload}`)
  })
})
