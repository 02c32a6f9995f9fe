import cluster from 'node:cluster'
import { randomUUID } from 'node:crypto'
import { DataPointType, type MetricData, type ScopeMetrics } from '@opentelemetry/sdk-metrics'
import { ClusterInstanceError, ClusterTimeoutError } from './errors'
import { FAMILY_GROUPS } from './names'

/**
 * Totals over every worker, as django-prometheus's multiprocess mode gives them: the
 * worker that receives a scrape asks the primary, the primary asks every worker for
 * its collected metrics, adds them up and answers.
 */
const ASK = 'upstream-metrics:aggregate'
const COLLECT = 'upstream-metrics:collect'
const COLLECTED = 'upstream-metrics:collected'
const ANSWER = 'upstream-metrics:aggregated'

interface Message { type: string, id: string, namespace?: string, scopeMetrics?: ScopeMetrics[], error?: string }

function isMessage (value: unknown): value is Message {
  return typeof value === 'object' && value !== null && typeof (value as Message).type === 'string' && (value as Message).type.startsWith('upstream-metrics:')
}

const gaugeMerge = new Map<string, 'sum' | 'min' | 'max'>()
for (const group of FAMILY_GROUPS) for (const spec of Object.values(group)) if (spec.merge !== undefined) gaugeMerge.set(spec.name, spec.merge)

function attributesKey (attributes: Record<string, unknown>): string {
  return JSON.stringify(Object.keys(attributes).sort().map((k) => [k, attributes[k]]))
}

/** Adds several workers' collections into one: sums and histograms add, gauges follow the table's merge rule. */
export function mergeScopeMetrics (collections: ScopeMetrics[][], namespace = ''): ScopeMetrics[] {
  const prefix = namespace === '' ? '' : `${namespace}_`
  const ruleOf = (name: string) => gaugeMerge.get(prefix !== '' && name.startsWith(prefix) ? name.slice(prefix.length) : name) ?? 'sum'
  const scopes = new Map<string, { scope: ScopeMetrics['scope'], metrics: Map<string, { metric: MetricData, points: Map<string, any> }> }>()
  for (const collection of collections) {
    for (const scopeMetrics of collection) {
      let scope = scopes.get(scopeMetrics.scope.name)
      if (scope === undefined) {
        scope = { scope: scopeMetrics.scope, metrics: new Map() }
        scopes.set(scopeMetrics.scope.name, scope)
      }
      for (const metric of scopeMetrics.metrics) {
        let merged = scope.metrics.get(metric.descriptor.name)
        if (merged === undefined) {
          merged = { metric, points: new Map() }
          scope.metrics.set(metric.descriptor.name, merged)
        }
        const rule = ruleOf(metric.descriptor.name)
        for (const point of metric.dataPoints as any[]) {
          const key = attributesKey(point.attributes)
          const seen = merged.points.get(key)
          if (seen === undefined) {
            merged.points.set(key, structuredClone(point))
          } else if (metric.dataPointType === DataPointType.HISTOGRAM) {
            seen.value.count += point.value.count
            seen.value.sum = (seen.value.sum ?? 0) + (point.value.sum ?? 0)
            seen.value.buckets.counts = seen.value.buckets.counts.map((c: number, i: number) => c + (point.value.buckets.counts[i] ?? 0))
          } else if (metric.dataPointType === DataPointType.GAUGE && rule !== 'sum') {
            seen.value = Math[rule](seen.value, point.value)
          } else {
            seen.value += point.value
          }
        }
      }
    }
  }
  return [...scopes.values()].map(({ scope, metrics }) => ({
    scope,
    metrics: [...metrics.values()].map(({ metric, points }) => ({ ...metric, dataPoints: [...points.values()] }) as MetricData)
  }))
}

