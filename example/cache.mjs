// The demo's cache: Redis (ioredis) when a URL is given, else an in-process LRU cache.
// Values are JSON; keys live under the um_demo: prefix so the demo can share a Redis.
import Redis from 'ioredis'
import { LRUCache } from 'lru-cache'

export function createCache (redisUrl) {
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

  // [merge] cache metrics: wrap `lru` with the plugin's in-process cache wrapper here, so
  // django_cache_* counts this backend too (ioredis is measured automatically).
  const lru = new LRUCache({ max: 1000 })
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
