import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import {
  DJANGO_BODY_BUCKETS, HTTP, INVALID_METHOD, SCRAPE_VIEW, STANDARD_METHODS, UNNAMED_VIEW
} from './names'
import { observe, type Cell, type Family, type HistogramCell, type Store } from './store'
import type { ResolvedOptions } from './options'
import type { Faults } from './faults'
import type { RouteMetricsConfig } from './types'

const kRequestState = Symbol('upstream-metrics.request')
const NODE_METHODS = new Set(['ACL', 'BIND', 'CHECKOUT', 'CONNECT', 'COPY', 'DELETE', 'GET', 'HEAD', 'LINK', 'LOCK', 'M-SEARCH', 'MERGE', 'MKACTIVITY', 'MKCALENDAR', 'MKCOL', 'MOVE', 'NOTIFY', 'OPTIONS', 'PATCH', 'POST', 'PROPFIND', 'PROPPATCH', 'PURGE', 'PUT', 'QUERY', 'REBIND', 'REPORT', 'SEARCH', 'SOURCE', 'SUBSCRIBE', 'TRACE', 'UNBIND', 'UNLINK', 'UNLOCK', 'UNSUBSCRIBE'])
const CHARSET_TOKEN = /^[a-z0-9][a-z0-9._:+-]{0,39}$/
const CLASS_NAME = /^[A-Za-z_$][\w$]{0,99}$/

/** The label values and cells of one (route, method): resolved once, reused by every request. */
interface MethodCells {
  readonly route: RouteState
  readonly method: string
  /** The raw-method label of the latency histogram (django does not clean it there). */
  readonly latencyMethod: string
  /** Series are created on first use, as prometheus_client creates a child on its first update. */
  latency: HistogramCell | undefined
  byMethod: Cell | undefined
  byViewHttp: Cell | undefined
  byViewHttps: Cell | undefined
  readonly byStatus: Map<number, Cell>
}

interface RouteState {
  readonly view: string
  readonly matched: boolean
  readonly excluded: boolean
  readonly methods: Map<string, MethodCells>
}

type Families = { [K in keyof typeof HTTP]: Family } & {
  latencyIncluding: Family<HistogramCell>
  latencyByViewMethod: Family<HistogramCell>
  requestBody: Family<HistogramCell>
  responseBody: Family<HistogramCell>
}

function routeConfig (config: unknown): RouteMetricsConfig | undefined {
  const metrics = (config as { metrics?: unknown } | undefined)?.metrics
  return typeof metrics === 'object' && metrics !== null ? metrics as RouteMetricsConfig : undefined
}

/**
 * The django-prometheus middleware pair as Fastify hooks: request-side counters in
 * `onRequest` (django's Before/After `process_request` and `process_view`), response
 * side in `onResponse`, exceptions in `onError`.
 */
