import { readFileSync } from 'node:fs'
import type { Agent as HttpAgent } from 'node:http'
import { hostname } from 'node:os'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto'
import { defaultResource, detectResources, envDetector, resourceFromAttributes, type Resource } from '@opentelemetry/resources'
import {
  AggregationTemporality, PeriodicExportingMetricReader,
  type InstrumentType, type PushMetricExporter, type ResourceMetrics
} from '@opentelemetry/sdk-metrics'
import type { FastifyBaseLogger } from 'fastify'
import { InvalidOptionError } from '../errors'
import { OTLP } from '../names'
import type { Cell, Store } from '../store'
import { LogLimiter } from '../log-limit'
import { showUrl } from '../redact'
import type { ResolvedOtlp } from './options'
import { OtlpStoreProducer } from './producer'

/** The longest `close()` waits for the last export: a dead Collector must not hold up a container stop. */
export const CLOSE_TIMEOUT_MS = 2_000

/** At most one warning a minute while exports fail: a dead Collector must not flood the app's log. */
const WARNING_INTERVAL_MS = 60_000

interface PushCounters {
  success: Cell
  failure: Cell
  dropped: Cell
}

function countPoints (metrics: ResourceMetrics): number {
  let points = 0
  for (const scope of metrics.scopeMetrics) for (const metric of scope.metrics) points += metric.dataPoints.length
  return points
}

/** What a log line may say of a failed export: the status or network code and message, never a body or header. */
function describeError (error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const code = (error as { code?: unknown }).code
  return code === undefined ? error.message : `${String(code)} ${error.message}`.trim()
}

/**
 * Wraps the OTLP exporter: counts and reports failures (rate-limited), stamps the push
 * resource on every export, and once the app closes bounds every wait by one deadline and
 * destroys the sockets still open, so `close()` never waits on a dead Collector.
 */
class GuardedExporter implements PushMetricExporter {
  private deadline = Infinity
  private failedInRow = 0
  private readonly warnings = new LogLimiter(WARNING_INTERVAL_MS)

  constructor (
    private readonly inner: OTLPMetricExporter,
    private readonly resource: Resource,
    private readonly counters: PushCounters,
    private readonly log: FastifyBaseLogger,
    private readonly target: string,
    private readonly agents: HttpAgent[]
  ) {}

  export (metrics: ResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    const points = countPoints(metrics)
    let timer: NodeJS.Timeout | undefined
    let settled = false
    const finish = (result: ExportResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (result.code === ExportResultCode.SUCCESS) this.succeeded()
      else this.failed(points, result.error)
      resultCallback(result)
    }
    const remaining = this.deadline - Date.now()
    if (remaining <= 0) {
      finish({ code: ExportResultCode.FAILED, error: new Error('the app closed before this export could be sent') })
      return
    }
    if (Number.isFinite(remaining)) timer = setTimeout(() => finish({ code: ExportResultCode.FAILED, error: new Error('the app closed before the Collector answered') }), remaining)
    this.inner.export({ resource: this.resource, scopeMetrics: metrics.scopeMetrics }, finish)
  }

  async forceFlush (): Promise<void> {
    await this.bounded(this.inner.forceFlush())
  }

  async shutdown (): Promise<void> {
    await this.bounded(this.inner.shutdown())
    for (const agent of this.agents) agent.destroy()
  }

  selectAggregationTemporality (instrumentType: InstrumentType): AggregationTemporality {
    return this.inner.selectAggregationTemporality(instrumentType)
  }

  selectAggregation (instrumentType: InstrumentType) {
    return this.inner.selectAggregation(instrumentType)
  }

  /** From now on, nothing waits past `ms` from now. */
  closeWithin (ms: number): void {
    this.deadline = Date.now() + ms
  }

  private async bounded (work: Promise<void>): Promise<void> {
    const remaining = this.deadline - Date.now()
    if (!Number.isFinite(remaining)) return await work
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      work.catch(() => {}),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(remaining, 0)) })
    ])
    clearTimeout(timer)
  }

  private succeeded (): void {
    this.counters.success.value++
    if (this.failedInRow > 0) this.log.info({ endpoint: this.target, failedExports: this.failedInRow }, 'upstream-metrics: OTLP export succeeded again; it carries the cumulative totals')
    this.failedInRow = 0
  }

  private failed (points: number, error: unknown): void {
    this.counters.failure.value++
    this.counters.dropped.value += points
    this.failedInRow++
    if (Number.isFinite(this.deadline)) {
      // The app is closing: no export follows, whatever the rate of warnings so far.
      this.log.warn(
        { endpoint: this.target, error: describeError(error), failedExports: this.failedInRow, droppedPoints: points },
        'upstream-metrics: the last OTLP export, sent as the app closed, failed; the counts since the last successful export are not delivered'
      )
      return
    }
    if (this.warnings.admit() === false) return
    this.log.warn(
      { endpoint: this.target, error: describeError(error), failedExports: this.failedInRow, droppedPoints: points },
      'upstream-metrics: OTLP export failed; the app is unaffected, the next successful export carries the cumulative totals (this warning repeats at most once a minute)'
    )
  }
}

