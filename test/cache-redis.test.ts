import { createServer, type Socket } from 'node:net'
import { dirname, join } from 'node:path'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
// Loaded before the plugin registers, as apps do: the plugin must patch the loaded copy.
import Redis from 'ioredis'
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis'
import upstreamMetrics from '../lib/index'
import { patchRefs } from '../lib/patch'
import { ioredisAppDir } from './helpers/app-dir'
import { cacheCounts } from './helpers/metrics'
import { freePort as closedPort } from './helpers/net'

async function scrape (app: FastifyInstance): Promise<string> {
  return (await app.inject({ method: 'GET', url: '/metrics' })).body
}

const DB = 5
const P = 'um_cache:redis:'

async function app (options: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const fastify = Fastify()
  await fastify.register(upstreamMetrics, { runtimeMetrics: false, ...options })
  await fastify.ready()
  return fastify
}

type RedisClass = typeof Redis

async function exactCounts (t: Test, Redis: RedisClass, P: string): Promise<void> {
  const redis = new Redis({ host: '127.0.0.1', port: 6379, db: DB })
  const keys = [`${P}a`, `${P}empty`, `${P}zero`, `${P}missing`, `${P}hash`, `${P}other`]
  t.teardown(async () => { await redis.del(...keys); redis.disconnect() })
  await redis.del(...keys)
  // Writes before the plugin exists are not reads anyway.
  await redis.set(`${P}a`, 'A')
  await redis.set(`${P}empty`, '')
  await redis.set(`${P}zero`, '0')
  await redis.hset(`${P}hash`, 'f', '1')

  const fastify = await app()
  t.teardown(() => fastify.close())

  // Behaviour is unchanged: the replies are what ioredis always returns.
  t.equal(await redis.get(`${P}a`), 'A') // hit
  t.equal(await redis.get(`${P}missing`), null) // miss
  const buffer = await redis.getBuffer(`${P}empty`) // hit: present though empty
  t.ok(Buffer.isBuffer(buffer) && buffer.length === 0)
  t.equal(await redis.get(`${P}zero`), '0') // hit
  t.equal(await redis.call('GET', `${P}a`), 'A') // hit: the raw command is a get too
  t.same(await redis.mget(`${P}a`, `${P}missing`, `${P}zero`), ['A', null, '0']) // 2 hits, 1 miss
  t.same(await redis.pipeline().get(`${P}a`).get(`${P}missing`).set(`${P}other`, 'x').exec(), [[null, 'A'], [null, null], [null, 'OK']]) // 1 hit, 1 miss
  t.same(await redis.multi().get(`${P}a`).exec(), [[null, 'A']]) // not a cache get: a transaction
  await redis.set(`${P}a`, 'A') // not a get
  await t.rejects(redis.get(`${P}hash`), /WRONGTYPE/) // failure (error reply)

  // A client pointed at a closed loopback port: every read fails, and still rejects as before.
  const down = new Redis({ host: '127.0.0.1', port: await closedPort(), maxRetriesPerRequest: 0, retryStrategy: () => null })
  down.on('error', () => {})
  t.teardown(() => down.disconnect())
  await t.rejects(down.get(`${P}a`), /max retries|Connection is closed/) // 1 failure
  // The client has given up now: ioredis rejects inside sendCommand, before the instrumentation's hooks.
  await t.rejects(down.mget(`${P}a`, `${P}zero`), /Connection is closed/) // 2 failures: each key
  const noQueue = new Redis({ host: '127.0.0.1', port: await closedPort(), enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null })
  noQueue.on('error', () => {})
  t.teardown(() => noQueue.disconnect())
  await t.rejects(noQueue.get(`${P}a`), /enableOfflineQueue/) // 1 failure

  // A server that accepts and never answers: the read times out.
  const sockets = new Set<Socket>()
  const silent = createServer((socket) => { sockets.add(socket) })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const socket of sockets) socket.destroy(); silent.close() })
  const stuck = new Redis({ host: '127.0.0.1', port: (silent.address() as { port: number }).port, commandTimeout: 100, maxRetriesPerRequest: 0, retryStrategy: () => null })
  stuck.on('error', () => {})
  t.teardown(() => stuck.disconnect())
  await t.rejects(stuck.get(`${P}a`), /timed out/) // 1 failure

  t.same(cacheCounts(await scrape(fastify), 'redis'), { total: 16, hits: 7, misses: 3, fail: 6, guideHits: 7, guideMisses: 3 })
}

