// The demo's Redis: REDIS_URL when set, else a Redis answering on localhost. Connection errors
// are logged (rate-limited) instead of surfacing as ioredis' "Unhandled error event".
import Redis from 'ioredis'

export const LOCAL_REDIS_URL = 'redis://127.0.0.1:6379/0'
const ERROR_LOG_INTERVAL_MS = 10_000

/** The URL with its password replaced, fit for a log line. */
export function redactUrl (url) {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return '<unparseable URL>'
  }
}

/**
 * Which Redis the demo uses: `REDIS_URL` (set but empty: none), else the local one if it answers
 * a PING within a second.
 * @returns {Promise<{ url: string, source: 'REDIS_URL' | 'localhost' } | undefined>}
 */
export async function findRedis (env = process.env) {
  if (env.REDIS_URL !== undefined) return env.REDIS_URL === '' ? undefined : { url: env.REDIS_URL, source: 'REDIS_URL' }
  const probe = new Redis(LOCAL_REDIS_URL, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
  probe.on('error', () => {})
  try {
    await probe.connect()
    await probe.ping()
    return { url: LOCAL_REDIS_URL, source: 'localhost' }
  } catch {
    return undefined
  } finally {
    probe.disconnect()
  }
}

/** `log`, called at most once every 10 s: the demo's Redis clients share one, so an outage is one line per interval. */
export function rateLimited (log, intervalMs = ERROR_LOG_INTERVAL_MS) {
  let last = -Infinity
  return (message) => {
    const now = Date.now()
    if (now - last < intervalMs) return
    last = now
    log(message)
  }
}

/**
 * An ioredis client that reports its connection errors to `log` (give it a `rateLimited` one) and
 * keeps reconnecting (ioredis' default).
 * @param {(message: string) => void} log
 */
export function redisClient (url, options, log) {
  const client = new Redis(url, options)
  client.on('error', (err) => log(`Redis at ${redactUrl(url)} unavailable (${err.message}); retrying`))
  return client
}