export function instrumentHttp (fastify: FastifyInstance, store: Store, options: ResolvedOptions, faults: Faults): void {
  const f = {} as Families
  for (const [key, spec] of Object.entries(HTTP) as Array<[keyof typeof HTTP, typeof HTTP[keyof typeof HTTP]]>) {
    if (spec.type === 'histogram') {
      (f as Record<string, Family>)[key] = store.histogram(spec, spec.buckets === 'body' ? DJANGO_BODY_BUCKETS : options.latencyBuckets)
    } else {
      (f as Record<string, Family>)[key] = store.counter(spec)
    }
  }
  const latencyBounds = options.latencyBuckets
  const requestsBefore = f.requestsBefore.cell()
  const responsesBefore = f.responsesBefore.cell()
  const latencyIncluding = f.latencyIncluding.cell() as HistogramCell
  const ajax = f.ajax.cell()
  const requestBody = f.requestBody.cell() as HistogramCell
  const responseBody = f.responseBody.cell() as HistogramCell
  const streaming = f.streaming.cell()
  const byTransport: { http?: Cell, https?: Cell } = {}
  const byMethod = new Map<string, Cell>()
  const byStatus = new Map<number, Cell>()
  const byCharset = new Map<string, Cell>()
  const states = new WeakMap<object, RouteState>()
  const noConfig = {}
  const excludePaths = options.excludePaths

  function cleanMethod (method: string): string {
    return (STANDARD_METHODS as readonly string[]).includes(method) ? method : INVALID_METHOD
  }

  function methodCounter (method: string): Cell {
    let cell = byMethod.get(method)
    if (cell === undefined) {
      cell = f.byMethod.cell(method)
      byMethod.set(method, cell)
    }
    return cell
  }

  function routeState (request: FastifyRequest): RouteState {
    const routeOptions = request.routeOptions
    const config = routeOptions.config ?? noConfig
    let state = states.get(config)
    if (state === undefined) {
      const custom = routeConfig(config)
      const matched = routeOptions.url !== undefined
      const isScrape = (config as unknown as Record<symbol, unknown>)[kScrapeRoute] === true
      const view = isScrape ? SCRAPE_VIEW : matched ? (custom?.view ?? routeOptions.url!) : UNNAMED_VIEW
      const excluded = custom?.exclude === true || (isScrape && !options.countScrape)
      state = { view, matched, excluded, methods: new Map() }
      states.set(config, state)
    }
    return state
  }

  function methodCells (route: RouteState, rawMethod: string): MethodCells {
    const found = route.methods.get(rawMethod)
    if (found !== undefined) return found
    const method = cleanMethod(rawMethod)
    // django labels the latency histogram with the raw method; Node's parser bounds it to its known verbs.
    const latencyMethod = NODE_METHODS.has(rawMethod) ? rawMethod : INVALID_METHOD
    const cells: MethodCells = { route, method, latencyMethod, latency: undefined, byMethod: undefined, byViewHttp: undefined, byViewHttps: undefined, byStatus: new Map() }
    route.methods.set(rawMethod, cells)
    return cells
  }

  function pathExcluded (url: string): boolean {
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    for (const rule of excludePaths) {
      if (typeof rule === 'string') {
        if (rule === path) return true
        continue
      }
      rule.lastIndex = 0 // a /g or /y pattern keeps state between test() calls
      if (rule.test(path)) return true
    }
    return false
  }

  fastify.decorateRequest(kRequestState as unknown as string, null)

  fastify.addHook('onRequest', function metricsOnRequest (request, _reply, done) {
    try {
      const route = routeState(request)
      if (!route.excluded && !(excludePaths.length > 0 && pathExcluded(request.url))) recordRequest(request, route)
    } catch (err) {
      faults.report(err)
    }
    done()
  })

  function recordRequest (request: FastifyRequest, route: RouteState): void {
    const cells = methodCells(route, request.method);
    (request as unknown as Record<symbol, MethodCells>)[kRequestState] = cells
    requestsBefore.value++
    (cells.byMethod ??= methodCounter(cells.method)).value++
    if (request.protocol === 'https') {
      (byTransport.https ??= f.byTransport.cell('https')).value++
      if (route.matched) (cells.byViewHttps ??= f.byViewTransportMethod.cell(route.view, 'https', cells.method)).value++
    } else {
      (byTransport.http ??= f.byTransport.cell('http')).value++
      if (route.matched) (cells.byViewHttp ??= f.byViewTransportMethod.cell(route.view, 'http', cells.method)).value++
    }
    const headers = request.headers
    if (headers['x-requested-with'] === 'XMLHttpRequest') ajax.value++
    const length = headers['content-length']
    observe(requestBody, DJANGO_BODY_BUCKETS, length === undefined ? 0 : (Number(length) || 0))
  }

  fastify.addHook('onError', function metricsOnError (request, reply, error, done) {
    try {
      const cells = (request as unknown as Record<symbol, MethodCells | null>)[kRequestState]
      if (cells != null) {
        f.exceptionsByType.cell(exceptionType(error)).value++
        if (cells.route.matched) f.exceptionsByView.cell(cells.route.view).value++
        // django observes the latency in process_exception and again in process_response.
        observe(latencyCell(cells), latencyBounds, reply.elapsedTime / 1000)
      }
    } catch (err) {
      faults.report(err)
    }
    done()
  })

  fastify.addHook('onResponse', function metricsOnResponse (request, reply, done) {
    try {
      const cells = (request as unknown as Record<symbol, MethodCells | null>)[kRequestState]
      if (cells != null) recordResponse(cells, reply)
    } catch (err) {
      faults.report(err)
    }
    done()
  })

  function latencyCell (cells: MethodCells): HistogramCell {
    return (cells.latency ??= f.latencyByViewMethod.cell(cells.route.view, cells.latencyMethod) as HistogramCell)
  }

  function recordResponse (cells: MethodCells, reply: FastifyReply): void {
    const seconds = reply.elapsedTime / 1000
    const status = reply.statusCode
    responsesBefore.value++
    observe(latencyIncluding, latencyBounds, seconds)
    observe(latencyCell(cells), latencyBounds, seconds)
    let cell = byStatus.get(status)
    if (cell === undefined) {
      cell = f.byStatus.cell(String(status))
      byStatus.set(status, cell)
    }
    cell.value++
    cell = cells.byStatus.get(status)
    if (cell === undefined) {
      cell = f.byStatusViewMethod.cell(String(status), cells.route.view, cells.method)
      cells.byStatus.set(status, cell)
    }
    cell.value++
    const length = reply.getHeader('content-length')
    if (length !== undefined) observe(responseBody, DJANGO_BODY_BUCKETS, Number(length) || 0)
    else if (status === 204 || status === 304 || status < 200) observe(responseBody, DJANGO_BODY_BUCKETS, 0)
    else streaming.value++
    const charset = charsetOf(reply.getHeader('content-type'))
    cell = byCharset.get(charset)
    if (cell === undefined) {
      cell = f.byCharset.cell(charset)
      if (byCharset.size < 256) byCharset.set(charset, cell)
    }
    cell.value++
  }
}

export const kScrapeRoute = Symbol('upstream-metrics.scrape-route')

const charsets = new Map<string, string>()

/** django's `response.charset`: the Content-Type's charset, `utf-8` when none is given. */
function charsetOf (contentType: unknown): string {
  if (typeof contentType !== 'string') return 'utf-8'
  let charset = charsets.get(contentType)
  if (charset === undefined) {
    const match = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)
    const value = match === null ? 'utf-8' : match[1]!.toLowerCase()
    charset = CHARSET_TOKEN.test(value) ? value : 'other'
    if (charsets.size < 512) charsets.set(contentType, charset)
  }
  return charset
}

/** django's `type(exception).__name__`: the class name, bounded to identifiers. */
export function exceptionType (error: unknown): string {
  if (error === null || (typeof error !== 'object' && typeof error !== 'function')) return typeof error === 'object' ? 'null' : typeof error
  const name = (error as { constructor?: { name?: unknown } }).constructor?.name
  return typeof name === 'string' && CLASS_NAME.test(name) ? name : 'Error'
}