function envFile (names: string[]): Buffer | undefined {
  for (const name of names) {
    const path = process.env[name]
    if (path === undefined || path === '') continue
    try {
      return readFileSync(path)
    } catch {
      throw new InvalidOptionError(name, 'must name a readable file', 'a path that could not be read')
    }
  }
  return undefined
}

/** The exporter's TLS files from the standard variables, read once at start. */
function tlsFromEnvironment (): { ca?: Buffer, cert?: Buffer, key?: Buffer } {
  const tls: { ca?: Buffer, cert?: Buffer, key?: Buffer } = {}
  const ca = envFile(['OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE', 'OTEL_EXPORTER_OTLP_CERTIFICATE'])
  const cert = envFile(['OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE', 'OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE'])
  const key = envFile(['OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY', 'OTEL_EXPORTER_OTLP_CLIENT_KEY'])
  if (ca !== undefined) tls.ca = ca
  if (cert !== undefined) tls.cert = cert
  if (key !== undefined) tls.key = key
  return tls
}

/** `service.name` → `job`, `service.instance.id` → `instance` after translation. */
function pushResource (options: ResolvedOtlp): Resource {
  const given: Record<string, string> = { ...options.resourceAttributes }
  if (options.serviceName !== undefined) given['service.name'] = options.serviceName
  return defaultResource()
    .merge(resourceFromAttributes({ 'service.instance.id': `${hostname()}:${process.pid}` }))
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(resourceFromAttributes(given))
}

export interface OtlpPush {
  /** Joins the plugin's MeterProvider: it collects the SDK instruments and, through `producer`, the store. */
  readonly reader: PeriodicExportingMetricReader
  readonly producer: OtlpStoreProducer
  /** Called as the app closes, before the provider shuts down: its last export gets `timeoutMs` or `CLOSE_TIMEOUT_MS`, the shorter. */
  closeWithin: () => void
}

/** Loaded only when push is on: with it off, no exporter is loaded and no timer runs. */
export function startOtlpPush (store: Store, options: ResolvedOtlp, namespace: string, log: FastifyBaseLogger): OtlpPush {
  const target = showUrl(options.endpoint)
  const tls = tlsFromEnvironment()
  const agents: HttpAgent[] = []
  const exporter = new OTLPMetricExporter({
    url: options.endpoint,
    ...(options.headers !== undefined ? { headers: options.headers } : {}),
    timeoutMillis: options.timeoutMs,
    temporalityPreference: AggregationTemporality.CUMULATIVE,
    // Our own agent, so that close() can end a request a slow Collector never answers.
    httpAgentOptions: async (protocol: string) => {
      const { Agent } = protocol === 'http:' ? await import('node:http') : await import('node:https')
      const agent = new Agent({ keepAlive: true, ...tls })
      agents.push(agent)
      return agent
    }
  })

  const asDeclared = { namespaced: false }
  // Not named `exports`: in the CommonJS output that would hide the module's own (CLOSE_TIMEOUT_MS below).
  const exportsByResult = store.counter(OTLP.exports, asDeclared)
  const counters = {
    success: exportsByResult.cell('success'),
    failure: exportsByResult.cell('failure'),
    dropped: store.counter(OTLP.droppedPoints, asDeclared).cell()
  }
  const guarded = new GuardedExporter(exporter, pushResource(options), counters, log, target, agents)
  const producer = new OtlpStoreProducer(store)
  const reader = new PeriodicExportingMetricReader({
    exporter: guarded,
    exportIntervalMillis: options.intervalMs,
    exportTimeoutMillis: options.timeoutMs,
    metricProducers: [producer]
  })

  for (const setting of options.ignored) log.warn(`upstream-metrics: OTLP push ignores ${setting}`)
  if (namespace !== '' && !/^[a-zA-Z][a-zA-Z0-9]*(?:_[a-zA-Z0-9]+)*$/.test(namespace)) {
    log.warn({ namespace }, 'upstream-metrics: the OTLP → Prometheus translation collapses leading, trailing and repeated underscores, so pushed names will differ from the scraped ones under this namespace')
  }
  log.info({ endpoint: target, intervalMs: options.intervalMs }, 'upstream-metrics: pushing metrics over OTLP')
  return { reader, producer, closeWithin: () => guarded.closeWithin(Math.min(options.timeoutMs, CLOSE_TIMEOUT_MS)) }
}