/** Call once in the primary process, before forking workers that register the plugin with `cluster: true`. */
export function setupClusterPrimary (options: { timeoutMs?: number } = {}): () => void {
  if (!cluster.isPrimary) throw new Error('upstream-metrics: setupClusterPrimary() must run in the cluster primary')
  const timeoutMs = options.timeoutMs ?? 4000
  const pending = new Map<string, { expected: Set<number>, results: ScopeMetrics[][], failed: string | undefined, done: () => void }>()

  // A partial sum would make counters drop (a reset to Prometheus): a round missing a worker fails the scrape instead.
  function onMessage (worker: import('node:cluster').Worker, message: unknown): void {
    if (!isMessage(message)) return
    if (message.type === COLLECTED) {
      const round = pending.get(message.id)
      if (round === undefined || !round.expected.has(worker.id)) return
      round.expected.delete(worker.id)
      if (message.scopeMetrics !== undefined) round.results.push(message.scopeMetrics)
      else round.failed ??= message.error ?? 'a worker failed to collect'
      if (round.expected.size === 0) round.done()
      return
    }
    if (message.type !== ASK) return
    const workers = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined && w.isConnected())
    const round = { expected: new Set(workers.map((w) => w!.id)), results: [] as ScopeMetrics[][], failed: undefined as string | undefined, done: () => {} }
    const timer = setTimeout(() => {
      round.failed ??= `${round.expected.size} worker(s) did not answer within ${timeoutMs} ms`
      round.done()
    }, timeoutMs)
    round.done = () => {
      clearTimeout(timer)
      pending.delete(message.id)
      if (!worker.isConnected()) return
      const answer = round.failed === undefined
        ? { type: ANSWER, id: message.id, scopeMetrics: mergeScopeMetrics(round.results, message.namespace) }
        : { type: ANSWER, id: message.id, error: round.failed }
      worker.send(answer, () => {})
    }
    pending.set(message.id, round)
    for (const w of workers) w!.send({ type: COLLECT, id: message.id }, () => {})
  }

  // A worker that exits mid-round is no longer waited for; its counts leave with it.
  function onExit (worker: import('node:cluster').Worker): void {
    for (const round of pending.values()) {
      if (round.expected.delete(worker.id) && round.expected.size === 0) round.done()
    }
  }

  cluster.on('message', onMessage)
  cluster.on('exit', onExit)
  return () => {
    cluster.off('message', onMessage)
    cluster.off('exit', onExit)
  }
}

let activeWorkerInstance = false

function send (message: Message): void {
  // A channel closing during a rolling restart must not crash the worker.
  if (process.connected && process.send !== undefined) process.send(message, undefined, {}, () => {})
}

/** In a worker: answers the primary's collection requests and asks it for totals. One per process. */
export class ClusterWorker {
  private readonly waiting = new Map<string, { resolve: (m: ScopeMetrics[]) => void, reject: (e: Error) => void, timer: NodeJS.Timeout }>()
  private readonly onMessage = (message: unknown): void => {
    if (!isMessage(message)) return
    if (message.type === COLLECT) {
      this.collectLocal().then(
        (scopeMetrics) => send({ type: COLLECTED, id: message.id, scopeMetrics }),
        (err: Error) => send({ type: COLLECTED, id: message.id, error: err.message })
      )
    } else if (message.type === ANSWER) {
      const waiter = this.waiting.get(message.id)
      if (waiter === undefined) return
      this.waiting.delete(message.id)
      clearTimeout(waiter.timer)
      if (message.error !== undefined) waiter.reject(new Error(`upstream-metrics: cluster totals unavailable: ${message.error}`))
      else waiter.resolve(message.scopeMetrics ?? [])
    }
  }

  constructor (private readonly collectLocal: () => Promise<ScopeMetrics[]>, private readonly timeoutMs: number, private readonly namespace = '') {
    if (cluster.isWorker) {
      if (activeWorkerInstance) throw new ClusterInstanceError()
      activeWorkerInstance = true
      process.on('message', this.onMessage)
    }
  }

  async aggregate (): Promise<ScopeMetrics[]> {
    if (!cluster.isWorker || process.send === undefined) return await this.collectLocal()
    const id = randomUUID()
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        reject(new ClusterTimeoutError(this.timeoutMs))
      }, this.timeoutMs)
      this.waiting.set(id, { resolve, reject, timer })
      send({ type: ASK, id, namespace: this.namespace })
    })
  }

  close (): void {
    if (cluster.isWorker) {
      process.off('message', this.onMessage)
      activeWorkerInstance = false
    }
    for (const waiter of this.waiting.values()) {
      clearTimeout(waiter.timer)
      waiter.reject(new Error('upstream-metrics: closed while waiting for cluster totals'))
    }
    this.waiting.clear()
  }
}
