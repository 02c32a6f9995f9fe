import { isWrapped, type InstrumentationModuleDefinition, type InstrumentationModuleFile } from '@opentelemetry/instrumentation'

type Method = (this: unknown, ...args: unknown[]) => unknown
type Patchable = Pick<InstrumentationModuleDefinition | InstrumentationModuleFile, 'patch' | 'unpatch'>

function candidates (exports: unknown): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = []
  const add = (value: unknown): void => {
    if ((typeof value === 'object' || typeof value === 'function') && value !== null && !out.includes(value as Record<string, unknown>)) out.push(value as Record<string, unknown>)
  }
  const root = exports as { default?: { prototype?: unknown }, prototype?: unknown } | undefined
  add(root)
  add(root?.prototype)
  add(root?.default)
  add(root?.default?.prototype)
  return out
}

/** Set while one of our own unpatches runs: only then may our wrappers' `__unwrap` remove them. */
let unpatching = false
const kKept = Symbol('upstream-metrics.kept-beneath')

/**
 * The other direction: an app's own instrumentation set up later (an SDK started after
 * `register`) unwraps ours before wrapping, and the cache series would silently stop. Our
 * wrappers' `__unwrap` ignores a foreign call, so theirs goes on top and ours stays beneath.
 */
function keepBeneath (exports: unknown): void {
  for (const holder of candidates(exports)) {
    for (const name of Object.getOwnPropertyNames(holder)) {
      const fn = Object.getOwnPropertyDescriptor(holder, name)?.value as (Method & { [kKept]?: true, __unwrap?: Method }) | undefined
      if (typeof fn !== 'function' || !isWrapped(fn) || fn[kKept] === true) continue
      const unwrap = fn.__unwrap!
      Object.defineProperty(fn, '__unwrap', { configurable: true, writable: true, value: function (this: unknown) { return unpatching ? Reflect.apply(unwrap, this, arguments) : undefined } })
      Object.defineProperty(fn, kKept, { value: true })
    }
  }
}

/**
 * OpenTelemetry's Redis instrumentations unwrap whatever already wraps the functions they
 * patch: an app tracing Redis with its own instrumentation would silently lose its spans once
 * the plugin patches. Before each patch, every foreign wrapper (a function marked by shimmer)
 * on the exports, their default export and prototypes is hidden behind a plain forwarding
 * function, so it stays in the chain under ours; unpatching puts it back. After it, ours are
 * kept beneath any later foreign wrapper (keepBeneath).
 */
export function preserveForeignWrappers (target: Patchable): void {
  const patch = target.patch
  const unpatch = target.unpatch
  if (typeof patch !== 'function') return
  const hidden = new WeakMap<object, Array<{ holder: Record<string, unknown>, name: string, foreign: Method, forwarder: Method }>>()
  target.patch = function (this: unknown, exports: unknown, version?: string) {
    if (exports !== null && (typeof exports === 'object' || typeof exports === 'function') && !hidden.has(exports)) {
      const saved = []
      for (const holder of candidates(exports)) {
        for (const name of Object.getOwnPropertyNames(holder)) {
          const descriptor = Object.getOwnPropertyDescriptor(holder, name)
          const foreign = descriptor?.value as unknown
          if (typeof foreign !== 'function' || !isWrapped(foreign) || descriptor?.writable !== true) continue
          const wrapped = foreign as unknown as Method
          const forwarder: Method = function (this: unknown) { return Reflect.apply(wrapped, this, arguments) }
          holder[name] = forwarder
          saved.push({ holder, name, foreign: wrapped, forwarder })
        }
      }
      hidden.set(exports, saved)
    }
    const patched = patch.call(target, exports, version) as unknown
    keepBeneath(exports)
    return patched
  } as typeof patch
  target.unpatch = function (this: unknown, exports: unknown, version?: string) {
    unpatching = true
    try {
      unpatch?.call(target, exports, version)
    } finally {
      unpatching = false
    }
    if (exports === null || (typeof exports !== 'object' && typeof exports !== 'function')) return
    for (const { holder, name, foreign, forwarder } of hidden.get(exports) ?? []) {
      if (holder[name] === forwarder) holder[name] = foreign
    }
    hidden.delete(exports)
  }
}
