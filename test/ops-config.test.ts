// The operations kit without Docker: dashboard generated from code and the metric table, alert rules
// (promtool check + unit tests), Prometheus and Grafana configuration, compose.yaml and the Dockerfile.
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, posix, resolve } from 'node:path'
import { parse } from 'yaml'
import { CACHE, CELERY, DB, exposedName, HTTP, MIGRATIONS, MODEL, RUNTIME, WORKER, type MetricSpec } from '../lib/names'
import { DASHBOARD_TITLE, DATASOURCE_INPUT, DATASOURCE_UID, dashboardJson } from '../dashboards/src/upstream-dashboard'

const ROOT = resolve(__dirname, '..')
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8')
const yamlFile = (path: string): any => parse(read(path))

function tool (command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { cwd: ROOT, encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string, stderr?: string }
    if (e.code === 'ENOENT') throw new Error(`${command} is not installed (apt-get install -y --no-install-recommends prometheus docker-compose)`)
    throw new Error(`${command} ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`)
  }
}

interface Panel { id: number, type: string, title: string, datasource?: { uid?: string }, targets?: Array<{ expr: string, exemplar?: boolean, datasource?: { uid?: string } }> }
const dashboard = JSON.parse(read('dashboards/upstream-dashboard.json')) as {
  __inputs: Array<{ name: string, type: string, pluginId: string }>
  title: string
  annotations: { list?: unknown[] }
  templating: { list: Array<{ name: string, type: string, query: string, current: { value: string } }> }
  panels: Panel[]
}
const queryPanels = dashboard.panels.filter((p) => p.type !== 'row')

interface Rule { alert: string, expr: string, for?: string, labels?: Record<string, string>, annotations?: Record<string, string> }
const alertFiles = readdirSync(join(ROOT, 'alerts')).filter((f) => f.endsWith('.yml')).map((f) => `alerts/${f}`)
const rules: Rule[] = alertFiles.flatMap((f) => (yamlFile(f).groups as Array<{ rules: Rule[] }>).flatMap((g) => g.rules))

/** Every sample name the plugin and the worker exporter expose, with the labels it carries. */
const exposed = new Map<string, readonly string[]>()
for (const table of [HTTP, DB, MODEL, MIGRATIONS, CACHE, RUNTIME, CELERY, WORKER]) {
  for (const spec of Object.values(table) as MetricSpec[]) {
    const names = [spec.name, ...(spec.aliases ?? [])].map((n) => exposedName(n, spec.type))
    for (const name of names) {
      if (spec.type === 'histogram') {
        exposed.set(`${name}_bucket`, [...spec.labels, 'le'])
        exposed.set(`${name}_sum`, spec.labels)
        exposed.set(`${name}_count`, spec.labels)
      } else exposed.set(name, spec.labels)
    }
  }
}
exposed.set('up', [])
const TARGET_LABELS = ['job', 'instance']

/** Metric names and label names a PromQL expression uses (enough for the expressions shipped here). */
function promqlNames (expr: string): { metrics: string[], labels: string[] } {
  let rest = expr.replace(/"[^"]*"/g, '""')
  const labels: string[] = []
  rest = rest.replace(/\{([^}]*)\}/g, (_all, matchers: string) => {
    labels.push(...[...matchers.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]!))
    return ' '
  })
  rest = rest.replace(/\b(?:by|without)\s*\(([^)]*)\)/g, (_all, list: string) => {
    labels.push(...list.split(',').map((s) => s.trim()).filter(Boolean))
    return ' '
  })
  rest = rest.replace(/\[[^\]]*\]/g, ' ')
  const keywords = new Set(['sum', 'max', 'min', 'avg', 'count', 'rate', 'irate', 'increase', 'histogram_quantile', 'absent', 'or', 'and', 'unless', 'on', 'ignoring', 'bool'])
  const metrics = [...rest.matchAll(/[a-zA-Z_:][\w:]*/g)].map((m) => m[0]).filter((w) => !keywords.has(w))
  return { metrics: [...new Set(metrics)], labels: [...new Set(labels)] }
}

