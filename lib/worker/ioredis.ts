import type IORedis from 'ioredis'
import { MissingPeerError, PeerVersionError } from '../errors'

export type IORedisClass = typeof IORedis

/**
 * ioredis is an optional peer dependency: only the worker metrics need it, so it is loaded when
 * they start, never when the plugin loads (the cache metrics patch whatever copy the app loads
 * itself, ioredis 4 included, which is why the peer range is wider than what the worker needs).
 * `feature` names what needs it in the error when it is missing or too old.
 */
export function loadIoredis (feature: string): IORedisClass {
  let loaded: IORedisClass
  try {
    loaded = require('ioredis') as IORedisClass
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    // Only ioredis itself missing; a broken install of it (one of its own files or dependencies) is its own error.
    if (e.code === 'MODULE_NOT_FOUND' && e.message.startsWith("Cannot find module 'ioredis'")) throw new MissingPeerError(feature, 'ioredis')
    throw err
  }
  const version = (require('ioredis/package.json') as { version?: unknown }).version
  if (typeof version === 'string' && Number(version.split('.')[0]) < 5) throw new PeerVersionError(feature, 'ioredis 5 or 6', version)
  return loaded
}
