/**
 * How option and usage errors show the value they refuse. Options can hold secrets (tokens,
 * passwords, URLs with credentials), and an error ends up in logs and crash reports: a value
 * is printed only when it cannot be one.
 */

/** The kind of a value, never the value: for options that may hold a secret (auth, unknown keys). */
export function kind (value: unknown): string {
  if (value === null || value === undefined) return String(value)
  if (Array.isArray(value)) return `an array of ${value.length}`
  const type = typeof value
  return type === 'object' ? 'an object' : `a${/^[aeiou]/.test(type) ? 'n' : ''} ${type}`
}

/** Numbers, booleans, null and undefined as they are; anything else by its kind. */
export function describe (value: unknown): string {
  if (value === null || typeof value === 'number' || typeof value === 'boolean' || value === undefined) return String(value)
  return kind(value)
}

/**
 * A URL with its credentials, query and fragment hidden: `redis://***:***@host:6379/0`; undefined when not a URL.
 * The user part is hidden too: it often is the credential itself (`https://TOKEN@host`).
 */
export function redactUrl (value: string): string | undefined {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return undefined
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return undefined
  }
  const credentials = url.username === '' && url.password === '' ? '' : `${url.username === '' ? '' : '***'}${url.password === '' ? '' : ':***'}@`
  return `${url.protocol}//${credentials}${url.host}${url.pathname === '/' && !value.endsWith('/') ? '' : url.pathname}${url.search === '' ? '' : '?…'}${url.hash === '' ? '' : '#…'}`
}

/**
 * For options whose values are names, never secrets (a path, a label, a queue): the value itself,
 * quoted and cut at 100 characters, with a URL's credentials hidden should one be given by mistake.
 */
export function show (value: unknown): string {
  if (typeof value !== 'string') return describe(value)
  const shown = redactUrl(value) ?? value
  return JSON.stringify(shown.length > 100 ? `${shown.slice(0, 100)}…` : shown)
}

/** For URL options (a broker, an endpoint): the URL without its credentials, or the kind of a value that is not one. */
export function showUrl (value: unknown): string {
  if (typeof value !== 'string') return kind(value)
  return redactUrl(value) ?? 'a string that is not a URL'
}
