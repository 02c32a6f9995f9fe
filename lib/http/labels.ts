import { djangoDatabaseError } from '../db/errors'
import { INVALID_METHOD, NO_TEMPLATE_NAME, SEMCONV_KNOWN_METHODS, SEMCONV_OTHER_METHOD, STANDARD_METHODS } from '../names'

const NODE_METHODS = new Set(['ACL', 'BIND', 'CHECKOUT', 'CONNECT', 'COPY', 'DELETE', 'GET', 'HEAD', 'LINK', 'LOCK', 'M-SEARCH', 'MERGE', 'MKACTIVITY', 'MKCALENDAR', 'MKCOL', 'MOVE', 'NOTIFY', 'OPTIONS', 'PATCH', 'POST', 'PROPFIND', 'PROPPATCH', 'PURGE', 'PUT', 'QUERY', 'REBIND', 'REPORT', 'SEARCH', 'SOURCE', 'SUBSCRIBE', 'TRACE', 'UNBIND', 'UNLINK', 'UNLOCK', 'UNSUBSCRIBE'])
const CHARSET_TOKEN = /^[A-Za-z0-9][A-Za-z0-9._:+-]{0,39}$/
const TEMPLATE_NAME = /^[\w./@:+-]{1,200}$/
const CLASS_NAME = /^[A-Za-z_$][\w$]{0,99}$/

/** django's cleaned `request.method` of the request counters: a standard method, else `<invalid method>`. */
export function cleanMethod (method: string): string {
  return (STANDARD_METHODS as readonly string[]).includes(method) ? method : INVALID_METHOD
}

/** django labels the latency histogram with the raw method; Node's parser bounds it to its known verbs. */
export function latencyMethod (method: string): string {
  return NODE_METHODS.has(method) ? method : INVALID_METHOD
}

/** `http.request.method`: a known method as is, else `_OTHER`. */
export function semconvMethod (method: string): string {
  return (SEMCONV_KNOWN_METHODS as readonly string[]).includes(method) ? method : SEMCONV_OTHER_METHOD
}

const charsets = new Map<string, string>()

/** django's `response.charset`: the Content-Type's charset as spelled there, `utf-8` when none is given. */
export function charsetOf (contentType: unknown): string {
  if (typeof contentType !== 'string') return 'utf-8'
  let charset = charsets.get(contentType)
  if (charset === undefined) {
    const match = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)
    const value = match === null ? 'utf-8' : match[1]!
    charset = CHARSET_TOKEN.test(value) ? value : 'other'
    if (charsets.size < 512) charsets.set(contentType, charset)
  }
  return charset
}

/** django's `str(response.template_name)`: the name given to `reply.view`, `None` for a template given as code. */
export function templateName (page: unknown): string {
  if (typeof page !== 'string') return NO_TEMPLATE_NAME
  return TEMPLATE_NAME.test(page) ? page : 'other'
}

/**
 * django's `type(exception).__name__`: the thrown value's class name as JavaScript reports it
 * (`error.constructor.name`): `TypeError`, `FastifyError`, `String` for a thrown string. An anonymous
 * or non-identifier class takes the nearest named class it extends; `null` and `undefined` are themselves.
 * An error PostgreSQL sent is Django's wrapper class for it (`IntegrityError` for a duplicate key), as
 * Django re-raises psycopg2's exception out of every query.
 */
export function exceptionType (error: unknown): string {
  if (error === null || error === undefined) return String(error)
  const database = djangoDatabaseError(error)
  if (database !== undefined) return database
  const name = (error as { constructor?: { name?: unknown } }).constructor?.name
  if (typeof name === 'string' && CLASS_NAME.test(name)) return name
  try {
    for (let proto = Object.getPrototypeOf(Object(error)); proto !== null; proto = Object.getPrototypeOf(proto)) {
      const inherited = Object.hasOwn(proto, 'constructor') ? (proto as { constructor?: { name?: unknown } }).constructor?.name : undefined
      if (typeof inherited === 'string' && CLASS_NAME.test(inherited)) return inherited
    }
  } catch {}
  return 'Object'
}
