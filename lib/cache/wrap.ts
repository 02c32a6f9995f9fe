/** Counts gets of one wrapped cache: into one plugin instance, or every registered one. */
export type CacheCounter = (hits: number, misses: number, fails: number) => void

export interface InstrumentCacheOptions {
  /**
   * The `backend` label of this cache's series. Unset: the plugin's `cache.backend` option.
   * @default 'locmem'
   */
  backend?: string | undefined
  /**
   * Whether a value returned by `get` means "not in the cache". Values that are present
   * but falsy (`0`, `''`, `false`, `null`) are hits by default, as in django-prometheus.
   * @default (value) => value === undefined
   */
  isMiss?: ((value: unknown) => boolean) | undefined
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
export function wrapCache<T extends object> (cache: T, counter: CacheCounter, options: InstrumentCacheOptions = {}): T {
  if (cache === null || (typeof cache !== 'object' && typeof cache !== 'function')) {
    throw new TypeError('upstream-metrics: instrumentCache() needs a cache object with a get method')
  }
  const isMiss = typeof options.isMiss === 'function' ? options.isMiss : isUndefined
  const target = cache as Record<PropertyKey, unknown>
  const methods = new Map<PropertyKey, Bound>()

  function missed (value: unknown): boolean {
    try {
      return isMiss(value)
    } catch {
      // A throwing isMiss is the app's bug: the get returned a value, it counts as a hit.
      return false
    }
  }

  function count (value: unknown, many: boolean): void {
    if (many && Array.isArray(value)) {
      let misses = 0
      for (const item of value) if (missed(item)) misses++
      counter(value.length - misses, misses, 0)
    } else if (missed(value)) counter(0, 1, 0)
    else counter(1, 0, 0)
  }

  function fail (key: unknown, many: boolean): void {
    counter(0, 0, many && Array.isArray(key) ? key.length : 1)
  }

  function measure (original: Function, name: PropertyKey): Function {
    const alwaysMany = MANY.has(name)
    return function measuredGet (this: unknown): unknown {
      const key: unknown = arguments[0]
      // Keyv's get(keys[]) is its getMany.
      const many = alwaysMany || (Array.isArray(key) && typeof target.getMany === 'function')
      let result: unknown
      try {
        result = arguments.length === 1 ? original.call(cache, key) : Reflect.apply(original, cache, arguments)
      } catch (err) {
        fail(key, many)
        throw err
      }
      if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
        return (result as PromiseLike<unknown>).then(
          (value) => { count(value, many); return value },
          (err: unknown) => { fail(key, many); throw err }
        )
      }
      count(result, many)
      return result
    }
  }

  // Methods run on the cache itself (private fields, internal calls); one returning the cache (`set` of Map and lru-cache) returns the wrapper.
  function forward (original: Function): Function {
    return function forwarded (this: unknown): unknown {
      const result = Reflect.apply(original, cache, arguments)
      return result === cache ? proxy : result
    }
  }

  const proxy: T = new Proxy(cache, {
    get (t, property) {
      const value = Reflect.get(t, property, t)
      if (typeof value !== 'function' || property === 'constructor') return value
      const known = methods.get(property)
      if (known !== undefined && known.original === value) return known.bound
      // A frozen own method must be returned as it is (a Proxy invariant): such a get is not counted.
      const own = Reflect.getOwnPropertyDescriptor(t, property)
      const frozen = own !== undefined && own.configurable === false && own.writable === false
      const bound = frozen ? value : SINGLE.has(property) || MANY.has(property) ? measure(value, property) : forward(value)
      methods.set(property, { original: value, bound })
      return bound
    },
    set (t, property, value) {
      return Reflect.set(t, property, value, t)
    }
  })
  return proxy
}
