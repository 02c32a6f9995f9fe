/**
 * Wrapping a prototype's method shimmer-style (`__original`, `__unwrap`, `__wrapped`) on top of
 * whatever is there, and removing only our own wrapper.
 */

const kOurs = Symbol.for('upstream-metrics.pg-wrapper')
export type AnyFn = (...args: unknown[]) => unknown
export type Proto = Record<string, unknown>

function define (target: object, name: PropertyKey, value: unknown): void {
  Object.defineProperty(target, name, { configurable: true, writable: true, enumerable: false, value })
}

/**
 * Wraps `proto[name]` on top of whatever is there, without first unwrapping another
 * instrumentation's wrapper as the stock patch does: an app's own OpenTelemetry pg tracing,
 * set up first, keeps working. Set up later (an SDK started after `register`), the stock patch
 * unwraps ours before wrapping: that unwrap leaves ours in place, beneath it, so both keep
 * measuring; only unstack removes ours.
 */
export function stack (proto: Proto, name: string, wrapper: (original: AnyFn) => AnyFn): void {
  unstack(proto, name)
  const original = proto[name]
  // Ours under another wrapper (patched through pg's main module and its client file) is still live.
  if (typeof original !== 'function' || hasOurWrapper(original)) return
  const wrapped = wrapper(original as AnyFn)
  define(wrapped, '__original', original)
  define(wrapped, '__unwrap', () => {})
  define(wrapped, '__wrapped', true)
  define(wrapped, kOurs, true)
  define(proto, name, wrapped)
}

/** Removes our wrapper when it is on top (one stacked above ours stays, and ours goes idle). */
export function unstack (proto: Proto, name: string): void {
  const current = proto[name] as { [kOurs]?: boolean, __original?: unknown } | undefined
  if (current?.[kOurs] === true) define(proto, name, current.__original)
}

/** Whether our wrapper is anywhere in the chain of wrappers of `fn`. */
export function hasOurWrapper (fn: unknown): boolean {
  for (let f = fn as { [kOurs]?: boolean, __original?: unknown } | undefined, i = 0; f !== undefined && i < 10; f = f.__original as typeof f, i++) {
    if (f[kOurs] === true) return true
  }
  return false
}
