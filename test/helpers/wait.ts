import { setTimeout as sleep } from 'node:timers/promises'

export interface WaitOptions {
  /** The bound on the wait: a limit on hanging, never an assertion on speed. */
  readonly timeoutMs?: number
  readonly intervalMs?: number
  /** More to say when it times out (a process's output, the last reading). */
  readonly details?: () => string
}

/**
 * The one poll-until of the tests: calls `check` until it gives something other than undefined or
 * false, and returns that. A check that throws has not succeeded yet; its last error is in the
 * timeout's message. For a state reached through several processes (Prometheus, a Collector, a
 * child); in one process, wait on the event that proves it instead (`once(emitter, 'close')`, a deferred).
 */
export async function waitFor<T> (what: string, check: () => T | undefined | false | Promise<T | undefined | false>, options: WaitOptions = {}): Promise<T> {
  const { timeoutMs = 15_000, intervalMs = 50, details } = options
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) return value
    } catch (err) {
      lastError = err
    }
    if (Date.now() >= deadline) break
    await sleep(intervalMs)
  }
  const error = lastError === undefined ? '' : `\nlast error: ${lastError instanceof Error ? lastError.message : String(lastError)}`
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${error}${details === undefined ? '' : `\n${details()}`}`)
}

export interface Deferred<T> {
  readonly promise: Promise<T>
  readonly resolve: (value: T) => void
  readonly reject: (err: unknown) => void
}

/** A promise settled from outside: what a test waits on when the event that proves something is its own. */
export function deferred<T = void> (): Deferred<T> {
  let settle!: Pick<Deferred<T>, 'resolve' | 'reject'>
  const promise = new Promise<T>((resolve, reject) => { settle = { resolve, reject } })
  return { promise, ...settle }
}
