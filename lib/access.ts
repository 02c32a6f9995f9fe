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

export type AccessCheck = (request: FastifyRequest, reply: FastifyReply) => Promise<boolean>

/** Returns a check that answers 401/403 itself and resolves false when the scrape is refused. */
export function accessCheck (auth: MetricsAuthOptions | undefined): AccessCheck | undefined {
  if (auth === undefined) return undefined
  const bearer = auth.bearerToken === undefined ? undefined : digest(auth.bearerToken)
  const basic = auth.basic === undefined ? undefined : digest(`${auth.basic.username}:${auth.basic.password}`)
  const check = auth.check
  const challenge = [basic && 'Basic realm="metrics", charset="UTF-8"', bearer && 'Bearer realm="metrics"'].filter(Boolean).join(', ')

  return async function checkAccess (request, reply) {
    const header = request.headers.authorization
    if (typeof header === 'string') {
      const space = header.indexOf(' ')
      const scheme = header.slice(0, space).toLowerCase()
      const credentials = header.slice(space + 1).trim()
      if (bearer !== undefined && scheme === 'bearer' && safeEqual(credentials, bearer)) return true
      if (basic !== undefined && scheme === 'basic' && safeEqual(Buffer.from(credentials, 'base64').toString('utf8'), basic)) return true
    }
    if (check !== undefined && await check(request) === true) return true
    if (challenge !== '') {
      reply.code(401).header('www-authenticate', challenge).type('text/plain; charset=utf-8').send('Unauthorized\n')
    } else {
      reply.code(403).type('text/plain; charset=utf-8').send('Forbidden\n')
    }
    return false
  }
}