function checkExpression (t: Test, where: string, expr: string): void {
  const { metrics, labels } = promqlNames(expr)
  t.ok(metrics.length > 0, `${where}: uses a metric`)
  for (const name of metrics) t.ok(exposed.has(name), `${where}: ${name} is exposed by the plugin (lib/names.ts)`)
  const known = new Set([...TARGET_LABELS, ...metrics.flatMap((n) => exposed.get(n) ?? [])])
  for (const label of labels) t.ok(known.has(label), `${where}: label ${label} exists on ${metrics.join(', ')}`)
}

t.test('the committed dashboard is exactly what dashboards/src generates (npm run dashboard)', async (t) => {
  t.equal(read('dashboards/upstream-dashboard.json'), dashboardJson())
})

t.test('the dashboard asks for the Prometheus data source on import', async (t) => {
  t.equal(dashboard.title, DASHBOARD_TITLE)
  t.match(dashboard.__inputs, [{ name: DATASOURCE_INPUT, type: 'datasource', pluginId: 'prometheus' }])
  const variable = dashboard.templating.list.find((v) => v.type === 'datasource')
  t.match(variable, { name: 'datasource', query: 'prometheus', current: { value: `\${${DATASOURCE_INPUT}}` } })
  for (const panel of queryPanels) {
    t.equal(panel.datasource?.uid, DATASOURCE_UID, `${panel.title}: panel data source`)
    for (const target of panel.targets ?? []) t.equal(target.datasource?.uid, DATASOURCE_UID, `${panel.title}: query data source`)
  }
  t.equal(new Set(dashboard.panels.map((p) => p.id)).size, dashboard.panels.length, 'panel ids are unique')
  t.ok(Array.isArray(dashboard.annotations.list), 'annotations.list is an array (Grafana adds to it on load)')
})

t.test('the dashboard has the guide\'s panels and the on-call ones', async (t) => {
  const titles = queryPanels.map((p) => p.title)
  for (const title of [
    'HTTP request rate', 'Request latency (p95)', 'Error rates (4xx, 5xx)', 'Database query counts', // the guide's
    'Latency by view (p95)', 'Database query latency (p95)', 'Database errors', 'Model writes', 'Cache hit ratio',
    'Process CPU', 'Memory', 'Event-loop delay (p99)', 'Queue length', 'Tasks by state', 'Task latency (p95)', 'Workers'
  ]) t.ok(titles.includes(title), title)
})

t.test('every panel query uses metric and label names the plugin exposes', async (t) => {
  for (const panel of queryPanels) {
    t.ok((panel.targets ?? []).length > 0, `${panel.title} has a query`)
    for (const target of panel.targets ?? []) checkExpression(t, panel.title, target.expr)
  }
})

t.test('the latency panels of the plugin\'s histograms that carry exemplars show them (Grafana exemplar: true); no other query asks', async (t) => {
  const withExemplars = /django_http_requests_latency_seconds_by_view_method_bucket|django_http_requests_latency_including_middlewares_seconds_bucket|django_db_query_duration_seconds_bucket/
  const targets = queryPanels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, ...target })))
  t.ok(targets.filter((target) => withExemplars.test(target.expr)).length >= 3, 'the dashboard has latency panels')
  for (const target of targets) t.equal(target.exemplar === true, withExemplars.test(target.expr), `${target.panel}: exemplar ${String(target.exemplar)}`)
})

t.test('the name check can fail', async (t) => {
  t.notOk(exposed.has(promqlNames('sum(rate(django_http_requests_total[5m]))').metrics[0]!), 'a Django-ish name the plugin does not expose')
  t.same(promqlNames('sum by (view) (rate(django_cache_get_total{backend="x"}[5m]))').labels.sort(), ['backend', 'view'])
})

