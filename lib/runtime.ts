import { readdirSync, readFileSync } from 'node:fs'
import { constants as perfConstants, monitorEventLoopDelay, performance, PerformanceObserver, type EventLoopUtilization } from 'node:perf_hooks'
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
export function startRuntimeMetrics (meter: Meter): () => void {
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

  const delay = monitorEventLoopDelay({ resolution: 20 })
  delay.enable()
  gauge(RUNTIME.eventLoopDelay).addCallback((result) => {
    if (delay.count > 0) {
      for (const q of [0.5, 0.9, 0.99]) result.observe(delay.percentile(q * 100) / 1e9, { quantile: String(q) })
      result.observe(delay.max / 1e9, { quantile: '1' })
    }
    delay.reset()
  })
  let lastUtilization: EventLoopUtilization = performance.eventLoopUtilization()
  gauge(RUNTIME.eventLoopUtilization).addCallback((result) => {
    const now = performance.eventLoopUtilization()
    result.observe(performance.eventLoopUtilization(now, lastUtilization).utilization)
    lastUtilization = now
  })
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
    delay.disable()
    observer.disconnect()
  }
}
