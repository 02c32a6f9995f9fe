/**
 * An OTLP/HTTP receiver for tests, decoding with the OpenTelemetry project's own protobuf
 * definitions (the protobufjs code generated from opentelemetry-proto that
 * @opentelemetry/otlp-proto-exporter-base ships), and the OTLP → Prometheus translation of
 * github.com/prometheus/otlptranslator (metric_namer.go, label_namer.go, unit_namer.go,
 * strconv.go), written here independently of lib/ so that it can disagree with it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { PER_UNITS, UNITS } from '../../lib/translation'
import { key } from './metrics'

const root = require('@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js')
interface MessageType { decode: (b: Uint8Array) => unknown, toObject: (m: unknown, o: object) => unknown }
const ExportMetricsServiceRequest: MessageType = root.opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest
const ExportMetricsServiceResponse: { encode: (m: object) => { finish: () => Uint8Array } } = root.opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceResponse

// The decoded shape (protobufjs `toObject` with `defaults: true, longs: Number`).
export interface AnyValue { stringValue?: string, intValue?: number, doubleValue?: number, boolValue?: boolean }
export interface KeyValue { key: string, value: AnyValue }
export interface NumberPoint { attributes: KeyValue[], asDouble?: number, asInt?: number, value?: string }
export interface HistogramPoint { attributes: KeyValue[], count: number, sum: number, bucketCounts: number[], explicitBounds: number[] }
export interface OtlpMetric {
  name: string
  description: string
  unit: string
  sum?: { dataPoints: NumberPoint[], aggregationTemporality: number, isMonotonic: boolean }
  gauge?: { dataPoints: NumberPoint[] }
  histogram?: { dataPoints: HistogramPoint[], aggregationTemporality: number }
  data?: string
}
export interface OtlpRequest {
  resourceMetrics: Array<{
    resource: { attributes: KeyValue[] }
    scopeMetrics: Array<{ scope: { name: string, version: string }, metrics: OtlpMetric[] }>
  }>
}
export interface Received { at: number, headers: IncomingMessage['headers'], path: string, body: OtlpRequest }

export type Behaviour =
  | { kind: 'ok' }
  | { kind: 'status', status: number }
  /** Answers 200, but only after `ms`. */
  | { kind: 'slow', ms: number }

export const CUMULATIVE = 2

export function decode (bytes: Uint8Array): OtlpRequest {
  return ExportMetricsServiceRequest.toObject(ExportMetricsServiceRequest.decode(bytes), { defaults: true, longs: Number, arrays: true, oneofs: true }) as OtlpRequest
}

/** An OTLP/HTTP receiver on 127.0.0.1 that can be stopped and started again on the same port. */
export class Receiver {
  readonly received: Received[] = []
  behaviour: Behaviour = { kind: 'ok' }
  /** Requests being answered now, and the most there ever were at once. */
  open = 0
  maxOpen = 0
  /** Requests that arrived, answered or not. */
  arrived = 0
  port = 0
  private server: Server | undefined
  private readonly sockets = new Set<Socket>()
  private readonly timers = new Set<NodeJS.Timeout>()

  get url (): string {
    return `http://127.0.0.1:${this.port}/v1/metrics`
  }

  async start (port = this.port): Promise<this> {
    const server = createServer((req, res) => this.handle(req, res))
    server.on('connection', (socket) => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve())
    })
    this.server = server
    this.port = (server.address() as { port: number }).port
    return this
  }

  /** Down: connections are refused until `start()`. */
  async stop (): Promise<void> {
    const server = this.server
    this.server = undefined
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    for (const socket of this.sockets) socket.destroy()
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** The last export received, if any, after `since` (ms epoch). */
  last (since = 0): Received | undefined {
    const found = this.received.filter((r) => r.at >= since)
    return found[found.length - 1]
  }

  private handle (req: IncomingMessage, res: ServerResponse): void {
    this.arrived++
    this.open++
    this.maxOpen = Math.max(this.maxOpen, this.open)
    let closed = false
    const done = (): void => {
      if (!closed) this.open--
      closed = true
    }
    res.on('close', done)
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const behaviour = this.behaviour
      const answer = (): void => {
        if (behaviour.kind === 'status') {
          res.writeHead(behaviour.status, { 'content-type': 'text/plain' }).end('collector says no')
          return
        }
        this.received.push({ at: Date.now(), headers: req.headers, path: req.url ?? '', body: decode(Buffer.concat(chunks)) })
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(Buffer.from(ExportMetricsServiceResponse.encode({}).finish()))
      }
      if (behaviour.kind === 'slow') {
        const timer = setTimeout(() => {
          this.timers.delete(timer)
          if (!res.destroyed) answer()
        }, behaviour.ms)
        this.timers.add(timer)
      } else {
        answer()
      }
    })
  }
}

