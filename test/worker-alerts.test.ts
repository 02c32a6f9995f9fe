import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { CELERY } from '../lib/names'

const ROOT = join(__dirname, '..')
const RULES = join(ROOT, 'alerts', 'workers.yml')
const TESTS = join(ROOT, 'alerts', 'tests', 'workers.test.yml')

function promtool (...args: string[]): { status: number | null, output: string } {
  const result = spawnSync('promtool', args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  if (result.error !== undefined) throw new Error(`promtool is needed (apt-get install -y --no-install-recommends prometheus): ${result.error.message}`)
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}

t.test('the worker rules are valid and their promtool unit tests pass', async (t) => {
  const check = promtool('check', 'rules', RULES)
  t.equal(check.status, 0, check.output)
  const test = promtool('test', 'rules', TESTS)
  t.equal(test.status, 0, test.output)
  t.match(test.output, 'SUCCESS')
})

t.test('each alert has a severity, summary, description and for:, and a firing and a quiet case', async (t) => {
  const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Array<Record<string, any>> }> }).groups.flatMap((g) => g.rules)
  const tests = (parse(readFileSync(TESTS, 'utf8')) as { tests: Array<{ alert_rule_test: Array<{ alertname: string, exp_alerts: unknown[] }> }> }).tests.flatMap((x) => x.alert_rule_test)
  t.equal(rules.length, 3)
  for (const rule of rules) {
    t.match(rule.labels?.severity, /^(warning|critical)$/, `${rule.alert} severity`)
    t.type(rule.annotations?.summary, 'string', `${rule.alert} summary`)
    t.type(rule.annotations?.description, 'string', `${rule.alert} description`)
    t.match(rule.for, /^\d+m$/, `${rule.alert} for`)
    const cases = tests.filter((c) => c.alertname === rule.alert)
    t.ok(cases.some((c) => c.exp_alerts.length > 0), `${rule.alert} is shown firing`)
    t.ok(cases.some((c) => c.exp_alerts.length === 0), `${rule.alert} is shown not firing`)
  }
})

t.test('the rules query only series the exporter exposes', async (t) => {
  const exposed = new Set<string>()
  for (const spec of Object.values(CELERY)) {
    for (const name of [spec.name, ...(spec.aliases ?? [])]) {
      if (spec.type === 'histogram') for (const suffix of ['_bucket', '_count', '_sum']) exposed.add(name + suffix)
      else exposed.add(name)
    }
  }
  const used = new Set(readFileSync(RULES, 'utf8').split('\n').filter((l) => !l.trim().startsWith('#') && !l.includes('description:')).join('\n').match(/\bcelery_\w+/g))
  t.ok(used.size >= 3)
  for (const name of used) t.ok(exposed.has(name), name)
})
