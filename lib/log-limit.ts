/** A clock in milliseconds; tests pass a fake one. */
export type Clock = () => number

/**
 * The one rate limiter for log lines: per key, at most one line per interval. `admit` answers
 * how many lines of that key were held back since the last one let through (0 or more), or
 * `false` while the key's interval runs. Keys beyond `maxKeys` share one slot, so memory stays bounded.
 */
export class LogLimiter {
  private readonly last = new Map<string, { at: number, held: number }>()

  constructor (
    private readonly intervalMs: number,
    private readonly now: Clock = Date.now,
    private readonly maxKeys = 1000
  ) {}

  admit (key = ''): number | false {
    const slot = this.last.has(key) || this.last.size < this.maxKeys ? key : '\u0000overflow'
    const now = this.now()
    const entry = this.last.get(slot)
    if (entry === undefined) {
      this.last.set(slot, { at: now, held: 0 })
      return 0
    }
    if (now - entry.at < this.intervalMs) {
      entry.held++
      return false
    }
    const held = entry.held
    entry.at = now
    entry.held = 0
    return held
  }
}