t.test('ioredis reads are counted with exact hit, miss and failure counts, under both names', async (t) => {
  await exactCounts(t, Redis, P)
})

t.test('ioredis 6: the same exact counts', async (t) => {
  // A real copy named node_modules/ioredis (the alias directory ioredis-6 is not "ioredis" to the instrumentation), loaded before the plugin.
  const copy = ioredisAppDir(dirname(require.resolve('ioredis-6/package.json')))
  t.teardown(copy.remove)
  const Redis6 = require(join(copy.dir, 'node_modules', 'ioredis')) as RedisClass
  t.equal((require(join(copy.dir, 'node_modules', 'ioredis', 'package.json')) as { version: string }).version, '6.0.0')
  await exactCounts(t, Redis6, `${P}v6:`)
})

t.test('GETs inside multi({ pipeline: false }) are not counted (Redis answers QUEUED), and reads after EXEC or DISCARD are', async (t) => {
  // Its own database and keys: other tests and helpers share this Redis.
  const redis = new Redis({ host: '127.0.0.1', port: 6379, db: 9 })
  const prefix = `um_cache:multi:${process.pid}:`
  t.teardown(async () => { await redis.del(`${prefix}a`); redis.disconnect() })
  await redis.set(`${prefix}a`, 'A')
  const fastify = await app()
  t.teardown(() => fastify.close())

  t.equal(await redis.multi({ pipeline: false }), 'OK')
  t.equal(await redis.get(`${prefix}missing`), 'QUEUED', 'a missing key answers QUEUED inside the transaction')
  t.equal(await redis.get(`${prefix}a`), 'QUEUED')
  t.same(await redis.exec(), [[null, null], [null, 'A']])
  t.equal(await redis.get(`${prefix}a`), 'A') // hit: the transaction is over
  await redis.multi({ pipeline: false })
  await redis.get(`${prefix}a`)
  t.equal(await redis.discard(), 'OK')
  t.equal(await redis.get(`${prefix}missing`), null) // miss: the transaction was discarded
  t.same(cacheCounts(await scrape(fastify), 'redis'), { total: 2, hits: 1, misses: 1, fail: undefined, guideHits: 1, guideMisses: 1 })
})

