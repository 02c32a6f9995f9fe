import { describe, kind, show, showUrl } from '../redact'
import { fail, isPlainObject, onlyKeys } from '../validate'

/** The `otlp` option with the standard environment variables applied; see docs/scaling.md. */
export interface ResolvedOtlp {
  /** Full URL of the OTLP/HTTP metrics endpoint. */
  endpoint: string
  /** Headers given in the option; `OTEL_EXPORTER_OTLP_(METRICS_)HEADERS` are added by the exporter itself. */
  headers: Record<string, string> | undefined
  intervalMs: number
  timeoutMs: number
  serviceName: string | undefined
  resourceAttributes: Record<string, string>
  /** Environment settings this push cannot honour, to warn about once at start. */
  ignored: string[]
}

/**
 * The exporter push needs: an optional peer dependency (`>=0.300.0 <0.302.0`, so an app's sdk-node copy serves);
 * the version named in the install command is the one of the plugin's own sdk-metrics.
 */
export const OTLP_EXPORTER = '@opentelemetry/exporter-metrics-otlp-proto'
export const OTLP_EXPORTER_VERSION = '0.301.0'

const KEYS = ['endpoint', 'headers', 'intervalMs', 'timeoutMs', 'serviceName', 'resourceAttributes']
const DEFAULT_ENDPOINT = 'http://localhost:4318/v1/metrics'
const DEFAULT_INTERVAL_MS = 60_000
const DEFAULT_TIMEOUT_MS = 10_000
export const MIN_INTERVAL_MS = 100

function env (name: string): string | undefined {
  const value = process.env[name]?.trim()
  return value === undefined || value === '' ? undefined : value
}

function httpUrl (option: string, value: unknown): URL {
  if (typeof value !== 'string') fail(option, 'must be an http:// or https:// URL', kind(value))
  let url: URL
  try {
    url = new URL(value)
  } catch {
    fail(option, 'must be an http:// or https:// URL', 'an unparsable URL')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(option, 'must be an http:// or https:// URL', showUrl(value))
  return url
}

/** A URL without a path is the Collector's base address: the metrics path is added, as for `OTEL_EXPORTER_OTLP_ENDPOINT`. */
function withMetricsPath (url: URL): string {
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/metrics'
  return url.href
}

function endpoint (value: unknown): string {
  if (value !== undefined) return withMetricsPath(httpUrl('otlp.endpoint', value))
  const specific = env('OTEL_EXPORTER_OTLP_METRICS_ENDPOINT')
  if (specific !== undefined) return httpUrl('OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', specific).href
  const base = env('OTEL_EXPORTER_OTLP_ENDPOINT')
  if (base !== undefined) {
    const url = httpUrl('OTEL_EXPORTER_OTLP_ENDPOINT', base)
    url.pathname = `${url.pathname.replace(/\/$/, '')}/v1/metrics`
    return url.href
  }
  return DEFAULT_ENDPOINT
}

function milliseconds (option: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) fail(option, `must be an integer number of milliseconds, at least ${min}`, describe(value))
  return value
}

function envMilliseconds (names: string[], min: number): number | undefined {
  for (const name of names) {
    const raw = env(name)
    if (raw !== undefined) return milliseconds(name, /^\d+$/.test(raw) ? Number(raw) : raw, min)
  }
  return undefined
}

function stringRecord (option: string, value: unknown, secret: boolean): Record<string, string> | undefined {
  if (value === undefined) return undefined
  if (!isPlainObject(value)) fail(option, 'must be an object of string values', secret ? '<redacted>' : kind(value))
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') fail(`${option}.${key}`, 'must be a string', secret ? '<redacted>' : kind(v))
  }
  return value as Record<string, string>
}

/** `OTEL_METRICS_EXPORTER` lists `otlp` (the OpenTelemetry SDKs' switch for pushing metrics). */
function enabledByEnvironment (): boolean {
  if (env('OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return false
  return (env('OTEL_METRICS_EXPORTER') ?? '').split(',').some((name) => name.trim() === 'otlp')
}

export function resolveOtlp (value: unknown): ResolvedOtlp | undefined {
  if (value === false) return undefined
  if (value === undefined && !enabledByEnvironment()) return undefined
  if (value !== undefined && value !== true && !isPlainObject(value)) fail('otlp', 'must be true, false or { endpoint?, headers?, intervalMs?, timeoutMs?, serviceName?, resourceAttributes? }', kind(value))
  const o: Record<string, unknown> = isPlainObject(value) ? value : {}
  onlyKeys(o, 'otlp.', KEYS)

  const intervalMs = o.intervalMs !== undefined
    ? milliseconds('otlp.intervalMs', o.intervalMs, MIN_INTERVAL_MS)
    : envMilliseconds(['OTEL_METRIC_EXPORT_INTERVAL'], MIN_INTERVAL_MS) ?? DEFAULT_INTERVAL_MS
  let timeoutMs: number
  if (o.timeoutMs !== undefined) {
    timeoutMs = milliseconds('otlp.timeoutMs', o.timeoutMs, 1)
    if (timeoutMs > intervalMs) fail('otlp.timeoutMs', 'must not exceed otlp.intervalMs (one export at a time)', String(timeoutMs))
  } else {
    const fromEnv = envMilliseconds(['OTEL_METRIC_EXPORT_TIMEOUT', 'OTEL_EXPORTER_OTLP_METRICS_TIMEOUT', 'OTEL_EXPORTER_OTLP_TIMEOUT'], 1)
    timeoutMs = Math.min(fromEnv ?? DEFAULT_TIMEOUT_MS, intervalMs)
  }

  if (o.serviceName !== undefined && (typeof o.serviceName !== 'string' || o.serviceName === '')) fail('otlp.serviceName', 'must be a non-empty string', show(o.serviceName))
  const ignored: string[] = []
  for (const name of ['OTEL_EXPORTER_OTLP_METRICS_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const protocol = env(name)
    if (protocol !== undefined && protocol !== 'http/protobuf') ignored.push(`${name}=${protocol} (only http/protobuf is sent)`)
  }
  const temporality = env('OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE')
  if (temporality !== undefined && temporality.toLowerCase() !== 'cumulative') ignored.push(`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=${temporality} (always cumulative)`)

  return {
    endpoint: endpoint(o.endpoint),
    headers: stringRecord('otlp.headers', o.headers, true),
    intervalMs,
    timeoutMs,
    serviceName: o.serviceName as string | undefined,
    resourceAttributes: stringRecord('otlp.resourceAttributes', o.resourceAttributes, false) ?? {},
    ignored
  }
}
