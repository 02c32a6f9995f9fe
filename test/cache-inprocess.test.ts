import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { LRUCache } from 'lru-cache'
import Keyv from 'keyv'
import upstreamMetrics, { instrumentCache, recordCacheGet } from '../lib/index'
import { cacheCounts as counts } from './helpers/metrics'

async function scrape (app: FastifyInstance): Promise<string> {
  return (await app.inject({ method: 'GET', url: '/metrics' })).body
}

// A series appears at its first count (as a prometheus_client child at its first inc()): 0 means absent.
const seen = (n: number) => n === 0 ? undefined : n
const expect = (total: number, hits: number, misses: number, fail: number) =>
  ({ total: seen(total), hits: seen(hits), misses: seen(misses), fail: seen(fail), guideHits: seen(hits), guideMisses: seen(misses) })

async function app (options: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const fastify = Fastify()
  // No Redis here: these tests are about in-process caches only.
  await fastify.register(upstreamMetrics, { runtimeMetrics: false, cache: { redis: false }, ...options })
  await fastify.ready()
  return fastify
}

t.test('lru-cache: same type and behaviour, falsy values are hits', async (t) => {
  const fastify = await app()
  t.teardown(() => fastify.close())
  const cache = fastify.upstreamMetrics.cache.wrap(new LRUCache<string, NonNullable<unknown>>({ max: 10 }), { backend: 'lru' })
  t.ok(cache instanceof LRUCache)
  t.equal(cache.set('zero', 0).set('empty', ''), cache, 'set chains on the wrapper')
  cache.set('false', false)
  cache.set('null', null as unknown as object)
  t.equal(cache.size, 4, 'getters and private fields still work')
  t.equal(cache.get('zero'), 0)
  t.equal(cache.get('empty'), '')
  t.equal(cache.get('false'), false)
  t.equal(cache.get('null'), null)
  t.equal(cache.get('absent'), undefined)
  t.equal(cache.peek('zero'), 0, 'other reads are not gets')
  t.same([...cache.keys()].sort(), ['empty', 'false', 'null', 'zero'])
  t.same(counts(await scrape(fastify), 'lru'), expect(5, 4, 1, 0))
})

t.test('Map wrapped at module level, before any instance exists, with the default backend', async (t) => {
  const map = instrumentCache(new Map<string, number>([['a', 1], ['zero', 0]]))
  const fastify = await app()
  t.teardown(() => fastify.close())
  t.ok(map instanceof Map)
  t.equal(map.size, 2)
  t.equal(map.get('a'), 1)
  t.equal(map.get('zero'), 0)
  t.equal(map.get('b'), undefined)
  t.equal(map.set('b', 2), map)
  t.equal(map.get('b'), 2)
  t.same([...map], [['a', 1], ['zero', 0], ['b', 2]], 'iteration works')
  t.equal(map.has('a'), true)
  t.same(counts(await scrape(fastify), 'locmem'), expect(4, 3, 1, 0))
})

t.test('Keyv: async gets, get(keys[]) and getMany count each key, falsy values are hits', async (t) => {
  const fastify = await app()
  t.teardown(() => fastify.close())
  const keyv = fastify.upstreamMetrics.cache.wrap(new Keyv(), { backend: 'keyv' })
  t.ok(keyv instanceof Keyv)
  await keyv.set('zero', 0)
  await keyv.set('false', false)
  await keyv.set('empty', '')
  t.equal(await keyv.get('zero'), 0)
  t.equal(await keyv.get('false'), false)
  t.equal(await keyv.get('empty'), '')
  t.equal(await keyv.get('absent'), undefined)
  t.same(await keyv.get(['zero', 'absent']), [0, undefined])
  t.same(await keyv.getMany(['empty', 'absent', 'other']), ['', undefined, undefined])
  t.same(counts(await scrape(fastify), 'keyv'), expect(9, 5, 4, 0))
})

