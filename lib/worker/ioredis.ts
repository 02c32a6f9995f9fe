import type IORedis from 'ioredis'
import { PeerVersionError } from '../errors'
import { requirePeer } from '../peer'

export type IORedisClass = typeof IORedis

/**
 * ioredis is an optional peer dependency: only the worker metrics need it, so it is loaded when
 * they start, never when the plugin loads (the cache metrics patch whatever copy the app loads
 * itself, ioredis 4 included, which is why the peer range is wider than what the worker needs).
 * `feature` names what needs it in the error when it is missing or too old.
 */
export function loadIoredis (feature: string): IORedisClass {
  const loaded = requirePeer(() => require('ioredis') as IORedisClass, feature, 'ioredis')
  const version = (require('ioredis/package.json') as { version?: unknown }).version
  if (typeof version === 'string' && Number(version.split('.')[0]) < 5) throw new PeerVersionError(feature, 'ioredis 5 or 6', version)
  return loaded
}
