import { CACHE } from '../names'
import type { Faults } from '../faults'
import type { Cell, Family, Store } from '../store'

/** Outcome of one cache get: `true` hit, `false` miss, `'fail'` the call failed. */
export type CacheOutcome = boolean | 'hit' | 'miss' | 'fail'

interface BackendCells {
  readonly get: Cell
  readonly hits: Cell
  readonly misses: Cell
  readonly fail: Cell
}

function bump (cells: BackendCells, hits: number, misses: number, fails: number): void {
  cells.get.value += hits + misses + fails
  if (hits !== 0) cells.hits.value += hits
  if (misses !== 0) cells.misses.value += misses
  if (fails !== 0) cells.fail.value += fails
}

/** One plugin instance's cache series (django-prometheus's four counters, by `backend`). */
export class CacheMetrics {
  private readonly get: Family
  private readonly hits: Family
  private readonly misses: Family
  private readonly fail: Family
  private readonly byBackend = new Map<string, BackendCells>()

  constructor (
    store: Store,
    private readonly faults: Faults,
    /** `backend` label when the caller names none (in-process caches). */
    readonly defaultBackend: string,
    private readonly limit: number
  ) {
    this.get = store.counter(CACHE.get)
    this.hits = store.counter(CACHE.hits)
    this.misses = store.counter(CACHE.misses)
    this.fail = store.counter(CACHE.fail)
  }

  /** Counts gets; never throws. `get_total` is always hits + misses + fails. */
  record (backend: string | undefined, hits: number, misses: number, fails: number): void {
    try {
      bump(this.cells(this.label(backend)), hits, misses, fails)
    } catch (err) {
      this.faults.report(err)
    }
  }

  /** A counter for one backend, its series resolved on first use. */
  counter (backend: string | undefined): (hits: number, misses: number, fails: number) => void {
    const label = this.label(backend)
    let cells: BackendCells | undefined
    return (hits, misses, fails) => {
      try {
        cells ??= this.cells(label)
        bump(cells, hits, misses, fails)
      } catch (err) {
        this.faults.report(err)
      }
    }
  }

  reportFault (err: unknown): void {
    this.faults.report(err)
  }

  private label (backend: unknown): string {
    return typeof backend === 'string' && backend !== '' ? backend : this.defaultBackend
  }

  private cells (backend: string): BackendCells {
    const found = this.byBackend.get(backend)
    if (found !== undefined) return found
    const cells = { get: this.get.cell(backend), hits: this.hits.cell(backend), misses: this.misses.cell(backend), fail: this.fail.cell(backend) }
    // Past the cardinality limit the families hand out their overflow cells; do not remember every stray label.
    if (this.byBackend.size < this.limit) this.byBackend.set(backend, cells)
    return cells
  }
}

/**
 * Every registered plugin instance with cache metrics on: module-level recording reaches all
 * of them. On globalThis so that the CommonJS and ESM entries (or two copies) share it.
 */
const INSTANCES = Symbol.for('upstream-metrics.cache-instances')
const instances: Set<CacheMetrics> = ((globalThis as Record<symbol, unknown>)[INSTANCES] ??= new Set<CacheMetrics>()) as Set<CacheMetrics>

export function addInstance (metrics: CacheMetrics): () => void {
  instances.add(metrics)
  return () => { instances.delete(metrics) }
}

export function counterEverywhere (backend: string | undefined): (hits: number, misses: number, fails: number) => void {
  return (hits, misses, fails) => {
    for (const metrics of instances) metrics.record(backend, hits, misses, fails)
  }
}

export function recordOutcomeEverywhere (backend: string | undefined, outcome: CacheOutcome): void {
  for (const metrics of instances) recordOutcome(metrics, backend, outcome)
}

/** Records one get by hand; an invalid outcome is reported as a recording fault, never thrown. */
export function recordOutcome (metrics: CacheMetrics, backend: string | undefined, outcome: CacheOutcome): void {
  if (outcome === true || outcome === 'hit') metrics.record(backend, 1, 0, 0)
  else if (outcome === false || outcome === 'miss') metrics.record(backend, 0, 1, 0)
  else if (outcome === 'fail') metrics.record(backend, 0, 0, 1)
  else metrics.reportFault(new TypeError(`upstream-metrics: a cache get outcome is true, false, "hit", "miss" or "fail", not ${typeof outcome}`))
}
