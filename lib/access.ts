import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { MetricsAuthOptions } from './types'

function digest (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/** Constant-time: both sides are hashed to the same length before comparing. */
function safeEqual (given: string, expected: Buffer): boolean {
  return timingSafeEqual(digest(given), expected)
}

/** Bearer and basic credentials, checkable on any request's `Authorization` header. */
export interface Credentials {
  readonly challenge: string
  accepts (authorization: string | undefined): boolean
}

export function credentials (auth: MetricsAuthOptions | undefined): Credentials | undefined {
  if (auth === undefined || (auth.bearerToken === undefined && auth.basic === undefined)) return undefined
  const bearer = auth.bearerToken === undefined ? undefined : digest(auth.bearerToken)
  const basic = auth.basic === undefined ? undefined : digest(`${auth.basic.username}:${auth.basic.password}`)
  return {
    challenge: [basic && 'Basic realm="metrics", charset="UTF-8"', bearer && 'Bearer realm="metrics"'].filter(Boolean).join(', '),
    accepts (authorization) {
      if (typeof authorization !== 'string') return false
      const space = authorization.indexOf(' ')
      const scheme = authorization.slice(0, space).toLowerCase()
      const given = authorization.slice(space + 1).trim()
      if (bearer !== undefined && scheme === 'bearer' && safeEqual(given, bearer)) return true
      return basic !== undefined && scheme === 'basic' && safeEqual(Buffer.from(given, 'base64').toString('utf8'), basic)
    }
  }
}

export type AccessCheck = (request: FastifyRequest, reply: FastifyReply) => Promise<boolean>

/**
 * Returns a check that answers 401/403 itself and resolves false when the scrape is refused.
 * An `auth.check` that throws or rejects refuses the scrape with a plain 500: its error goes to
 * the app's log only, never to the scraper (it may name a token, a host, a query).
 */
export function accessCheck (auth: MetricsAuthOptions | undefined): AccessCheck | undefined {
  if (auth === undefined) return undefined
  const creds = credentials(auth)
  const check = auth.check
  return async function checkAccess (request, reply) {
    if (creds?.accepts(request.headers.authorization) === true) return true
    if (check !== undefined) {
      let admitted: boolean
      try {
        admitted = await check(request) === true
      } catch (err) {
        request.log.error({ err }, 'upstream-metrics: auth.check failed; the scrape is refused')
        reply.code(500).type('text/plain; charset=utf-8').send('Internal Server Error\n')
        return false
      }
      if (admitted) return true
    }
    if (creds !== undefined) {
      reply.code(401).header('www-authenticate', creds.challenge).type('text/plain; charset=utf-8').send('Unauthorized\n')
    } else {
      reply.code(403).type('text/plain; charset=utf-8').send('Forbidden\n')
    }
    return false
  }
}
