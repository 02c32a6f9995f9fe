/**
 * The requests both apps receive, in this order: fixed, no randomness. Each says the status
 * both apps must answer, so an app that behaves differently is told apart from a metric that does.
 * `scrape` marks a GET /metrics whose exposition is compared (the first and the last are added by the test).
 */
export interface ConformanceRequest {
  method: string
  path: string
  headers?: Record<string, string>
  body?: string
  expect: number
  scrape?: string
}

const JSON_TYPE = { 'content-type': 'application/json' }
const TEXT_TYPE = { 'content-type': 'text/plain' }
const AJAX = { 'x-requested-with': 'XMLHttpRequest' }
/** Request bodies of several sizes, across the body-size buckets (powers of two). */
const BODY_SIZES = [0, 1, 7, 100, 1000, 4096, 20_000, 70_000]

function json (method: string, path: string, value: unknown, expect: number): ConformanceRequest {
  return { method, path, headers: JSON_TYPE, body: JSON.stringify(value), expect }
}

export function conformanceRequests (): ConformanceRequest[] {
  const requests: ConformanceRequest[] = []
  const add = (r: ConformanceRequest): void => { requests.push(r) }

  // Part one: reads, inserts, cache misses then hits, bodies, streaming, templates, resolver 404s.
  for (let i = 0; i < 12; i++) {
    add({ method: 'GET', path: '/plain', headers: i % 3 === 0 ? AJAX : {}, expect: 200 })
    add({ method: 'GET', path: '/named', expect: 200 })
    add(json('POST', '/claims', { code: `c${i}`, title: `claim ${i}` }, 201))
    add({ method: 'GET', path: `/claims/c${i}`, expect: 200 })
    add({ method: 'GET', path: `/cache/k${i % 4}`, expect: 200 })
    if (i % 2 === 0) add({ method: 'GET', path: '/claims', headers: AJAX, expect: 200 })
    if (i % 3 === 0) add({ method: 'GET', path: '/status', expect: 200 })
    if (i % 4 === 1) add({ method: 'GET', path: '/api/items', expect: 200 })
    if (i < BODY_SIZES.length) add({ method: 'POST', path: '/echo', headers: TEXT_TYPE, body: 'x'.repeat(BODY_SIZES[i]!), expect: 200 })
    if (i % 4 === 2) add({ method: 'GET', path: '/stream', expect: 200 })
    if (i % 4 === 3) add({ method: 'GET', path: '/file', expect: 200 })
    if (i % 3 === 1) add({ method: 'GET', path: '/template', expect: 200 })
    if (i % 3 === 2) add({ method: 'GET', path: `/missing/${i}`, expect: 404 })
  }
  // Between the first cache gets and the first cache failure.
  add({ method: 'GET', path: '/metrics', expect: 200, scrape: 'middle' })

  // Part two: updates, deletes, duplicate keys, exceptions, failing cache, odd methods and charsets.
  for (let i = 0; i < 12; i++) {
    add(json('PUT', `/claims/c${i}`, { title: `claim ${i}, revised` }, 200))
    add({ method: 'GET', path: `/cache/k${i % 6}`, headers: i % 2 === 0 ? AJAX : {}, expect: 200 })
    add({ method: 'GET', path: '/plain', expect: 200 })
    if (i % 3 === 0) add({ method: 'DELETE', path: `/claims/c${i}`, expect: 204 })
    if (i % 4 === 0) add(json('POST', '/claims', { code: `c${i + 1}`, title: 'again' }, 409))
    if (i % 4 === 1) add({ method: 'GET', path: '/boom', expect: 500 })
    if (i % 4 === 2) add({ method: 'GET', path: '/duplicate', expect: 500 })
    if (i % 4 === 2) add({ method: 'GET', path: `/claims/gone${i}`, expect: 404 })
    if (i % 6 === 3) add({ method: 'DELETE', path: `/claims/gone${i}`, expect: 404 })
    if (i % 3 === 1) add({ method: 'GET', path: `/cache-down/k${i}`, expect: 200 })
    if (i % 4 === 3) add({ method: 'GET', path: '/latin1', expect: 200 })
    if (i % 5 === 0) add({ method: 'PURGE', path: '/echo', headers: TEXT_TYPE, body: 'purge', expect: 200 })
    if (i % 5 === 2) add({ method: 'PURGE', path: '/missing', expect: 404 })
    if (i % 4 === 1) add({ method: 'HEAD', path: '/plain', expect: 200 })
    if (i % 6 === 5) add({ method: 'POST', path: '/nowhere', headers: TEXT_TYPE, body: 'lost', expect: 404 })
    if (i % 3 === 0) add({ method: 'GET', path: '/template', headers: AJAX, expect: 200 })
    if (i % 4 === 0) add({ method: 'GET', path: '/stream', expect: 200 })
    if (i % 4 === 2) add({ method: 'GET', path: '/file', expect: 200 })
    add({ method: 'GET', path: '/named', expect: 200 })
  }
  return requests
}