t.test('alert rules: promtool check, metric names, severity, summary and description', async (t) => {
  t.match(tool('promtool', ['check', 'rules', ...alertFiles]), /SUCCESS/)
  const upstream = (yamlFile('alerts/upstream.yml').groups as Array<{ rules: Rule[] }>).flatMap((g) => g.rules)
  t.same(upstream.map((r) => r.alert).sort(), ['DatabaseConnectionErrors', 'DatabaseErrors', 'HighErrorRate', 'HighRequestLatency', 'MetricsTargetDown', 'MetricsTargetMissing', 'UnappliedMigrations'])
  for (const rule of rules) {
    t.ok(['critical', 'warning', 'info'].includes(rule.labels?.severity ?? ''), `${rule.alert}: severity`)
    t.ok((rule.annotations?.summary ?? '').length > 0, `${rule.alert}: summary`)
    t.ok((rule.annotations?.description ?? '').length > 0, `${rule.alert}: description`)
    checkExpression(t, rule.alert, rule.expr)
  }
  const high = upstream.find((r) => r.alert === 'HighErrorRate')!
  t.equal(high.for, '5m')
  t.match(high.expr.replace(/\s+/g, ' '), /status=~"5\.\."\}\[5m\]\)\) \/ sum by \(job\) \(rate\(django_http_responses_total_by_status_total\[5m\]\)\) > 0\.05/, 'a ratio of 5xx over all responses in 5m, above 5%')
})

t.test('every alert has a promtool unit test that shows it firing and not firing; the tests pass', async (t) => {
  const testFiles = readdirSync(join(ROOT, 'alerts/tests')).filter((f) => f.endsWith('.yml')).map((f) => `alerts/tests/${f}`)
  t.match(tool('promtool', ['test', 'rules', ...testFiles]), /SUCCESS/)
  const cases = testFiles.flatMap((f) => (yamlFile(f).tests as Array<{ alert_rule_test?: Array<{ alertname: string, exp_alerts?: unknown[] }> }>)
    .flatMap((c) => c.alert_rule_test ?? []))
  for (const rule of (yamlFile('alerts/upstream.yml').groups as Array<{ rules: Rule[] }>).flatMap((g) => g.rules)) {
    const mine = cases.filter((c) => c.alertname === rule.alert)
    t.ok(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${rule.alert} fires in a test`)
    t.ok(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${rule.alert} stays quiet in a test`)
  }
})

t.test('Prometheus configuration: promtool check, 15s scrapes of web:8000 by DNS, rules loaded', async (t) => {
  const path = 'monitoring/prometheus/prometheus.yml'
  t.match(tool('promtool', ['check', 'config', path]), /SUCCESS/)
  const config = yamlFile(path)
  t.equal(config.global.scrape_interval, '15s')
  const job = config.scrape_configs.find((j: { job_name: string }) => j.job_name === 'upstream')
  t.match(job, { metrics_path: '/metrics', dns_sd_configs: [{ names: ['web'], type: 'A', port: 8000 }] })
  const ruleFiles = (config.rule_files as string[]).flatMap((pattern) => {
    const dir = resolve(ROOT, dirname(path), dirname(pattern))
    return readdirSync(dir).filter((f) => f.endsWith('.yml')).map((f) => join(dir, f))
  })
  t.ok(ruleFiles.includes(join(ROOT, 'alerts/upstream.yml')), 'alerts/upstream.yml is loaded')
})

t.test('Grafana provisioning: Prometheus data source and the dashboard folder', async (t) => {
  const ds = yamlFile('monitoring/grafana/provisioning/datasources/prometheus.yml')
  t.match(ds.datasources, [{ type: 'prometheus', url: 'http://prometheus:9090', isDefault: true }])
  const providers = yamlFile('monitoring/grafana/provisioning/dashboards/upstream.yml').providers
  t.equal(providers[0].type, 'file')
  const grafana = yamlFile('compose.yaml').services.grafana
  const target = (grafana.volumes as string[]).map((v) => v.split(':')).find(([src]) => src === './dashboards/upstream-dashboard.json')?.[1]
  t.equal(target, posix.join(providers[0].options.path, 'upstream-dashboard.json'), 'compose mounts the dashboard where the provider reads')
})

