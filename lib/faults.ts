import type { FastifyBaseLogger } from 'fastify'
import { LogLimiter, type Clock } from './log-limit'

/**
 * A failure inside metric recording must never reach the request (nor one in an app's
 * observable callback the rest of the scrape): it is swallowed and logged at most once
 * per interval, with the number of failures so far.
 */
export class Faults {
  count = 0
  private readonly limiter: LogLimiter

  constructor (
    private readonly log: FastifyBaseLogger,
    intervalMs = 60_000,
    private readonly message = 'recording a metric failed; the request was not affected',
    clock?: Clock
  ) {
    this.limiter = new LogLimiter(intervalMs, clock)
  }

  report (err: unknown): void {
    this.count++
    if (this.limiter.admit() === false) return
    try {
      this.log.error({ err, failures: this.count }, `upstream-metrics: ${this.message}`)
    } catch {}
  }
}

/**
 * Warnings about what the app records (a refused instrument, a renamed attribute key): each
 * distinct message once, and at most `perInterval` of them per interval, the rest counted.
 */
export class Warnings {
  private readonly seen = new Set<string>()
  private readonly limiter: LogLimiter

  constructor (
    private readonly log: FastifyBaseLogger,
    perInterval = 20,
    intervalMs = 60_000,
    private readonly maxDistinct = 1000,
    now: Clock = Date.now
  ) {
    this.limiter = new LogLimiter(intervalMs, now, 1, perInterval)
  }

  once (message: string): void {
    if (this.seen.has(message) || this.seen.size >= this.maxDistinct) return
    this.seen.add(message)
    const suppressed = this.limiter.admit()
    if (suppressed === false) return
    try {
      this.log.warn(suppressed > 0 ? { suppressed } : {}, `upstream-metrics: ${message}`)
    } catch {}
  }
}
