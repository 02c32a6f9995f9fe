/** A clock in milliseconds; tests pass a fake one. */
export type Clock = () => number

/**
 * The one rate limiter for log lines: per key, at most `perInterval` lines per interval (one by
 * default). `admit` answers how many lines of that key were held back since the last one let
 * through (0 or more), or `false` while the key's quota for the interval is spent. Keys beyond
 * `maxKeys` share one slot, so memory stays bounded.
 */
export class LogLimiter {
  private readonly last = new Map<string, { at: number, lines: number, held: number }>()

  constructor (
    private readonly intervalMs: number,
    private readonly now: Clock = Date.now,
    private readonly maxKeys = 1000,
    private readonly perInterval = 1
  ) {}

  admit (key = ''): number | false {
    const slot = this.last.has(key) || this.last.size < this.maxKeys ? key : '\u0000overflow'
    const now = this.now()
    const entry = this.last.get(slot)
    if (entry === undefined) {
      this.last.set(slot, { at: now, lines: 1, held: 0 })
      return 0
    }
    if (now - entry.at >= this.intervalMs) {
      entry.at = now
      entry.lines = 0
    }
    if (entry.lines >= this.perInterval) {
      entry.held++
      return false
    }
    entry.lines++
    const held = entry.held
    entry.held = 0
    return held
  }
}