t.test('compose.yaml validates and everything it mounts or builds exists', async (t) => {
  tool('docker-compose', ['-f', 'compose.yaml', 'config', '-q'])
  const compose = yamlFile('compose.yaml')
  const services = compose.services as Record<string, any>
  t.same(Object.keys(services).sort(), ['grafana', 'postgres', 'prometheus', 'redis', 'web', 'worker', 'worker-exporter'])
  const declaredVolumes = Object.keys(compose.volumes ?? {})
  const usedVolumes = new Set<string>()
  for (const [name, service] of Object.entries(services)) {
    t.ok(Array.isArray(service.healthcheck?.test) && service.healthcheck.test.length > 1, `${name}: healthcheck`)
    for (const dependency of Object.keys(service.depends_on ?? {})) t.ok(dependency in services, `${name}: depends on ${dependency}, a service`)
    for (const volume of (service.volumes ?? []) as string[]) {
      const [source] = volume.split(':')
      if (source!.startsWith('.') || source!.startsWith('/')) t.ok(existsSync(resolve(ROOT, source!)), `${name}: mounted ${source} exists`)
      else {
        t.ok(declaredVolumes.includes(source!), `${name}: volume ${source} is declared`)
        usedVolumes.add(source!)
      }
    }
  }
  t.same([...usedVolumes].sort(), declaredVolumes.sort(), 'every named volume is used')
  t.ok(statSync(join(ROOT, services.web.build, 'Dockerfile')).isFile(), 'web builds from the Dockerfile')

  const prometheus = services.prometheus
  t.ok(prometheus.command.includes('--storage.tsdb.retention.time=30d'), 'retention 30 days')
  const configFile = (prometheus.command as string[]).find((c) => c.startsWith('--config.file='))!.slice('--config.file='.length)
  const hostPath = (prometheus.volumes as string[]).map((v) => v.split(':')).find(([, target]) => configFile.startsWith(`${target}/`))
  t.ok(hostPath !== undefined && existsSync(resolve(ROOT, hostPath[0]!, configFile.slice(hostPath[1]!.length + 1))), 'the config file Prometheus is given is mounted from the repository')
  t.ok((prometheus.volumes as string[]).some((v) => v.startsWith('./alerts:')), 'the alert rules are mounted')
  t.match(services.grafana.environment.GF_SECURITY_ADMIN_PASSWORD, /^\$\{GRAFANA_PASSWORD(:-admin)?\}$/)
  t.ok((services.web.ports as string[]).some((p) => p.endsWith(':8000')), 'the app on port 8000')
})

t.test('compose: the worker series come from the exporter alone, never also from the app replicas', async (t) => {
  const services = yamlFile('compose.yaml').services as Record<string, { command?: string[], environment?: Record<string, string> }>
  t.ok(services['worker-exporter']?.command?.includes('dist/bin/worker.js'), 'the worker exporter runs')
  t.equal(services.web!.environment?.DEMO_WORKER, '0', 'the app runs no BullMQ worker and no in-process worker metrics (Prometheus scrapes both: the Workers panels would count twice)')
  const configs = yamlFile('monitoring/prometheus/prometheus.yml').scrape_configs as Array<{ job_name: string, static_configs?: Array<{ targets: string[] }> }>
  t.ok(configs.some((j) => j.job_name === 'upstream'), 'Prometheus scrapes the app')
  const exporterJob = configs.find((j) => j.static_configs?.some((c) => c.targets.includes('worker-exporter:8888')))?.job_name ?? ''
  // Prometheus anchors label regexes: the celery-mixin's selectors, as they match.
  t.ok(/^(?:.*celery.*)$/.test(exporterJob) && /^(?:celery|celery-exporter)$/.test(exporterJob), `the exporter's job (${exporterJob}) matches the celery-mixin's selectors job=~".*celery.*" and job=~"celery|celery-exporter"`)
})

t.test('the Dockerfile copies files that exist and runs the demo', async (t) => {
  const dockerfile = read('Dockerfile')
  for (const [, sources] of dockerfile.matchAll(/^COPY\s+(.+)\s+\S+$/gm)) {
    for (const source of sources!.split(/\s+/)) t.ok(existsSync(join(ROOT, source)), `COPY ${source}`)
  }
  t.match(dockerfile, /CMD \["node", "example\/server\.mjs"\]/)
})