// ---- github.com/prometheus/otlptranslator, re-implemented for the test (its unit tables are lib's) ----

export type Strategy = 'UnderscoreEscapingWithSuffixes' | 'UnderscoreEscapingWithoutSuffixes' | 'NoUTF8EscapingWithSuffixes'
export const STRATEGIES: readonly Strategy[] = ['UnderscoreEscapingWithSuffixes', 'UnderscoreEscapingWithoutSuffixes', 'NoUTF8EscapingWithSuffixes']
export type Kind = 'monotonic' | 'non-monotonic' | 'gauge' | 'histogram'

function unitSuffixes (unit: string): [string, string] {
  const [mainRaw, perRaw] = unit.split(/\/(.*)/s) as [string, string | undefined]
  let main = ''
  let per = ''
  const m = mainRaw.trim()
  if (m !== '' && !/[{}]/.test(m)) main = UNITS[m] ?? m
  if (perRaw !== undefined && perRaw !== '') {
    const p = perRaw.trim()
    if (p !== '' && !/[{}]/.test(p)) per = PER_UNITS[p] ?? p
    if (per !== '') per = `per_${per}`
  }
  return [main, per]
}

function cleanUnit (unit: string): string {
  return unit.replace(/[^a-zA-Z0-9:]/g, '_').replace(/_+/g, '_').replace(/^_/, '')
}

function withoutToken (tokens: string[], token: string): string[] {
  return tokens.filter((t) => t !== token)
}

function trimSuffix (name: string, suffix: string): string {
  return name.endsWith(suffix) && name.length > suffix.length + 1 ? name.slice(0, name.length - suffix.length - 1) : name
}

/** The Prometheus metric name a translated OTLP metric gets (`MetricNamer.Build`, empty namespace). */
export function metricName (name: string, unit: string, kind: Kind, strategy: Strategy): string {
  if (strategy === 'NoUTF8EscapingWithSuffixes') {
    let out = name
    const after: string[] = []
    if (unit === '1' && kind === 'gauge') { out = trimSuffix(out, 'ratio'); after.unshift('_ratio') }
    if (kind === 'monotonic') { out = trimSuffix(out, 'total'); after.unshift('_total') }
    const [main, per] = unitSuffixes(unit)
    if (per !== '') { out = trimSuffix(out, per); after.unshift(`_${per}`) }
    if (main !== '' && !out.endsWith(main)) out = `${out}_${main}`
    return out + after.join('')
  }
  if (strategy === 'UnderscoreEscapingWithoutSuffixes') {
    let out = name.split(/[^a-zA-Z0-9:_]+/).filter((t) => t !== '').join('_')
    if (/^[0-9]/.test(out)) out = `_${out}`
    return out
  }
  let tokens = name.split(/[^a-zA-Z0-9:]+/).filter((t) => t !== '')
  const [mainRaw, perRaw] = unitSuffixes(unit)
  let main = cleanUnit(mainRaw)
  let per = cleanUnit(perRaw)
  if (tokens.includes(main)) main = ''
  if (per === 'per_') per = ''
  else {
    per = per.replace(/_$/, '')
    if (tokens.includes(per)) per = ''
  }
  if (per !== '') main = main.replace(/_$/, '')
  if (main !== '') tokens.push(main)
  if (per !== '') tokens.push(per)
  if (kind === 'monotonic') tokens = [...withoutToken(tokens, 'total'), 'total']
  if (unit === '1' && kind === 'gauge') tokens = [...withoutToken(tokens, 'ratio'), 'ratio']
  let out = tokens.join('_')
  if (/^[0-9]/.test(out)) out = `_${out}`
  return out
}