t.test('a failing get throws or rejects exactly as before and counts as a failure', async (t) => {
  const fastify = await app()
  t.teardown(() => fastify.close())
  const boom = new Error('boom')
  const sync = fastify.upstreamMetrics.cache.wrap({ get (_key: string): unknown { throw boom } }, { backend: 'flaky' })
  const async = fastify.upstreamMetrics.cache.wrap({ async get (_key: string): Promise<unknown> { throw boom } }, { backend: 'flaky' })
  const many = fastify.upstreamMetrics.cache.wrap({ async getMany (_keys: string[]): Promise<unknown[]> { throw boom } }, { backend: 'flaky' })
  t.throws(() => sync.get('a'), boom)
  await t.rejects(async.get('a'), boom)
  await t.rejects(many.getMany(['a', 'b', 'c']), boom)
  t.same(counts(await scrape(fastify), 'flaky'), expect(5, 0, 0, 5))
})

t.test('recording by hand, isMiss, and recording never throws', async (t) => {
  const fastify = await app({ cache: { redis: false, backend: 'memory' } })
  t.teardown(() => fastify.close())
  const { cache } = fastify.upstreamMetrics
  cache.record('manual', true)
  cache.record('manual', 'hit')
  cache.record('manual', false)
  cache.record('manual', 'fail')
  t.doesNotThrow(() => cache.record('manual', 'nonsense' as never), 'an invalid outcome is a recording fault, not an exception')
  cache.record(undefined, 'miss')
  const nulls = cache.wrap(new Map<string, string | null>([['n', null]]), { backend: 'nulls', isMiss: (v) => v === null || v === undefined })
  t.equal(nulls.get('n'), null)
  const broken = cache.wrap(new Map([['k', 'v']]), { backend: 'broken', isMiss: () => { throw new Error('bug in isMiss') } })
  t.equal(broken.get('k'), 'v', 'a throwing isMiss does not reach the caller')
  const text = await scrape(fastify)
  t.same(counts(text, 'manual'), expect(4, 2, 1, 1))
  t.same(counts(text, 'memory'), expect(1, 0, 1, 0), 'the instance default backend')
  t.same(counts(text, 'nulls'), expect(1, 0, 1, 0))
  t.equal(counts(text, 'broken').total, 1)
})

t.test('module-level recording reaches every instance; the decorator only its own', async (t) => {
  const one = await app()
  const two = await app()
  t.teardown(async () => { await one.close(); await two.close() })
  recordCacheGet('shared', true)
  instrumentCache(new Map([['x', 1]]), { backend: 'shared' }).get('x')
  one.upstreamMetrics.cache.record('shared', false)
  t.same(counts(await scrape(one), 'shared'), expect(3, 2, 1, 0))
  t.same(counts(await scrape(two), 'shared'), expect(2, 2, 0, 0))
  await one.close()
  recordCacheGet('shared', 'fail')
  t.same(counts(await scrape(two), 'shared'), expect(3, 2, 0, 1), 'a closed instance is forgotten')
})

t.test('each cache series appears at its first count: get_fail at the first failure, not at the first get', async (t) => {
  const fastify = await app()
  t.teardown(() => fastify.close())
  const { cache } = fastify.upstreamMetrics
  cache.record('early', true)
  const first = await scrape(fastify)
  t.same(counts(first, 'early'), { total: 1, hits: 1, misses: undefined, fail: undefined, guideHits: 1, guideMisses: undefined })
  t.match(first, /^# TYPE django_cache_get_fail_total counter$/m, 'the family is declared without a series')
  cache.record('early', 'fail')
  t.same(counts(await scrape(fastify), 'early'), { total: 2, hits: 1, misses: undefined, fail: 1, guideHits: 1, guideMisses: undefined })
  cache.record('early', false)
  t.same(counts(await scrape(fastify), 'early'), { total: 3, hits: 1, misses: 1, fail: 1, guideHits: 1, guideMisses: 1 })
})

t.test('cache: false leaves caches untouched and exposes no cache series', async (t) => {
  const fastify = await app({ cache: false })
  t.teardown(() => fastify.close())
  const map = new Map([['a', 1]])
  t.equal(fastify.upstreamMetrics.cache.wrap(map), map)
  recordCacheGet('anything', true)
  t.notMatch(await scrape(fastify), /django_cache/)
})

t.test('a frozen cache object still works through the wrapper', async (t) => {
  const fastify = await app()
  t.teardown(() => fastify.close())
  const frozen = Object.freeze({ get: (key: string) => key === 'a' ? 1 : undefined })
  const wrapped = fastify.upstreamMetrics.cache.wrap(frozen, { backend: 'frozen' })
  t.equal(wrapped.get('a'), 1)
  t.equal(wrapped.get('b'), undefined)
})
