// End to end: the demo started as `npm start` starts it (on the real PostgreSQL, with Redis found on
// localhost, so it also runs its BullMQ worker and worker metrics), a real Prometheus with the
// repository's own configuration scraping only the demo (intervals and targets overridden), traffic
// from the generator, then every panel query of the shipped dashboard and every alert expression
// through Prometheus' HTTP API.
import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { parse } from 'yaml'
// @ts-expect-error the traffic generator is plain JavaScript
import { generateTraffic } from '../example/traffic.mjs'
import { startDemo } from './helpers/demo'
import { promQuery, ROOT, startPrometheus, type QueryAnswer } from './helpers/prometheus'
import { waitFor } from './helpers/wait'

/** Alerts whose input series exist only when something is wrong: a healthy run must show them empty. */
const EMPTY_WHEN_HEALTHY = ['MetricsTargetMissing', 'DatabaseConnectionErrors']

const PROMETHEUS_CONFIG = join(ROOT, 'monitoring/prometheus/prometheus.yml')
/** Grafana's variables as Grafana would expand them for a 1s scrape interval. */
const GRAFANA_VARIABLES: Record<string, string> = { $__rate_interval: '30s', $__interval: '5s', $__range: '5m' }
const SETTLE_DEADLINE_MS = 60_000

interface Target { expr: string, refId: string }
interface Panel { type: string, title: string, targets?: Target[] }
interface Rule { alert?: string, expr: string }

const expand = (expr: string): string => Object.entries(GRAFANA_VARIABLES).reduce((e, [name, value]) => e.split(name).join(value), expr)
/** The part of an alert expression before its threshold: what must exist for the alert to mean anything. */
const signalOf = (expr: string): string => expr.trim().replace(/\s*(>|<|==|!=|>=|<=)\s*[\d.]+$/, '')

