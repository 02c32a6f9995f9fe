import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { resolveOptions } from '../lib/options'
import { freePort, get } from './helpers/net'
import { waitFor } from './helpers/wait'
import { killOnExit } from './helpers/children'

const root = join(__dirname, '..')
const readme = readFileSync(join(root, 'README.md'), 'utf8')
const docs = readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)

t.test('the metric table in docs/metrics.md is the one lib/names.ts generates', async (t) => {
  t.doesNotThrow(() => execFileSync(process.execPath, [join(root, 'scripts', 'metric-table.mjs'), '--check'], { stdio: 'pipe' }))
})

t.test('the README options table lists every option the plugin accepts', async (t) => {
  const section = readme.slice(readme.indexOf('## Options'), readme.indexOf('## Metrics'))
  const documented = [...section.matchAll(/^\| `([a-zA-Z]+)` \|/gm)].map((m) => m[1])
  const accepted = Object.keys(resolveOptions({}))
  t.same(documented.sort(), accepted.sort())
})

t.test('the README is short, and its links to docs/ lead to files that exist', async (t) => {
  t.ok(readme.split('\n').length <= 250, `README.md has ${readme.split('\n').length} lines (at most 250: the reference belongs in docs/)`)
  for (const source of ['README.md', ...docs]) {
    const text = readFileSync(join(root, source), 'utf8')
    const base = source === 'README.md' ? '' : 'docs/'
    for (const [, target] of text.matchAll(/\]\(((?:docs\/)?[\w-]+\.md)(?:#[\w-]+)?\)/g)) {
      t.ok(existsSync(join(root, base, target!)), `${source} links to ${target}, which exists`)
    }
  }
})

t.test('the README\'s demo and test commands are the package\'s scripts, and CI runs the same test command', async (t) => {
  const commands = [...readme.matchAll(/```bash\n([\s\S]*?)```/g)].map((m) => m[1]).find((block) => block!.includes('npm start')) ?? ''
  t.match(commands, /^npm ci && npm start\b/m, 'the demo: npm ci && npm start')
  t.match(commands, /^npm test\b/m, 'the tests: npm test')
  const scripts = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts as Record<string, string>
  for (const name of ['start', 'test', 'traffic']) t.type(scripts[name], 'string', `npm run ${name} exists`)
  const ci = readFileSync(join(root, '.ci/run'), 'utf8').split('\n').filter((line) => !line.trim().startsWith('#'))
  t.ok(ci.some((line) => /\bnpm test\b/.test(line)), '.ci/run runs npm test')
  t.notOk(ci.some((line) => /\btap\b|apt-get install/.test(line)), '.ci/run neither runs tap nor installs test packages itself: npm test does')
})

interface Sample { source: string, file: string, code: string, expected: string[] }

/**
 * The runnable samples of a page: ```js blocks whose first line names a file (`// server.mjs`).
 * A ```text block after them, in the same section, is output their scrape must contain.
 */
function runnableSamples (source: string): Sample[] {
  const text = readFileSync(join(root, source), 'utf8')
  const samples: Sample[] = []
  for (const section of text.split(/^## /m)) {
    const blocks = [...section.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1], body: m[2]! }))
    const output = blocks.find((b) => b.lang === 'text')?.body.split('\n').filter((line) => line !== '') ?? []
    for (const { lang, body } of blocks) {
      const file = /^\/\/ ([\w-]+\.[cm]js)\n/.exec(body)?.[1]
      if (lang === 'js' && file !== undefined) samples.push({ source, file, code: body, expected: output })
    }
  }
  return samples
}

const samples = ['README.md', ...docs].flatMap(runnableSamples)

t.test('the README has runnable ESM and CommonJS quick starts', async (t) => {
  const quickStarts = samples.filter((s) => s.source === 'README.md').map((s) => s.file)
  t.ok(quickStarts.some((f) => f.endsWith('.mjs')), 'an ESM quick start')
  t.ok(quickStarts.some((f) => f.endsWith('.cjs')), 'a CommonJS quick start')
})

for (const sample of samples) {
  t.test(`${sample.source}: ${sample.file} runs as written (start, one request, scrape, stop)`, async (t) => {
    t.ok(existsSync(join(root, 'dist/entry.mjs')), 'the plugin is built (npm run build)')
    // Inside the repository, so that `upstream-metrics` resolves to this package (self-reference) and `fastify` to its copy.
    mkdirSync(join(root, '.tap'), { recursive: true })
    const dir = mkdtempSync(join(root, '.tap', 'sample-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, sample.file), sample.code)

    const port = await freePort()
    const base = `http://127.0.0.1:${port}`
    const child = killOnExit(spawn(process.execPath, [sample.file], { cwd: dir, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'], detached: true }), true)
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000) })
    child.stderr.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000) })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    t.teardown(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      process.kill(-child.pid!, 'SIGKILL')
      await exited
    })

    const scrape = async (): Promise<string | undefined> => {
      const reply = await get(`${base}/metrics`).catch(() => undefined)
      return reply?.status === 200 ? reply.body : undefined
    }
    // null: the sample exited, nothing more to wait for.
    const first = await waitFor('the sample to serve /metrics', async () => child.exitCode !== null ? null : await scrape(), { timeoutMs: 30_000, intervalMs: 200 }).catch(() => null)
    const serving = first !== null
    t.ok(serving, `the sample serves /metrics\n${output}`)
    if (!serving) return

    const route = /app\.get\('([^']+)'/.exec(sample.code)?.[1]
    t.ok(route !== undefined, 'the sample declares a GET route')
    const reply = await get(base + route!.replace(/:\w+/g, '7'))
    t.equal(reply.status, 200, `GET ${route} answers`)

    const wanted = [
      `django_http_responses_total_by_status_view_method_total{method="GET",status="200",view="${route}"} 1.0`,
      ...sample.expected
    ]
    // Under cluster, a round fails while a worker is still starting.
    const text = await waitFor('a complete scrape', scrape, { timeoutMs: 10_000, intervalMs: 200 }).catch(() => undefined)
    const lines = new Set((text ?? '').split('\n'))
    for (const line of wanted) t.ok(lines.has(line), `the scrape has: ${line}`)

    process.kill(-child.pid!, 'SIGTERM')
    t.ok(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]), 'it stops on SIGTERM')
  })
}
