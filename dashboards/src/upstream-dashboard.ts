import { LegendDisplayMode, LegendPlacement, SortOrder, TooltipDisplayMode, VizLegendOptionsBuilder, VizTooltipOptionsBuilder } from '@grafana/grafana-foundation-sdk/common'
import { AnnotationQueryBuilder, DashboardBuilder, DatasourceVariableBuilder, RowBuilder } from '@grafana/grafana-foundation-sdk/dashboard'
import { DataqueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus'
import { PanelBuilder as StatBuilder } from '@grafana/grafana-foundation-sdk/stat'
import { PanelBuilder as TimeseriesBuilder } from '@grafana/grafana-foundation-sdk/timeseries'
import { CACHE, CELERY, DB, exposedName, HTTP, MIGRATIONS, MODEL, RUNTIME, SCRAPE_VIEW, type MetricSpec } from '../../lib/names'

export const DASHBOARD_UID = 'upstream-app'
export const DASHBOARD_TITLE = 'Upstream Application Monitoring'
/** The import-time input Grafana asks for; the datasource variable starts on it. */
export const DATASOURCE_INPUT = 'DS_PROMETHEUS'

/** `exemplar`: Grafana shows the series' exemplars (trace ids, see docs/tracing.md) as points on the panel. */
export interface TargetSpec { expr: string, legend: string, exemplar?: boolean }
export interface PanelSpec {
  title: string
  description: string
  kind: 'timeseries' | 'stat'
  unit: string
  targets: TargetSpec[]
  /** Grafana grid columns (of 24). */
  width?: number
  /** Shown instead of "No data" when a series legitimately does not exist yet (no 5xx so far). */
  noValue?: string
}
export interface RowSpec { title: string, panels: PanelSpec[] }

const RATE = '$__rate_interval'
/** The exposed sample name of a counter or gauge. */
const m = (spec: MetricSpec): string => exposedName(spec.name, spec.type)
const bucket = (spec: MetricSpec): string => `${spec.name}_bucket`
const rate = (spec: MetricSpec, selector = ''): string => `rate(${m(spec)}${selector}[${RATE}])`
const appViews = `{view!="${SCRAPE_VIEW}"}`
const p95 = (spec: MetricSpec, by: string[], selector = ''): string =>
  `histogram_quantile(0.95, sum by (${['le', ...by].join(', ')}) (rate(${bucket(spec)}${selector}[${RATE}])))`
const statusRatio = (pattern: string): string =>
  `sum(${rate(HTTP.byStatus, `{status=~"${pattern}"}`)}) / sum(${rate(HTTP.byStatus)})`

export const ROWS: RowSpec[] = [
  {
    title: 'HTTP',
    panels: [
      { title: 'HTTP request rate', description: 'Requests per second by method.', kind: 'timeseries', unit: 'reqps', targets: [{ expr: `sum by (method) (${rate(HTTP.byMethod)})`, legend: '{{method}}' }] },
      { title: 'Request latency (p95)', description: '95th percentile of request latency over all views (the scrape itself excluded).', kind: 'timeseries', unit: 's', targets: [{ expr: p95(HTTP.latencyByViewMethod, [], appViews), legend: 'p95', exemplar: true }] },
      {
        title: 'Error rates (4xx, 5xx)',
        description: 'Share of responses with a 4xx or 5xx status.',
        kind: 'timeseries',
        unit: 'percentunit',
        noValue: '0',
        targets: [{ expr: statusRatio('4..'), legend: '4xx' }, { expr: statusRatio('5..'), legend: '5xx' }]
      },
      { title: 'Responses by status', description: 'Responses per second by status code.', kind: 'timeseries', unit: 'reqps', targets: [{ expr: `sum by (status) (${rate(HTTP.byStatus)})`, legend: '{{status}}' }] },
      { title: 'Latency by view (p95)', description: '95th percentile latency of each view (route template).', kind: 'timeseries', unit: 's', width: 24, targets: [{ expr: p95(HTTP.latencyByViewMethod, ['view'], appViews), legend: '{{view}}', exemplar: true }] },
      { title: 'Requests by view', description: 'Requests per second by view and method.', kind: 'timeseries', unit: 'reqps', targets: [{ expr: `sum by (view, method) (${rate(HTTP.byViewTransportMethod)})`, legend: '{{method}} {{view}}' }] },
      { title: 'Exceptions by type', description: 'Unhandled exceptions per second, by class.', kind: 'timeseries', unit: 'short', noValue: '0', targets: [{ expr: `sum by (type) (${rate(HTTP.exceptionsByType)})`, legend: '{{type}}' }] }
    ]
  },
  {
    title: 'Database',
    panels: [
      { title: 'Database query counts', description: 'Statements executed per second, by database alias.', kind: 'timeseries', unit: 'short', targets: [{ expr: `sum by (alias, vendor) (${rate(DB.execute)})`, legend: '{{alias}} ({{vendor}})' }] },
      { title: 'Database query latency (p95)', description: '95th percentile statement duration.', kind: 'timeseries', unit: 's', targets: [{ expr: p95(DB.queryDuration, ['alias']), legend: '{{alias}}', exemplar: true }] },
      { title: 'Database errors', description: 'Failed statements per second, by exception class.', kind: 'timeseries', unit: 'short', noValue: '0', targets: [{ expr: `sum by (alias, type) (${rate(DB.errors)})`, legend: '{{alias}} {{type}}' }] },
      { title: 'New database connections', description: 'Connections opened per second (a pool that churns shows here).', kind: 'timeseries', unit: 'short', targets: [{ expr: `sum by (alias) (${rate(DB.newConnections)})`, legend: '{{alias}}' }] },
      {
        title: 'Model writes',
        description: 'Inserts, updates and deletes per second, by model (table).',
        kind: 'timeseries',
        unit: 'short',
        targets: [
          { expr: `sum by (model) (${rate(MODEL.inserts)})`, legend: 'insert {{model}}' },
          { expr: `sum by (model) (${rate(MODEL.updates)})`, legend: 'update {{model}}' },
          { expr: `sum by (model) (${rate(MODEL.deletes)})`, legend: 'delete {{model}}' }
        ]
      },
      { title: 'Unapplied migrations', description: 'Migrations present in code but not applied to the database.', kind: 'stat', unit: 'none', targets: [{ expr: `max by (connection) (${m(MIGRATIONS.unapplied)})`, legend: '{{connection}}' }] }
    ]
  },
  {
    title: 'Cache',
    panels: [
      { title: 'Cache hit ratio', description: 'Share of cache gets that were hits, by backend.', kind: 'timeseries', unit: 'percentunit', targets: [{ expr: `sum by (backend) (${rate(CACHE.hits)}) / sum by (backend) (${rate(CACHE.get)})`, legend: '{{backend}}' }] },
      {
        title: 'Cache gets',
        description: 'Cache gets per second: hits and misses.',
        kind: 'timeseries',
        unit: 'short',
        targets: [
          { expr: `sum by (backend) (${rate(CACHE.hits)})`, legend: 'hits {{backend}}' },
          { expr: `sum by (backend) (${rate(CACHE.misses)})`, legend: 'misses {{backend}}' }
        ]
      }
    ]
  },
  {
    title: 'Process',
    panels: [
      { title: 'Process CPU', description: 'CPU seconds per second (1 = one core), per instance.', kind: 'timeseries', unit: 'percentunit', width: 8, targets: [{ expr: `sum by (instance) (${rate(RUNTIME.cpuSeconds)})`, legend: '{{instance}}' }] },
      {
        title: 'Memory',
        description: 'Resident set size and V8 heap in use, per instance.',
        kind: 'timeseries',
        unit: 'bytes',
        width: 8,
        targets: [
          { expr: `sum by (instance) (${m(RUNTIME.residentMemory)})`, legend: 'rss {{instance}}' },
          { expr: `sum by (instance) (${m(RUNTIME.heapUsed)})`, legend: 'heap {{instance}}' }
        ]
      },
      { title: 'Event-loop delay (p99)', description: '99th percentile of the event-loop delay over the last 30 to 60 s, per instance (the sampling interval not included): high values mean blocked handlers.', kind: 'timeseries', unit: 's', width: 8, targets: [{ expr: `max by (instance) (${m(RUNTIME.eventLoopLagP99)})`, legend: '{{instance}}' }] }
    ]
  },
  {
    title: 'Workers',
    panels: [
      { title: 'Queue length', description: 'Jobs waiting for a worker, by queue (BullMQ wait and prioritized lists).', kind: 'timeseries', unit: 'short', targets: [{ expr: `sum by (queue_name) (${m(CELERY.queueLength)})`, legend: '{{queue_name}}' }] },
      { title: 'Tasks by state', description: 'Tasks waiting (PENDING), scheduled (RECEIVED), running (STARTED) or waiting for a retry (RETRY) now.', kind: 'timeseries', unit: 'short', targets: [{ expr: `sum by (state) (${m(CELERY.tasks)}{state=~"PENDING|RECEIVED|STARTED|RETRY"})`, legend: '{{state}}' }] },
      { title: 'Task rate by state', description: 'Tasks finished per second: SUCCESS, FAILURE, and REVOKED (removed before they ran).', kind: 'timeseries', unit: 'ops', targets: [{ expr: `sum by (state) (${rate(CELERY.tasks, '{state=~"SUCCESS|FAILURE|REVOKED"}')})`, legend: '{{state}}' }] },
      { title: 'Failures by task name', description: 'Tasks failed for good per second, by job name.', kind: 'timeseries', unit: 'ops', noValue: '0', targets: [{ expr: `sum by (name) (${rate(CELERY.tasksByName, '{state="FAILURE"}')})`, legend: '{{name}}' }] },
      { title: 'Task latency (p95)', description: '95th percentile of the wait between a job becoming runnable and a worker starting it.', kind: 'timeseries', unit: 's', targets: [{ expr: p95(CELERY.latency, []), legend: 'p95' }] },
      { title: 'Task runtime by name (p95)', description: '95th percentile run time of succeeded jobs, by job name.', kind: 'timeseries', unit: 's', targets: [{ expr: p95(CELERY.runtime, ['name']), legend: '{{name}}' }] },
      { title: 'Workers', description: 'BullMQ workers connected to the queues.', kind: 'stat', unit: 'none', targets: [{ expr: `sum(${m(CELERY.workers)})`, legend: 'workers' }] }
    ]
  }
]

/** Grafana's variable syntax, resolved by Grafana, not by JavaScript. */
export const DATASOURCE_UID = '$' + '{datasource}'
const DATASOURCE = { type: 'prometheus', uid: DATASOURCE_UID }

function panel (spec: PanelSpec): TimeseriesBuilder | StatBuilder {
  const builder = spec.kind === 'stat' ? new StatBuilder() : new TimeseriesBuilder()
  builder.title(spec.title).description(spec.description).unit(spec.unit).datasource(DATASOURCE).span(spec.width ?? 12).height(8)
  if (spec.noValue !== undefined) builder.noValue(spec.noValue)
  if (builder instanceof TimeseriesBuilder) {
    builder.min(0).fillOpacity(10)
      .legend(new VizLegendOptionsBuilder().showLegend(true).displayMode(LegendDisplayMode.List).placement(LegendPlacement.Bottom).calcs([]))
      .tooltip(new VizTooltipOptionsBuilder().mode(TooltipDisplayMode.Multi).sort(SortOrder.Descending))
  }
  spec.targets.forEach((target, i) => {
    const query = new DataqueryBuilder().datasource(DATASOURCE).expr(target.expr).legendFormat(target.legend).refId(String.fromCharCode(65 + i))
    builder.withTarget(target.exemplar === true ? query.exemplar(true) : query)
  })
  return builder
}

/** The dashboard as Grafana's import format: `__inputs` makes the UI ask for the Prometheus data source. */
export function buildDashboard (): Record<string, unknown> {
  const builder = new DashboardBuilder(DASHBOARD_TITLE)
    .uid(DASHBOARD_UID)
    .description('HTTP, database, cache, process and worker metrics of the Upstream service (django-prometheus names), from upstream-metrics.')
    .tags(['upstream', 'django-prometheus', 'generated'])
    .editable()
    .refresh('30s')
    .time({ from: 'now-1h', to: 'now' })
    .timezone('browser')
    // Grafana's own annotations (and alert state changes), as every dashboard Grafana saves has.
    .annotation(new AnnotationQueryBuilder().name('Annotations & Alerts').builtIn(1).type('dashboard')
      .datasource({ type: 'grafana', uid: '-- Grafana --' }).enable(true).hide(true).iconColor('rgba(0, 211, 255, 1)'))
    .withVariable(new DatasourceVariableBuilder('datasource').label('Data source').type('prometheus')
      .current({ selected: true, text: `\${${DATASOURCE_INPUT}}`, value: `\${${DATASOURCE_INPUT}}` }))
  for (const row of ROWS) {
    builder.withRow(new RowBuilder(row.title))
    for (const spec of row.panels) builder.withPanel(panel(spec))
  }
  const dashboard = builder.build() as unknown as { panels: Array<{ id?: number }> }
  dashboard.panels.forEach((p, i) => { p.id = i + 1 })
  return {
    __inputs: [{ name: DATASOURCE_INPUT, label: 'Prometheus', description: 'Prometheus scraping the app', type: 'datasource', pluginId: 'prometheus', pluginName: 'Prometheus' }],
    __requires: [
      { type: 'grafana', id: 'grafana', name: 'Grafana', version: '11.0.0' },
      { type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' },
      { type: 'panel', id: 'stat', name: 'Stat', version: '' },
      { type: 'panel', id: 'timeseries', name: 'Time series', version: '' }
    ],
    ...dashboard
  }
}

/** The committed file's exact text. */
export function dashboardJson (): string {
  return JSON.stringify(buildDashboard(), null, 2) + '\n'
}
