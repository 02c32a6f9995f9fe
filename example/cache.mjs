// The demo's cache: Redis (ioredis) when a URL is given, else an in-process LRU cache.
// Values are JSON; keys live under the um_demo: prefix so the demo can share a Redis.
import { LRUCache } from 'lru-cache'
import { redisClient } from './redis.mjs'

/**
 * ioredis reads are measured automatically; the in-process cache is wrapped with the plugin's cache metrics.
 * A Redis that is away makes a read a miss (and a failure in `django_cache_get_fail_total`), not a 500.
 */
export function createCache (redisUrl, cacheMetrics, log) {
  if (redisUrl !== undefined && redisUrl !== '') {
    const redis = redisClient(redisUrl, { keyPrefix: 'um_demo:', maxRetriesPerRequest: 1, commandTimeout: 1000 }, log)
    return {
      backend: 'redis',
      async get (key) {
        const text = await redis.get(key).catch(() => null)
        return text === null ? undefined : JSON.parse(text)
      },
      async set (key, value, ttlSeconds) {
        await redis.set(key, JSON.stringify(value), 'EX', ttlSeconds).catch(() => {})
      },
      async close () {
        await redis.quit().catch(() => redis.disconnect())
      }
    }
  }

  const lru = cacheMetrics.wrap(new LRUCache({ max: 1000 }))
  return {
    backend: 'memory',
    async get (key) {
      return lru.get(key)
    },
    async set (key, value, ttlSeconds) {
      lru.set(key, value, { ttl: ttlSeconds * 1000 })
    },
    async close () {
      lru.clear()
    }
  }
}