t.test('every dashboard panel and alert works against a real Prometheus scraping the demo', async (t) => {
  t.ok(existsSync(join(ROOT, 'dist/entry.mjs')), 'the plugin is built (npm run build)')
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'dashboards/upstream-dashboard.json'), 'utf8')) as { panels: Panel[] }
  const panels = dashboard.panels.filter((p) => p.type !== 'row')
  const rules: Rule[] = readdirSync(join(ROOT, 'alerts')).filter((f) => f.endsWith('.yml'))
    .flatMap((f) => (parse(readFileSync(join(ROOT, 'alerts', f), 'utf8')).groups as Array<{ rules: Rule[] }>).flatMap((g) => g.rules))
  for (const name of EMPTY_WHEN_HEALTHY) t.ok(rules.some((r) => r.alert === name), `alert ${name} exists`)

  // `npm start` on a machine with Redis on localhost: REDIS_URL unset, the demo finds it.
  const demo = await startDemo(t, 'um-e2e')
  const app = demo.url
  t.match(demo.output(), /Redis at redis:\/\/127\.0\.0\.1:6379\/0 \(found on localhost[^"]*\): cache on Redis; BullMQ worker and job producer/, 'the demo found Redis on localhost and says what it runs')

  // The repository's configuration; only intervals and targets change (rule paths made absolute).
  const config = parse(readFileSync(PROMETHEUS_CONFIG, 'utf8'))
  config.global.scrape_interval = '1s'
  config.global.evaluation_interval = '1s'
  config.rule_files = (config.rule_files as string[]).map((p) => resolve(dirname(PROMETHEUS_CONFIG), p))
  // Only the demo: it serves the worker series too, so the compose-only `worker` job (the separate
  // exporter) is left out, and the `prometheus` job scrapes a port chosen by the helper.
  config.scrape_configs = (config.scrape_configs as Array<Record<string, unknown>>).filter((job) => job.job_name === 'upstream')
  for (const job of config.scrape_configs as Array<Record<string, unknown>>) {
    delete job.dns_sd_configs
    job.static_configs = [{ targets: [`127.0.0.1:${demo.port}`] }]
  }
  const prometheus = await startPrometheus(t, config)
  const prom = prometheus.base

  const stopTraffic = new AbortController()
  const traffic = generateTraffic({ baseUrl: app, durationMs: SETTLE_DEADLINE_MS + 10_000, maxRequests: 20_000, concurrency: 3, signal: stopTraffic.signal }) as Promise<{ requests: number, byStatus: Record<string, number>, failures: number }>

  const queries = panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel, target, expr: expand(target.expr) })))
  const returnsData = async (expr: string): Promise<boolean> => ((await promQuery(prom, expr)).data?.result.length ?? 0) > 0
  // Traffic keeps flowing while the answers are checked, so no rate window runs dry in between.
  t.teardown(() => stopTraffic.abort())
  // Alert signals need a few finished tasks too (WorkerTaskFailureRatioHigh: at least 10).
  const signals = rules.filter((r) => !EMPTY_WHEN_HEALTHY.includes(r.alert!)).map((r) => signalOf(r.expr))
  await waitFor('every panel query and alert signal to return data', async () => {
    for (const expr of [...queries.map((q) => q.expr), ...signals]) if (!await returnsData(expr)) return false
    return true
  }, { timeoutMs: SETTLE_DEADLINE_MS }).catch(() => {})

  // Under load a scrape can outlast the 1 s interval; the target's series are then stale for an
  // instant. A query that must return data is therefore asked again until it does (or is invalid).
  const answerWithData = async (expr: string): Promise<QueryAnswer> => {
    let answer: QueryAnswer | undefined
    await waitFor(`data for ${expr}`, async () => {
      answer = await promQuery(prom, expr)
      return answer.status !== 'success' || (answer.data?.result.length ?? 0) > 0
    }, { timeoutMs: 20_000 }).catch(() => {})
    return answer!
  }

  const panelsWithData = new Set<string>()
  for (const { panel, target, expr } of queries) {
    const answer = await answerWithData(expr)
    if ((answer.data?.result.length ?? 0) > 0) panelsWithData.add(panel.title)
    const label = `panel "${panel.title}" query ${target.refId}`
    t.equal(answer.status, 'success', `${label} is valid PromQL ${answer.error ?? ''}`)
    t.ok((answer.data?.result.length ?? 0) > 0, `${label} returns data: ${expr}`)
  }
  t.comment(`panels with data: ${panelsWithData.size} of ${panels.length}`)

  // Every rule loaded and evaluated without error.
  await waitFor('every rule to be evaluated', async () => {
    const groups = (await (await fetch(`${prom}/api/v1/rules`)).json() as { data: { groups: Array<{ rules: Array<{ lastEvaluation: string }> }> } }).data.groups
    const evaluated = groups.flatMap((g) => g.rules).filter((r) => !r.lastEvaluation.startsWith('0001'))
    return evaluated.length === rules.length
  }, { timeoutMs: 15_000, details: prometheus.output })
  const loaded = (await (await fetch(`${prom}/api/v1/rules`)).json() as { data: { groups: Array<{ rules: Array<{ name: string, health: string, lastError?: string }> }> } }).data.groups.flatMap((g) => g.rules)
  for (const rule of rules) {
    const found = loaded.find((r) => r.name === rule.alert)
    t.equal(found?.health, 'ok', `alert ${rule.alert} evaluates in Prometheus ${found?.lastError ?? ''}`)
  }

  for (const rule of rules) {
    const answer = await promQuery(prom, rule.expr)
    t.equal(answer.status, 'success', `alert ${rule.alert}: expression runs ${answer.error ?? ''}`)
    const empty = EMPTY_WHEN_HEALTHY.includes(rule.alert!)
    const signal = empty ? await promQuery(prom, signalOf(rule.expr)) : await answerWithData(signalOf(rule.expr))
    const hasData = (signal.data?.result.length ?? 0) > 0
    if (empty) t.notOk(hasData, `alert ${rule.alert}: nothing to report on a healthy run`)
    else t.ok(hasData, `alert ${rule.alert}: its signal ${signalOf(rule.expr)} has data`)
  }

  stopTraffic.abort()
  const sent = await traffic
  t.ok(sent.requests > 50 && sent.failures === 0, `traffic reached the demo: ${JSON.stringify(sent)}`)
  for (const status of ['200', '302', '400', '404', '500']) t.ok((sent.byStatus[status] ?? 0) > 0, `traffic produced ${status}s`)
})
