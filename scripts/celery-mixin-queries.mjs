// Extracts every panel query, template variable and alert expression of danihodovic/celery-exporter's
// celery-mixin (its generated dashboards_out/*.json and prometheus_alerts.yaml) into
// test/fixtures/celery-mixin/queries.json, the data test/celery-mixin.test.ts runs against the demo.
// Usage: node scripts/celery-mixin-queries.mjs <celery-exporter checkout> <commit>
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { parse } from 'yaml'

const [repo, commit] = process.argv.slice(2)
if (repo === undefined || commit === undefined) throw new Error('usage: node scripts/celery-mixin-queries.mjs <checkout> <commit>')
const show = (path) => execFileSync('git', ['--git-dir', repo, 'show', `${commit}:celery-mixin/${path}`], { encoding: 'utf8' })
const DASHBOARDS = ['celery-tasks-overview', 'celery-tasks-by-task', 'celery-tasks']

const dashboards = DASHBOARDS.map((file) => {
  const dashboard = JSON.parse(show(`dashboards_out/${file}.json`))
  const panels = []
  const walk = (list) => {
    for (const panel of list ?? []) {
      walk(panel.panels)
      for (const target of panel.targets ?? []) if (typeof target.expr === 'string') panels.push({ panel: panel.title, refId: target.refId ?? '', expr: target.expr })
    }
  }
  walk(dashboard.panels)
  for (const row of dashboard.rows ?? []) walk(row.panels)
  const variables = dashboard.templating.list.filter((v) => v.type === 'query')
    .map((v) => ({ name: v.name, query: typeof v.query === 'string' ? v.query : v.query.query, includeAll: v.includeAll === true, multi: v.multi === true }))
  return { file: `dashboards_out/${file}.json`, uid: dashboard.uid, title: dashboard.title, variables, queries: panels }
})
const alerts = parse(show('prometheus_alerts.yaml')).groups.flatMap((g) => g.rules).map((r) => ({ alert: r.alert, expr: r.expr }))

writeFileSync(new URL('../test/fixtures/celery-mixin/queries.json', import.meta.url), JSON.stringify({
  source: { repository: 'https://github.com/danihodovic/celery-exporter', commit, paths: [...DASHBOARDS.map((d) => `celery-mixin/dashboards_out/${d}.json`), 'celery-mixin/prometheus_alerts.yaml'] },
  dashboards,
  alerts
}, null, 2) + '\n')
