import { show } from '../redact'

/**
 * Checks shared by the command line and the plugin's `worker` option; each returns a problem or
 * undefined. Values are shown through `show` (a URL typed in the wrong place loses its password).
 */

/** The problem says what is expected, never the URL (the caller shows it without its password). */
export function validateBroker (value: unknown): string | undefined {
  const expected = 'must be a redis:// or rediss:// URL'
  if (typeof value !== 'string') return expected
  try {
    const url = new URL(value)
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return `${expected}, not ${url.protocol}//`
    if (url.pathname !== '' && url.pathname !== '/' && !/^\/\d+$/.test(url.pathname)) return 'must have a database number as its path, as /0'
  } catch {
    return expected
  }
  return undefined
}

export function validateQueue (value: unknown): string | undefined {
  if (typeof value !== 'string' || value === '' || value.includes(':')) return `a queue must be a non-empty BullMQ queue name without ":"; got ${show(value)}`
  return undefined
}

export function validatePrefix (value: unknown): string | undefined {
  if (typeof value !== 'string' || value === '') return `the prefix must be a non-empty string; got ${show(value)}`
  return undefined
}

/** `host:port` as the Celery exporter's `--addr`; `[::1]:9000` for IPv6. */
export function parseAddr (value: string): { host: string, port: number } | string {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value)
  const port = match === null ? NaN : Number(match[3])
  if (match === null || port > 65535) return `--addr must be HOST:PORT (port 0 to 65535); got ${show(value)}`
  return { host: match[1] ?? (match[2] === '' ? '0.0.0.0' : match[2]!), port }
}
