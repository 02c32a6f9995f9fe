/** Checks shared by the command line and the plugin's `worker` option; each returns a problem or undefined. */

export function validateBroker (value: unknown): string | undefined {
  if (typeof value !== 'string') return 'the broker must be a redis:// or rediss:// URL'
  try {
    const url = new URL(value)
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return `the broker must be a redis:// or rediss:// URL; got ${url.protocol}//…`
    if (url.pathname !== '' && url.pathname !== '/' && !/^\/\d+$/.test(url.pathname)) return 'the broker URL path must be a database number, as /0'
  } catch {
    return 'the broker must be a redis:// or rediss:// URL'
  }
  return undefined
}

export function validateQueue (value: unknown): string | undefined {
  if (typeof value !== 'string' || value === '' || value.includes(':')) return `a queue must be a non-empty BullMQ queue name without ":"; got ${JSON.stringify(value)}`
  return undefined
}

export function validatePrefix (value: unknown): string | undefined {
  if (typeof value !== 'string' || value === '') return `the prefix must be a non-empty string; got ${JSON.stringify(value)}`
  return undefined
}

/** `host:port` as the Celery exporter's `--addr`; `[::1]:9000` for IPv6. */
export function parseAddr (value: string): { host: string, port: number } | string {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value)
  const port = match === null ? NaN : Number(match[3])
  if (match === null || port > 65535) return `--addr must be HOST:PORT (port 0 to 65535); got ${JSON.stringify(value)}`
  return { host: match[1] ?? (match[2] === '' ? '0.0.0.0' : match[2]!), port }
}
