/** Where a wrapped cache's gets are counted: one plugin instance, or every registered one. */
export type CacheRecorder = (backend: string | undefined, hits: number, misses: number, fails: number) => void

export interface InstrumentCacheOptions {
  /**
   * The `backend` label of this cache's series. Unset: the plugin's `cache.backend` option.
   * @default 'locmem'
   */
  backend?: string
  /**
   * Whether a value returned by `get` means "not in the cache". Values that are present
   * but falsy (`0`, `''`, `false`, `null`) are hits by default, as in django-prometheus.
   * @default (value) => value === undefined
   */
  isMiss?: (value: unknown) => boolean
}

/** Methods counted as gets; the `Many` ones count each key, like django-prometheus counts each `get`. */
const SINGLE = new Set<PropertyKey>(['get', 'getRaw'])
const MANY = new Set<PropertyKey>(['getMany', 'getManyRaw'])

const isUndefined = (value: unknown): boolean => value === undefined

interface Bound {
  readonly original: Function
  readonly bound: Function
}

/**
 * Wraps any cache with a `get` (lru-cache, Map, Keyv, cache-manager…) in a Proxy that counts
 * hits, misses and failures of `get` (and `getMany`/`getRaw`/`getManyRaw` where they exist).
 * Everything else is forwarded to the cache itself, so private fields and internal calls keep
 * working and are not counted; results, thrown errors and rejections are passed through unchanged.
 */
export function wrapCache<T extends object> (cache: T, record: CacheRecorder, options: InstrumentCacheOptions = {}): T {
  if (cache === null || (typeof cache !== 'object' && typeof cache !== 'function')) {
    throw new TypeError('upstream-metrics: instrumentCache() needs a cache object with a get method')
  }
  const backend = options.backend
  const isMiss = typeof options.isMiss === 'function' ? options.isMiss : isUndefined
  const target = cache as Record<PropertyKey, unknown>
  const methods = new Map<PropertyKey, Bound>()

  function count (value: unknown, many: boolean): void {
    const values = many && Array.isArray(value) ? value : [value]
    let misses = 0
    try {
      for (const item of values) if (isMiss(item)) misses++
    } catch {
      // A throwing isMiss is the app's bug: the get returned a value, the rest count as hits.
    }
    record(backend, values.length - misses, misses, 0)
  }

  function fail (args: unknown[], many: boolean): void {
    const keys = many && Array.isArray(args[0]) ? args[0].length : 1
    record(backend, 0, 0, keys)
  }

  function measure (original: Function, name: PropertyKey): Function {
    return function measuredGet (this: unknown, ...args: unknown[]): unknown {
      // Keyv's get(keys[]) is its getMany.
      const many = MANY.has(name) || (Array.isArray(args[0]) && typeof target.getMany === 'function')
      let result: unknown
      try {
        result = original.apply(cache, args)
      } catch (err) {
        fail(args, many)
        throw err
      }
      if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
        return (result as PromiseLike<unknown>).then(
          (value) => { count(value, many); return value },
          (err: unknown) => { fail(args, many); throw err }
        )
      }
      count(result, many)
      return result
    }
  }

  // Methods run on the cache itself (private fields, internal calls); one returning the cache (`set` of Map and lru-cache) returns the wrapper.
  function forward (original: Function): Function {
    return function forwarded (this: unknown, ...args: unknown[]): unknown {
      const result = original.apply(cache, args)
      return result === cache ? proxy : result
    }
  }

  const proxy: T = new Proxy(cache, {
    get (t, property) {
      const value = Reflect.get(t, property, t)
      if (typeof value !== 'function' || property === 'constructor') return value
      const known = methods.get(property)
      if (known !== undefined && known.original === value) return known.bound
      const bound = SINGLE.has(property) || MANY.has(property) ? measure(value, property) : forward(value)
      methods.set(property, { original: value, bound })
      return bound
    },
    set (t, property, value) {
      return Reflect.set(t, property, value, t)
    }
  })
  return proxy
}
