import { CACHE } from '../names'
import type { Faults } from '../faults'
import type { Cell, Family, Store } from '../store'

/** Outcome of one cache get: `true` hit, `false` miss, `'fail'` the call failed. */
export type CacheOutcome = boolean | 'hit' | 'miss' | 'fail'

interface CacheFamilies {
  readonly get: Family
  readonly hits: Family
  readonly misses: Family
  readonly fail: Family
}

/**
 * One backend's four series, each created at its first count as a prometheus_client child
 * at its first inc(): `get_fail` appears at the first failure, not at the first get.
 */
class BackendCells {
  private get: Cell | undefined
  private hits: Cell | undefined
  private misses: Cell | undefined
  private fail: Cell | undefined

  constructor (private readonly families: CacheFamilies, private readonly backend: string) {}

  bump (hits: number, misses: number, fails: number): void {
    const total = hits + misses + fails
    if (total !== 0) (this.get ??= this.families.get.cell(this.backend)).value += total
    if (hits !== 0) (this.hits ??= this.families.hits.cell(this.backend)).value += hits
    if (misses !== 0) (this.misses ??= this.families.misses.cell(this.backend)).value += misses
    if (fails !== 0) (this.fail ??= this.families.fail.cell(this.backend)).value += fails
  }
}

/** One plugin instance's cache series (django-prometheus's four counters, by `backend`). */
export class CacheMetrics {
  private readonly families: CacheFamilies
  private readonly byBackend = new Map<string, BackendCells>()

  constructor (
    store: Store,
    private readonly faults: Faults,
    /** `backend` label when the caller names none (in-process caches). */
    readonly defaultBackend: string,
    private readonly limit: number
  ) {
    this.families = {
      get: store.counter(CACHE.get),
      hits: store.counter(CACHE.hits),
      misses: store.counter(CACHE.misses),
      fail: store.counter(CACHE.fail)
    }
  }

  /** Counts gets; never throws. `get_total` is always hits + misses + fails. */
  record (backend: string | undefined, hits: number, misses: number, fails: number): void {
    try {
      this.cells(this.label(backend)).bump(hits, misses, fails)
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
        cells.bump(hits, misses, fails)
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
    const cells = new BackendCells(this.families, backend)
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
