// The demo's cache: Redis (ioredis) when a URL is given, else an in-process LRU cache.
// Values are JSON; keys live under the um_demo: prefix so the demo can share a Redis.
import Redis from 'ioredis'
import { LRUCache } from 'lru-cache'

/** ioredis reads are measured automatically; the in-process cache is wrapped with the plugin's cache metrics. */
export function createCache (redisUrl, cacheMetrics) {
  if (redisUrl !== undefined && redisUrl !== '') {
    const redis = new Redis(redisUrl, { keyPrefix: 'um_demo:', maxRetriesPerRequest: 2 })
    return {
      backend: 'redis',
      async get (key) {
        const text = await redis.get(key)
        return text === null ? undefined : JSON.parse(text)
      },
      async set (key, value, ttlSeconds) {
        await redis.set(key, JSON.stringify(value), 'EX', ttlSeconds)
      },
      async close () {
        await redis.quit()
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
