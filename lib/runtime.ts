import { readdirSync, readFileSync } from 'node:fs'
import { constants as perfConstants, monitorEventLoopDelay, performance, PerformanceObserver, type EventLoopUtilization, type ELDHistogram } from 'node:perf_hooks'
import { getHeapSpaceStatistics } from 'node:v8'
import type { Meter } from '@opentelemetry/api'
import { RUNTIME } from './names'

const GC_KINDS: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb'
}
const GC_BUCKETS = [0.001, 0.01, 0.1, 1, 2, 5]
const PAGE_SIZE = 4096
/** Event-loop figures cover the last W to 2W of this, whoever reads them and however often. */
export const EVENT_LOOP_WINDOW_MS = 30_000
/**
 * monitorEventLoopDelay's sampling interval: each sample is this interval plus the delay. Every sample is a
 * timer that wakes an idle loop, about 80 µs of CPU each on a VM: at 20 ms that was 0.4 % of a core idle and
 * about 3 % of the CPU of an app serving 5,000 requests/s (the bench). A sample's delay is the rest of a stall
 * at a random moment whatever the interval, so fewer samples leave the percentiles unbiased (300 to 600 per
 * window, not 1,500 to 3,000); a stall shorter than the interval is caught in proportion to its length.
 */
export const EVENT_LOOP_RESOLUTION_MS = 100

type DelaySummary = Record<'min' | 'max' | 'mean' | 'stddev' | 'p50' | 'p90' | 'p99', number>

/**
 * Event-loop delay and utilisation over a fixed window, the same for every reader (two
 * Prometheus servers, the internal listener, cluster rounds, an OTLP push): two staggered
 * delay histograms and utilisation marks, the older one restarted every `windowMs` by an
 * unref'd timer, so a read always covers between one and two windows. No read resets anything.
 */
class EventLoopWindows {
  private readonly histograms: [ELDHistogram, ELDHistogram]
  private readonly marks: [EventLoopUtilization, EventLoopUtilization]
  private readonly timer: NodeJS.Timeout
  /** The histogram and mark restarted last; the other one is older and is the one read. */
  private newest: 0 | 1 = 0

  private get oldest (): 0 | 1 {
    return this.newest === 0 ? 1 : 0
  }

  constructor (windowMs: number) {
    this.histograms = [monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS }), monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS })]
    for (const h of this.histograms) h.enable()
    const now = performance.eventLoopUtilization()
    this.marks = [now, now]
    this.timer = setInterval(() => this.rotate(), windowMs)
    this.timer.unref()
  }

  private rotate (): void {
    const older = this.oldest
    this.histograms[older].reset()
    this.marks[older] = performance.eventLoopUtilization()
    this.newest = older
  }

  /** The delay beyond the sampling interval, in seconds; undefined before the first sample. */
  delay (): DelaySummary | undefined {
    const h = this.histograms[this.oldest]
    if (h.count === 0) return undefined
    const resolutionNs = EVENT_LOOP_RESOLUTION_MS * 1e6
    const seconds = (ns: number) => Math.max(0, ns - resolutionNs) / 1e9
    return {
      min: seconds(h.min),
      max: seconds(h.max),
      mean: seconds(h.mean),
      stddev: h.stddev / 1e9,
      p50: seconds(h.percentile(50)),
      p90: seconds(h.percentile(90)),
      p99: seconds(h.percentile(99))
    }
  }

  utilization (): number {
    return performance.eventLoopUtilization(performance.eventLoopUtilization(), this.marks[this.oldest]).utilization
  }

  stop (): void {
    clearInterval(this.timer)
    for (const h of this.histograms) h.disable()
  }
}

function openFds (): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length - 1
  } catch {
    return undefined
  }
}

function maxFds (): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
    const soft = line?.split(/\s{2,}/)[1]
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft)
  } catch {
    return undefined
  }
}

function virtualMemory (): number | undefined {
  try {
    const pages = Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[0])
    return Number.isFinite(pages) ? pages * PAGE_SIZE : undefined
  } catch {
    return undefined
  }
}

/**
 * The Node counterpart of prometheus_client's process and platform collectors, as
 * OpenTelemetry observable instruments: read only when scraped, except GC pauses and
 * event-loop delay, which the runtime reports as they happen.
 */