t.test('django_cache_get_fail_total{backend="redis"} appears at the first failure, not at the first get', async (t) => {
  const redis = new Redis({ host: '127.0.0.1', port: 6379, db: DB })
  t.teardown(async () => { await redis.del(`${P}f`, `${P}fhash`); redis.disconnect() })
  await redis.set(`${P}f`, 'F')
  await redis.hset(`${P}fhash`, 'f', '1')
  const fastify = await app()
  t.teardown(() => fastify.close())
  await redis.get(`${P}f`) // hit
  const first = await scrape(fastify)
  t.same(cacheCounts(first, 'redis'), { total: 1, hits: 1, misses: undefined, fail: undefined, guideHits: 1, guideMisses: undefined })
  t.notMatch(first, /^django_cache_get_fail_total\{/m, 'no failure yet: no fail series')
  await t.rejects(redis.get(`${P}fhash`), /WRONGTYPE/)
  t.same(cacheCounts(await scrape(fastify), 'redis'), { total: 2, hits: 1, misses: undefined, fail: 1, guideHits: 1, guideMisses: undefined })
})

t.test('the redis backend label is configurable, several instances each count, and close unpatches', async (t) => {
  const original = Redis.prototype.sendCommand
  const redis = new Redis({ host: '127.0.0.1', port: 6379, db: DB })
  t.teardown(async () => { await redis.del(`${P}b`); redis.disconnect() })
  await redis.set(`${P}b`, 'B')
  await redis.del(`${P}nothing`)

  const one = await app({ cache: { redisBackend: 'native_redis' } })
  const two = await app()
  const off = await app({ cache: { redis: false } })
  t.equal(patchRefs('ioredis'), 2)
  await redis.get(`${P}b`)
  await redis.get(`${P}nothing`)
  t.same(cacheCounts(await scrape(one), 'native_redis'), { total: 2, hits: 1, misses: 1, fail: undefined, guideHits: 1, guideMisses: 1 })
  t.same(cacheCounts(await scrape(two), 'redis'), { total: 2, hits: 1, misses: 1, fail: undefined, guideHits: 1, guideMisses: 1 })
  t.equal(cacheCounts(await scrape(off), 'redis').total, undefined)

  // A read issued before the client is connected sits in ioredis's offline queue and is sent again: counted once.
  const fresh = new Redis({ host: '127.0.0.1', port: 6379, db: DB })
  t.teardown(() => fresh.disconnect())
  t.equal(await fresh.get(`${P}b`), 'B')
  t.same(cacheCounts(await scrape(two), 'redis'), { total: 3, hits: 2, misses: 1, fail: undefined, guideHits: 2, guideMisses: 1 })

  await one.close()
  await redis.get(`${P}b`)
  t.equal(cacheCounts(await scrape(two), 'redis').hits, 3, 'a closed instance no longer receives, the others still do')
  await two.close()
  await off.close()
  t.equal(patchRefs('ioredis'), 0)
  t.equal(Redis.prototype.sendCommand, original, 'ioredis is unpatched once the last instance closes')
})

t.test("the app's own ioredis tracing instrumentation keeps working alongside", async (t) => {
  // The app traces ioredis itself (as NodeSDK would), patched before the plugin registers.
  const seen: string[] = []
  const own = new IORedisInstrumentation({ enabled: false, requireParentSpan: false, responseHook: (_span, command) => { seen.push(command) } })
  const [definition] = own.getModuleDefinitions()
  definition!.patch!(Redis, '5.11.1')
  t.teardown(() => definition!.unpatch!(Redis, '5.11.1'))
  const theirs = Redis.prototype.sendCommand

  const redis = new Redis({ host: '127.0.0.1', port: 6379, db: DB })
  t.teardown(async () => { await redis.del(`${P}c`); redis.disconnect() })
  await redis.set(`${P}c`, 'C')
  seen.length = 0

  const fastify = await app()
  await redis.get(`${P}c`)
  t.same(seen, ['get'], "the app's instrumentation still sees the command")
  t.same(cacheCounts(await scrape(fastify), 'redis').hits, 1)
  await fastify.close()
  t.equal(Redis.prototype.sendCommand, theirs, "the app's wrapper is back in place after close")
  await redis.get(`${P}c`)
  t.same(seen, ['get', 'get'])
})

t.test('cache option validation', async (t) => {
  const cases: Array<[unknown, string]> = [
    ['yes', 'cache'],
    [{ redis: 'no' }, 'cache.redis'],
    [{ redisBackend: '' }, 'cache.redisBackend'],
    [{ backend: 5 }, 'cache.backend'],
    [{ memcached: true }, 'cache.memcached']
  ]
  for (const [cache, name] of cases) {
    const fastify = Fastify()
    await t.rejects(async () => { await fastify.register(upstreamMetrics, { cache } as never) }, { code: 'UPSTREAM_METRICS_INVALID_OPTION', message: new RegExp(`option "${name.replace('.', '\\.')}"`) }, name)
    await fastify.close()
  }
  t.equal(patchRefs('ioredis'), 0, 'a rejected registration holds no patch')
})
