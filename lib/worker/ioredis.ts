import type IORedis from 'ioredis'
import { MissingPeerError } from '../errors'

export type IORedisClass = typeof IORedis

/**
 * ioredis is an optional peer dependency (5 or 6): only the worker metrics need it, so it is
 * loaded when they start, never when the plugin loads (the cache metrics patch whatever copy
 * the app loads itself). `feature` names what needs it in the error when it is missing.
 */
export function loadIoredis (feature: string): IORedisClass {
  try {
    return require('ioredis') as IORedisClass
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    // Only ioredis itself missing; a broken install of it (one of its own files or dependencies) is its own error.
    if (e.code === 'MODULE_NOT_FOUND' && e.message.startsWith("Cannot find module 'ioredis'")) throw new MissingPeerError(feature, 'ioredis')
    throw err
  }
}