export function startRuntimeMetrics (meter: Meter, options: { windowMs?: number } = {}): () => void {
  const startSeconds = Math.round(performance.timeOrigin) / 1000
  const maxOpenFiles = maxFds()
  const [major, minor, patch] = process.versions.node.split('.')
  const versionInfo = { version: process.version, major: major!, minor: minor!, patch: patch! }

  const gauge = (spec: typeof RUNTIME[keyof typeof RUNTIME]) => meter.createObservableGauge(spec.name, { description: spec.help })
  const cpu = meter.createObservableCounter(RUNTIME.cpuSeconds.name, { description: RUNTIME.cpuSeconds.help })
  cpu.addCallback((result) => {
    const { user, system } = process.cpuUsage()
    result.observe((user + system) / 1e6)
  })
  gauge(RUNTIME.residentMemory).addCallback((result) => result.observe(process.memoryUsage.rss()))
  gauge(RUNTIME.virtualMemory).addCallback((result) => {
    const bytes = virtualMemory()
    if (bytes !== undefined) result.observe(bytes)
  })
  gauge(RUNTIME.startTime).addCallback((result) => result.observe(startSeconds))
  gauge(RUNTIME.openFds).addCallback((result) => {
    const count = openFds()
    if (count !== undefined) result.observe(count)
  })
  gauge(RUNTIME.maxFds).addCallback((result) => {
    if (maxOpenFiles !== undefined) result.observe(maxOpenFiles)
  })

  const loop = new EventLoopWindows(options.windowMs ?? EVENT_LOOP_WINDOW_MS)
  const lag = {
    min: gauge(RUNTIME.eventLoopLagMin),
    max: gauge(RUNTIME.eventLoopLagMax),
    mean: gauge(RUNTIME.eventLoopLagMean),
    stddev: gauge(RUNTIME.eventLoopLagStddev),
    p50: gauge(RUNTIME.eventLoopLagP50),
    p90: gauge(RUNTIME.eventLoopLagP90),
    p99: gauge(RUNTIME.eventLoopLagP99)
  }
  meter.addBatchObservableCallback((result) => {
    const delay = loop.delay()
    if (delay === undefined) return
    for (const key of Object.keys(lag) as Array<keyof typeof lag>) result.observe(lag[key], delay[key])
  }, Object.values(lag))
  gauge(RUNTIME.eventLoopUtilization).addCallback((result) => result.observe(loop.utilization()))
  const memory = meter.createObservableGauge(RUNTIME.heapUsed.name, { description: RUNTIME.heapUsed.help })
  const heapTotal = meter.createObservableGauge(RUNTIME.heapTotal.name, { description: RUNTIME.heapTotal.help })
  const external = meter.createObservableGauge(RUNTIME.externalMemory.name, { description: RUNTIME.externalMemory.help })
  meter.addBatchObservableCallback((result) => {
    const usage = process.memoryUsage()
    result.observe(memory, usage.heapUsed)
    result.observe(heapTotal, usage.heapTotal)
    result.observe(external, usage.external)
  }, [memory, heapTotal, external])
  gauge(RUNTIME.heapSpaceUsed).addCallback((result) => {
    for (const space of getHeapSpaceStatistics()) result.observe(space.space_used_size, { space: space.space_name })
  })
  gauge(RUNTIME.info).addCallback((result) => result.observe(1, versionInfo))

  const gc = meter.createHistogram(RUNTIME.gcDuration.name, { description: RUNTIME.gcDuration.help, advice: { explicitBucketBoundaries: GC_BUCKETS } })
  const attributesByKind = new Map(Object.entries(GC_KINDS).map(([k, kind]) => [Number(k), { kind }]))
  const other = { kind: 'other' }
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = ((entry as unknown as { detail?: unknown }).detail as { kind?: number } | undefined)?.kind
      gc.record(entry.duration / 1000, attributesByKind.get(kind ?? 0) ?? other)
    }
  })
  observer.observe({ entryTypes: ['gc'] })

  return function stopRuntimeMetrics () {
    loop.stop()
    observer.disconnect()
  }
}
