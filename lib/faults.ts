import type { FastifyBaseLogger } from 'fastify'

/**
 * A failure inside metric recording must never reach the request: it is swallowed and
 * logged at most once per interval, with the number of failures so far.
 */
export class Faults {
  count = 0
  private lastLogged = -Infinity

  constructor (private readonly log: FastifyBaseLogger, private readonly intervalMs = 60_000) {}

  report (err: unknown): void {
    this.count++
    const now = Date.now()
    if (now - this.lastLogged < this.intervalMs) return
    this.lastLogged = now
    try {
      this.log.error({ err, failures: this.count }, 'upstream-metrics: recording a metric failed; the request was not affected')
    } catch {}
  }
}
