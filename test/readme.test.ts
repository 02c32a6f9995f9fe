import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { resolveOptions } from '../lib/options'

const root = join(__dirname, '..')
const readme = readFileSync(join(root, 'README.md'), 'utf8')

t.test('the metric table in docs/metrics.md is the one lib/names.ts generates', async (t) => {
  t.doesNotThrow(() => execFileSync(process.execPath, [join(root, 'scripts', 'metric-table.mjs'), '--check'], { stdio: 'pipe' }))
})

t.test('the README options table lists every option the plugin accepts', async (t) => {
  const section = readme.slice(readme.indexOf('## Options'), readme.indexOf('## Metrics'))
  const documented = [...section.matchAll(/^\| `([a-zA-Z]+)` \|/gm)].map((m) => m[1])
  const accepted = Object.keys(resolveOptions({}))
  t.same(documented.sort(), accepted.sort())
})

t.test('the README opens with the commands to run the demo and the tests', async (t) => {
  const firstBlock = /```bash\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
  t.match(firstBlock, /npm start/)
  t.match(firstBlock, /npm test/)
})