/** The Prometheus label name of an attribute key (`LabelNamer.Build`, default settings). */
export function labelName (attribute: string, strategy: Strategy): string {
  if (strategy === 'NoUTF8EscapingWithSuffixes') return attribute
  const reserved = attribute.length >= 4 && attribute.startsWith('__') && attribute.endsWith('__')
  const inner = reserved ? attribute.slice(2, -2) : attribute
  let out = inner.replace(/[^a-zA-Z0-9]+/g, '_')
  if (reserved) out = `__${out}__`
  if (/^[0-9]/.test(out)) out = `key_${out}`
  return out
}

function stringOf (value: AnyValue): string {
  if (value.stringValue !== undefined && value.stringValue !== '') return value.stringValue
  if (value.intValue !== undefined && value.intValue !== 0) return String(value.intValue)
  if (value.doubleValue !== undefined && value.doubleValue !== 0) return String(value.doubleValue)
  if (value.boolValue === true) return 'true'
  return value.stringValue ?? ''
}

export function attributes (kvs: KeyValue[], strategy: Strategy): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const kv of kvs) labels[labelName(kv.key, strategy)] = stringOf(kv.value)
  return labels
}

export function kindOf (metric: OtlpMetric): Kind {
  if (metric.histogram !== undefined && metric.data === 'histogram') return 'histogram'
  if (metric.sum !== undefined && metric.data === 'sum') return metric.sum.isMonotonic ? 'monotonic' : 'non-monotonic'
  return 'gauge'
}

/** The Prometheus type a translated metric gets: a non-monotonic sum becomes a gauge. */
export function promType (kind: Kind): string {
  return kind === 'monotonic' ? 'counter' : kind === 'histogram' ? 'histogram' : 'gauge'
}

export interface Translated {
  /** Sample key (test/helpers/metrics `key`, `le` as a number string) → value. */
  samples: Map<string, number>
  /** Family name → Prometheus type, description (HELP), and the OTLP name and kind it came from. */
  families: Map<string, { type: string, help: string, otlpName: string, kind: Kind, scope: string }>
  /** The resource's `job` and `instance` labels. */
  job: string
  instance: string
}

/** The samples Prometheus would store from one export, without the `job`/`instance` labels. */
export function translate (request: OtlpRequest, strategy: Strategy = 'UnderscoreEscapingWithSuffixes'): Translated {
  const out: Translated = { samples: new Map(), families: new Map(), job: '', instance: '' }
  for (const rm of request.resourceMetrics) {
    const resource = Object.fromEntries(rm.resource.attributes.map((kv) => [kv.key, stringOf(kv.value)]))
    const namespace = resource['service.namespace']
    out.job = namespace !== undefined && namespace !== '' ? `${namespace}/${resource['service.name'] ?? ''}` : resource['service.name'] ?? ''
    out.instance = resource['service.instance.id'] ?? ''
    for (const sm of rm.scopeMetrics) {
      for (const metric of sm.metrics) {
        const kind = kindOf(metric)
        const name = metricName(metric.name, metric.unit, kind, strategy)
        out.families.set(name, { type: promType(kind), help: metric.description, otlpName: metric.name, kind, scope: sm.scope.name })
        if (kind === 'histogram') {
          for (const point of metric.histogram!.dataPoints) {
            const labels = attributes(point.attributes, strategy)
            let cumulative = 0
            point.explicitBounds.forEach((bound, i) => {
              cumulative += point.bucketCounts[i] ?? 0
              out.samples.set(key(`${name}_bucket`, { ...labels, le: String(bound) }), cumulative)
            })
            out.samples.set(key(`${name}_bucket`, { ...labels, le: '+Inf' }), point.count)
            out.samples.set(key(`${name}_count`, labels), point.count)
            out.samples.set(key(`${name}_sum`, labels), point.sum)
          }
        } else {
          const points = kind === 'gauge' ? metric.gauge!.dataPoints : metric.sum!.dataPoints
          for (const point of points) {
            out.samples.set(key(name, attributes(point.attributes, strategy)), point.value === 'asInt' ? point.asInt! : point.asDouble!)
          }
        }
      }
    }
  }
  return out
}
