// The dashboards and alerts Celery teams run today (danihodovic/celery-exporter's celery-mixin,
// Grafana.com 17508/17509; queries extracted into fixtures/celery-mixin/queries.json by
// scripts/celery-mixin-queries.mjs, its source commit noted there) against a real Prometheus
// scraping the demo as `npm start` runs it (Redis on localhost, its BullMQ worker and producer):
// every panel query, with its Grafana variables expanded as Grafana would, and every alert's signal
// returns data, apart from the few listed in NOT_FOR_BULLMQ (docs/workers.md says why).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startDemo } from './helpers/demo'
import { promQuery, ROOT, startPrometheus, type Prometheus } from './helpers/prometheus'
import { waitFor } from './helpers/wait'

interface Variable { name: string, query: string, includeAll: boolean, multi: boolean }
interface Query { panel: string, refId: string, expr: string }
interface Mixin {
  source: { commit: string }
  dashboards: Array<{ title: string, variables: Variable[], queries: Query[] }>
  alerts: Array<{ alert: string, expr: string }>
}

const MIXIN = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/celery-mixin/queries.json'), 'utf8')) as Mixin
/** Queries that cannot have data from BullMQ, by dashboard and panel (docs/workers.md, "celery-mixin"). */
const NOT_FOR_BULLMQ: ReadonlyArray<{ dashboard: string, panel: string, why: string }> = []
/** The mixin selects `job=~".*celery.*"` (and `celery|celery-exporter`): the scrape job is named so. */
const JOB = 'celery'
/** Grafana's built-in variables for a 1 s scrape interval and a 5-minute dashboard range. */
const BUILT_IN: Record<string, string> = { $__rate_interval: '30s', $__interval: '5s', $__range: '5m' }
const SETTLE_DEADLINE_MS = 60_000

const escapeRegex = (value: string): string => value.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')
const substitute = (expr: string, values: Record<string, string>): string =>
  Object.entries(values).sort(([a], [b]) => b.length - a.length).reduce((e, [name, value]) => e.split(name).join(value), expr)
/** An alert's expression before its threshold: what must exist for the alert to mean anything. */
const signalOf = (expr: string): string => expr.trim().replace(/\s*(>|<|==|!=|>=|<=)\s*[\d.]+$/, '')

/**
 * Grafana's `label_values(selector, label)` against Prometheus, each variable seeing the earlier
 * ones; a multi-value or All variable becomes the regex `(a|b)` of every value, as Grafana formats
 * it for Prometheus; no value at all (a label the series do not have) is the empty string.
 */
async function expandVariables (prometheus: Prometheus, variables: Variable[]): Promise<Record<string, string>> {
  const values: Record<string, string> = { ...BUILT_IN }
  for (const variable of variables) {
    const match = /^label_values\((.*),\s*(\w+)\)$/.exec(variable.query.trim())
    if (match === null) throw new Error(`variable ${variable.name}: unexpected query ${variable.query}`)
    const selector = substitute(match[1]!, values)
    const params = new URLSearchParams({ 'match[]': selector === '' ? '{__name__=~".+"}' : selector })
    const answer = await (await fetch(`${prometheus.base}/api/v1/label/${match[2]!}/values?${params.toString()}`)).json() as { data: string[] }
    const found = answer.data.filter((v) => v !== '')
    values[`$${variable.name}`] = found.length === 0
      ? ''
      : found.length === 1 || !(variable.multi || variable.includeAll) ? found[0]! : `(${found.map(escapeRegex).join('|')})`
  }
  return values
}

t.test('celery-mixin dashboards and alerts have data from a real Prometheus scraping the demo', async (t) => {
  // More jobs a second than by default, so that every state (failures for good, retries, removals,
  // stalls) shows within the window.
  const demo = await startDemo(t, 'um-mixin', { LOG_LEVEL: 'warn', DEMO_JOBS_PER_SECOND: '10' })

  const prometheus = await startPrometheus(t, {
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    scrape_configs: [{ job_name: JOB, static_configs: [{ targets: [`127.0.0.1:${demo.port}`] }] }]
  })

  const dashboards = MIXIN.dashboards
  const alerts = MIXIN.alerts
  t.equal(dashboards.reduce((n, d) => n + d.queries.length, 0) + alerts.length, 96, `the mixin at ${MIXIN.source.commit} has 96 panel and alert queries`)
  const skipped = (dashboard: string, panel: string): boolean => NOT_FOR_BULLMQ.some((s) => s.dashboard === dashboard && s.panel === panel)

  const expanded = async (): Promise<Array<{ what: string, expr: string, dashboard: string, panel: string }>> => {
    const all = []
    for (const dashboard of dashboards) {
      const values = await expandVariables(prometheus, dashboard.variables)
      for (const q of dashboard.queries) all.push({ what: `${dashboard.title} / ${q.panel} ${q.refId}`, expr: substitute(q.expr, values), dashboard: dashboard.title, panel: q.panel })
    }
    for (const alert of alerts) all.push({ what: `alert ${alert.alert}`, expr: signalOf(alert.expr), dashboard: 'alerts', panel: alert.alert })
    return all
  }
  const hasData = async (expr: string): Promise<boolean> => ((await promQuery(prometheus.base, expr)).data?.result.length ?? 0) > 0
  let missing: string[] = []
  await waitFor('every mixin query that applies to BullMQ to return data', async () => {
    missing = []
    for (const q of await expanded()) if (!skipped(q.dashboard, q.panel) && !await hasData(q.expr)) missing.push(q.what)
    return missing.length === 0
  }, { timeoutMs: SETTLE_DEADLINE_MS }).catch(() => {})
  t.same(missing, [], 'no query that applies to BullMQ is without data')

  let withData = 0
  for (const q of await expanded()) {
    const answer = await promQuery(prometheus.base, q.expr)
    t.equal(answer.status, 'success', `${q.what} is valid PromQL ${answer.error ?? ''}`)
    const data = (answer.data?.result.length ?? 0) > 0
    if (data) withData++
    if (skipped(q.dashboard, q.panel)) t.notOk(data, `${q.what} cannot apply to BullMQ, and has no data`)
    else t.ok(data, `${q.what} returns data: ${q.expr}`)
  }
  t.comment(`mixin queries with data: ${withData} of 96`)

  // Each alert's full expression runs, and the worker alert's hostname is a BullMQ worker's name.
  for (const alert of alerts) t.equal((await promQuery(prometheus.base, alert.expr)).status, 'success', `alert ${alert.alert} runs`)
  const up = await prometheus.query(`celery_worker_up{job="${JOB}"}`)
  t.ok(up.some((s) => s.metric.hostname !== 'generic' && s.value[1] === '1'), `a named worker is up: ${JSON.stringify(up.map((s) => s.metric))}`)
})
