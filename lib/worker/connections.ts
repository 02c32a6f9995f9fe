import type { Redis } from 'ioredis'
import type { IORedisClass } from './ioredis'

export interface ConnectionOptions {
  IORedis: IORedisClass
  broker: string
  prefix: string
  commandTimeoutMs?: number | undefined
}

export interface ConnectionEvents {
  /** A warning worth one log line per kind (the caller limits them). */
  warn: (kind: string, err: unknown, msg: string) => void
  /** A connection closed while open: what happened meanwhile must be checked. */
  closed: () => void
  /** The command connection was replaced (it had stopped answering). */
  replaced: () => void
}

/**
 * The collector's two Redis connections: a command connection for every read that answers at once,
 * and a blocking one for the XREAD that waits for new events. A command connection that stops
 * answering is replaced (the watchdog, `replaceIfHung`), so readers take `command` afresh each time.
 */
export class BrokerConnections {
  private current: Redis
  readonly blocking: Redis
  private open = false

  constructor (private readonly options: ConnectionOptions, private readonly events: ConnectionEvents) {
    this.current = this.commandConnection()
    // The blocking reader waits through outages; ioredis re-sends its pending XREAD on reconnect.
    this.blocking = this.watched(new options.IORedis(options.broker, { ...this.common(), maxRetriesPerRequest: null }))
  }

  get command (): Redis {
    return this.current
  }

  connect (): void {
    this.open = true
    this.current.connect().catch(() => {})
    this.blocking.connect().catch(() => {})
  }

  /** Disconnects both; resolves once each connection that had a socket has ended (not bounded). */
  async disconnect (): Promise<void> {
    this.open = false
    const clients = [this.blocking, this.current]
    // Only a connection with a socket has something to end (a reconnecting one has its timer
    // cleared by disconnect and never emits 'end'). Not events.once: it rejects on an 'error'.
    const ended = clients.map(async (c) => {
      if (['connecting', 'connect', 'ready'].includes(c.status)) await new Promise((resolve) => c.once('end', resolve))
    })
    for (const c of clients) c.disconnect()
    await Promise.all(ended)
  }

  /**
   * A command that timed out went to a connection that stopped answering without closing (a
   * half-open TCP connection): ioredis would wait on it for good, so it is replaced by a new one.
   */
  replaceIfHung (err: unknown): void {
    if (!/Command timed out/.test((err as Error)?.message ?? '') || !this.open) return
    this.events.warn('hung', undefined, 'upstream-metrics-worker: the Redis command connection stopped answering; replacing it')
    const hung = this.current
    this.current = this.commandConnection()
    hung.disconnect()
    this.current.connect().catch(() => {})
    this.events.replaced()
  }

  private common (): Record<string, unknown> {
    // RESP2, as ioredis 5 speaks: ioredis 6 defaults to RESP3, where a raw XREAD answers a map
    // ([key, entries, …] flattened) instead of [[key, entries], …]. ioredis 5 ignores the option.
    return { connectionName: `upstream-metrics-worker:${this.options.prefix}`, lazyConnect: true, protocol: 2 }
  }

  /** Scrape-time reads fail fast while Redis is away (the scrape serves the last values); a hung one times out. */
  private commandConnection (): Redis {
    return this.watched(new this.options.IORedis(this.options.broker, {
      ...this.common(), enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: this.options.commandTimeoutMs ?? 5000
    }))
  }

  private watched (client: Redis): Redis {
    // After disconnect() a connection still being set up fails on its own: nothing to report (the listener stays, so the error is not unhandled).
    client.on('error', (err: Error) => { if (this.open) this.events.warn('connection', err, 'upstream-metrics-worker: Redis connection error; retrying') })
    client.on('close', () => { if (this.open) this.events.closed() })
    return client
  }
}
