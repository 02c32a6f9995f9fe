import type { Faults } from '../faults'
import type { PatchLogger } from '../patch'
import type { Store } from '../store'
import { CacheMetrics, addInstance, counterEverywhere, recordOutcome, recordOutcomeEverywhere, type CacheOutcome } from './metrics'
import { countRedisGets } from './redis'
import { wrapCache, type InstrumentCacheOptions } from './wrap'

export type { CacheOutcome } from './metrics'
export type { InstrumentCacheOptions } from './wrap'

export interface ResolvedCacheOptions {
  readonly redis: boolean
  readonly redisBackend: string
  readonly backend: string
}

/** `fastify.upstreamMetrics.cache`: records into this plugin instance only. */
export interface UpstreamCacheMetrics {
  /**
   * Returns `cache` behind a Proxy that counts its gets (`get`, and `getMany`, `getRaw`,
   * `getManyRaw` where they exist) under `backend`. Same type, same results, same errors.
   */
  wrap: <T extends object>(cache: T, options?: InstrumentCacheOptions) => T
  /** Counts one get made by hand: `true`/`'hit'`, `false`/`'miss'` or `'fail'`. */
  record: (backend: string | undefined, outcome: CacheOutcome) => void
}

/**
 * Wraps `cache` so its gets are counted by every registered plugin instance (those
 * registered later too): convenient for caches created at module load, before the app.
 */
export function instrumentCache<T extends object> (cache: T, options?: InstrumentCacheOptions): T {
  return wrapCache(cache, counterEverywhere(options?.backend), options)
}

/** Counts one get in every registered plugin instance; `backend` unset means each instance's `cache.backend`. */
export function recordCacheGet (backend: string | undefined, outcome: CacheOutcome): void {
  recordOutcomeEverywhere(backend, outcome)
}

const passThrough: UpstreamCacheMetrics = {
  wrap: (cache) => cache,
  record: () => {}
}

/** Creates the cache series of one plugin instance and starts counting; the returned `stop` undoes it. */
export function startCacheMetrics (
  store: Store,
  options: ResolvedCacheOptions | false,
  faults: Faults,
  cardinalityLimit: number,
  log: PatchLogger
): { api: UpstreamCacheMetrics, stop: () => void } {
  if (options === false) return { api: passThrough, stop: () => {} }
  const metrics = new CacheMetrics(store, faults, options.backend, cardinalityLimit)
  const removeInstance = addInstance(metrics)
  // Metrics must not keep the app from starting: a patch that fails is logged as a fault.
  const stopRedis = options.redis ? countRedisGets(metrics, options.redisBackend, (err) => faults.report(err), log) : undefined
  return {
    api: {
      wrap: (cache, wrapOptions) => wrapCache(cache, metrics.counter(wrapOptions?.backend), wrapOptions),
      record: (backend, outcome) => recordOutcome(metrics, backend, outcome)
    },
    stop () {
      removeInstance()
      stopRedis?.()
    }
  }
}
