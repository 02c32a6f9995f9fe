import type { ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import {
  DJANGO_BODY_BUCKETS, HTTP, HTTP_SEMCONV, INVALID_METHOD, NO_TEMPLATE_NAME, SCRAPE_VIEW, SEMCONV_HTTP_DURATION_BUCKETS,
  SEMCONV_KNOWN_METHODS, SEMCONV_OTHER_METHOD, STANDARD_METHODS, UNNAMED_VIEW
} from './names'
import { observe, type Cell, type Family, type HistogramCell, type Store } from './store'
import type { ResolvedOptions } from './options'
import type { Faults } from './faults'
import type { RouteMetricsConfig } from './types'

const kRequestState = Symbol('upstream-metrics.request')
/** On a reply whose payload is a stream (set by the `send` wrapper). */
const kStreamed = Symbol('upstream-metrics.streamed')
/** On a reply rendered by `reply.view`: its `templatename` label. */
const kTemplate = Symbol('upstream-metrics.template')
/** On a request that raised an exception, when the semantic-convention histogram needs its `error.type`. */
const kErrorType = Symbol('upstream-metrics.error-type')
/** On the wrappers this module installs, so a prototype is wrapped once. */
const kWrapper = Symbol('upstream-metrics.wrapper')
/** Request state of a request not measured (excluded) or whose response is already recorded. */
const SETTLED = Object.freeze({ settled: true })
const NODE_METHODS = new Set(['ACL', 'BIND', 'CHECKOUT', 'CONNECT', 'COPY', 'DELETE', 'GET', 'HEAD', 'LINK', 'LOCK', 'M-SEARCH', 'MERGE', 'MKACTIVITY', 'MKCALENDAR', 'MKCOL', 'MOVE', 'NOTIFY', 'OPTIONS', 'PATCH', 'POST', 'PROPFIND', 'PROPPATCH', 'PURGE', 'PUT', 'QUERY', 'REBIND', 'REPORT', 'SEARCH', 'SOURCE', 'SUBSCRIBE', 'TRACE', 'UNBIND', 'UNLINK', 'UNLOCK', 'UNSUBSCRIBE'])
const CHARSET_TOKEN = /^[A-Za-z0-9][A-Za-z0-9._:+-]{0,39}$/
const TEMPLATE_NAME = /^[\w./@:+-]{1,200}$/
const CLASS_NAME = /^[A-Za-z_$][\w$]{0,99}$/

/** The label values and cells of one (route, method): resolved once, reused by every request. */
interface MethodCells {
  readonly route: RouteState
  readonly method: string
  /** The raw-method label of the latency histogram (django does not clean it there). */
  readonly latencyMethod: string
  /** `http.request.method`: a known method as is, else `_OTHER`. */
  readonly semconvMethod: string
  /** Series are created on first use, as prometheus_client creates a child on its first update. */
  latency: HistogramCell | undefined
  byMethod: Cell | undefined
  byViewHttp: Cell | undefined
  byViewHttps: Cell | undefined
  readonly byStatus: Map<number, Cell>
  /** `http.server.request.duration` series by status, per scheme; `undefined` while semconv is off. */
  semconv: { http: Map<number, HistogramCell>, https: Map<number, HistogramCell>, failed: Map<string, HistogramCell> } | undefined
}

interface RouteState {
  readonly view: string
  readonly matched: boolean
  readonly excluded: boolean
  /** The route's URL template (`http.route`), when a route matched. */
  readonly template: string | undefined
  readonly methods: Map<string, MethodCells>
}

type RequestState = MethodCells | typeof SETTLED | null | undefined
type StatefulRequest = FastifyRequest & { [kRequestState]?: RequestState, [kErrorType]?: string }
type MarkedReply = FastifyReply & { [kStreamed]?: boolean, [kTemplate]?: string }
type Send = (this: FastifyReply, payload?: unknown) => FastifyReply
type Wrapped<F> = F & { [kWrapper]?: true }

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

/** What Fastify's `reply.send` pipes instead of writing at once: Node and web streams, a `Response`'s body. */
function isStreamPayload (payload: object): boolean {
  return typeof (payload as { pipe?: unknown }).pipe === 'function' ||
    typeof (payload as { getReader?: unknown }).getReader === 'function' ||
    (typeof Response === 'function' && payload instanceof Response && payload.body !== null)
}

/**
 * The django-prometheus middleware pair as Fastify hooks: request-side counters in
 * `onRequest` (django's Before/After `process_request` and `process_view`), response
 * side in `onResponse`, exceptions in `onError`. A request whose `onRequest` never ran
 * (an earlier hook answered it) is recorded on both sides when it responds; a request
 * whose client left is recorded when its handler's reply is written (see `wrapSend`).
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
  // A standard name: never namespaced, as OpenTelemetry-native dashboards query it as such.
  const semconv = options.http.semconvMetrics
    ? store.histogram(HTTP_SEMCONV.requestDuration, SEMCONV_HTTP_DURATION_BUCKETS, { namespaced: false })
    : undefined
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
  const byTemplate = new Map<string, Cell>()
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

  function routeState (request: FastifyRequest, reply: FastifyReply): RouteState {
    const routeOptions = request.routeOptions
    const config = routeOptions.config ?? noConfig
    let state = states.get(config)
    if (state === undefined) {
      const custom = routeConfig(config)
      const matched = routeOptions.url !== undefined
      const isScrape = (config as unknown as Record<symbol, unknown>)[kScrapeRoute] === true
      const view = isScrape ? SCRAPE_VIEW : matched ? (custom?.view ?? routeOptions.url!) : UNNAMED_VIEW
      const excluded = custom?.exclude === true || (isScrape && !options.countScrape)
      state = { view, matched, excluded, template: routeOptions.url, methods: new Map() }
      states.set(config, state)
      wrapView(reply)
    }
    return state
  }

  function methodCells (route: RouteState, rawMethod: string): MethodCells {
    const found = route.methods.get(rawMethod)
    if (found !== undefined) return found
    const method = cleanMethod(rawMethod)
    // django labels the latency histogram with the raw method; Node's parser bounds it to its known verbs.
    const latencyMethod = NODE_METHODS.has(rawMethod) ? rawMethod : INVALID_METHOD
    const semconvMethod = (SEMCONV_KNOWN_METHODS as readonly string[]).includes(rawMethod) ? rawMethod : SEMCONV_OTHER_METHOD
    const cells: MethodCells = { route, method, latencyMethod, semconvMethod, latency: undefined, byMethod: undefined, byViewHttp: undefined, byViewHttps: undefined, byStatus: new Map(), semconv: undefined }
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

  /** Records the request side; the request's cells, or `undefined` when it is not measured. */
  function track (request: StatefulRequest, reply: FastifyReply): MethodCells | undefined {
    const route = routeState(request, reply)
    if (route.excluded || (excludePaths.length > 0 && pathExcluded(request.url))) {
      request[kRequestState] = SETTLED
      return undefined
    }
    return recordRequest(request, route)
  }

  /** The cells of a request still to be answered; the request side is recorded now if `onRequest` never ran. */
  function pending (request: StatefulRequest, reply: FastifyReply): MethodCells | undefined {
    const state = request[kRequestState]
    if (state == null) return track(request, reply)
    return state === SETTLED ? undefined : state as MethodCells
  }

  fastify.decorateRequest(kRequestState as unknown as string, null)

  fastify.addHook('onRequest', function metricsOnRequest (request, reply, done) {
    try {
      track(request, reply)
    } catch (err) {
      faults.report(err)
    }
    done()
  })

  function recordRequest (request: StatefulRequest, route: RouteState): MethodCells {
    const cells = methodCells(route, request.method)
    request[kRequestState] = cells
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
    return cells
  }

  fastify.addHook('onError', function metricsOnError (request, reply, error, done) {
    try {
      const cells = pending(request, reply)
      // The disconnect that broke a body upload is the client's doing, not an exception of the app.
      if (cells !== undefined && !(typeof error === 'object' && error !== null && error === request.raw.errored)) {
        const type = exceptionType(error)
        f.exceptionsByType.cell(type).value++
        if (cells.route.matched) f.exceptionsByView.cell(cells.route.view).value++
        // django observes the latency in process_exception and again in process_response.
        observe(latencyCell(cells), latencyBounds, reply.elapsedTime / 1000)
        if (semconv !== undefined) (request as StatefulRequest)[kErrorType] = type
      }
    } catch (err) {
      faults.report(err)
    }
    done()
  })

  fastify.addHook('onResponse', function metricsOnResponse (request, reply, done) {
    try {
      const cells = pending(request, reply)
      if (cells !== undefined) recordResponse(cells, request, reply)
    } catch (err) {
      faults.report(err)
    }
    done()
  })

  function latencyCell (cells: MethodCells): HistogramCell {
    return (cells.latency ??= f.latencyByViewMethod.cell(cells.route.view, cells.latencyMethod) as HistogramCell)
  }

  function recordResponse (cells: MethodCells, request: StatefulRequest, reply: MarkedReply): void {
    const seconds = reply.elapsedTime / 1000
    const status = reply.statusCode
    // Answered: a close listener of an abandoned-reply watch (see `watchClose`) must not record it again.
    request[kRequestState] = SETTLED
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
    if (reply[kStreamed] === true) streaming.value++
    else if (length !== undefined) observe(responseBody, DJANGO_BODY_BUCKETS, Number(length) || 0)
    else if (status === 204 || status === 304 || status < 200) observe(responseBody, DJANGO_BODY_BUCKETS, 0)
    else streaming.value++
    const charset = charsetOf(reply.getHeader('content-type'))
    cell = byCharset.get(charset)
    if (cell === undefined) {
      cell = f.byCharset.cell(charset)
      if (byCharset.size < 256) byCharset.set(charset, cell)
    }
    cell.value++
    const template = reply[kTemplate]
    if (template !== undefined) {
      cell = byTemplate.get(template)
      if (cell === undefined) {
        cell = f.byTemplateName.cell(template)
        if (byTemplate.size < 256) byTemplate.set(template, cell)
      }
      cell.value++
    }
    if (semconv !== undefined) observe(semconvCell(cells, request, status), SEMCONV_HTTP_DURATION_BUCKETS, seconds)
  }

  function semconvCell (cells: MethodCells, request: StatefulRequest, status: number): HistogramCell {
    const scheme = request.protocol === 'https' ? 'https' : 'http'
    const series = (cells.semconv ??= { http: new Map(), https: new Map(), failed: new Map() })
    const errorType = request[kErrorType] ?? (status >= 500 ? String(status) : undefined)
    if (errorType !== undefined) {
      const key = `${scheme} ${status} ${errorType}`
      let cell = series.failed.get(key)
      if (cell === undefined) {
        cell = semconv!.cell(cells.semconvMethod, cells.route.template, status, scheme, errorType) as HistogramCell
        series.failed.set(key, cell)
      }
      return cell
    }
    const byScheme = series[scheme]
    let cell = byScheme.get(status)
    if (cell === undefined) {
      cell = semconv!.cell(cells.semconvMethod, cells.route.template, status, scheme, undefined) as HistogramCell
      byScheme.set(status, cell)
    }
    return cell
  }

  /** Records the response of a request whose client left: Fastify never runs `onResponse` for it. */
  function recordAbandoned (reply: FastifyReply): void {
    try {
      const request = reply.request as StatefulRequest
      const cells = pending(request, reply)
      if (cells !== undefined) recordResponse(cells, request, reply)
    } catch (err) {
      faults.report(err)
    }
  }

  /**
   * `reply.send` is where a handler's reply reaches Fastify, whatever the handler's style: the
   * one place that sees a stream payload (piped with its Content-Length, a streaming response
   * for django) and a reply to a client that already left. Wrapped once, on this instance's
   * reply prototype; per reply it costs a type check and two property reads.
   */
  function wrapSend (): void {
    const proto = replyPrototype(fastify)
    if (proto === undefined) {
      fastify.log.warn('upstream-metrics: this Fastify version hides its reply prototype; streamed replies with a Content-Length and replies to clients that left are not told apart')
      return
    }
    const send = proto.send as Wrapped<Send>
    if (send[kWrapper] === true) return
    // Fastify builds a route's replies from the nearest decorated reply prototype, base included:
    // a decoration makes this instance's the nearest for every route.
    fastify.decorateReply(kWrapper as unknown as string, function upstreamMetricsReply () {})
    const metricsSend: Wrapped<Send> = function (this: MarkedReply, payload?: unknown): FastifyReply {
      if (typeof payload === 'object' && payload !== null && isStreamPayload(payload)) {
        this[kStreamed] = true
        watchClose(this)
        return send.call(this, payload)
      }
      if (this.raw.destroyed) {
        recordWhenWritten(this)
        return send.call(this, payload)
      }
      const sent = send.call(this, payload)
      // A body larger than the socket takes at once finishes later, or never if the client leaves.
      if (this.raw.writableLength > 0) watchClose(this)
      return sent
    }
    metricsSend[kWrapper] = true
    Object.defineProperty(proto, 'send', { value: metricsSend, writable: true, configurable: true, enumerable: false })
  }

  /** A reply still being transferred ends without `finish` when its client leaves: record it then (or now, if it left). */
  function watchClose (reply: FastifyReply): void {
    const res = reply.raw
    if (res.destroyed) {
      recordAbandoned(reply)
      return
    }
    try {
      res.once('close', () => {
        if (!res.writableFinished && (reply.request as StatefulRequest)[kRequestState] !== SETTLED) recordAbandoned(reply)
      })
    } catch (err) {
      faults.report(err)
    }
  }

  /** The client left before the reply: record it when Fastify writes it, its status and headers final. */
  function recordWhenWritten (reply: FastifyReply): void {
    const res = reply.raw as ServerResponse & { end: Wrapped<ServerResponse['end']> }
    if (res.end[kWrapper] === true) return
    const end = res.end
    const endAfterAbandon = function (this: ServerResponse, ...args: unknown[]) {
      res.end = end
      recordAbandoned(reply)
      return (end as (...a: unknown[]) => ServerResponse).apply(this, args)
    } as Wrapped<ServerResponse['end']>
    endAfterAbandon[kWrapper] = true
    try {
      res.end = endAfterAbandon
    } catch (err) {
      faults.report(err)
    }
  }

  /**
   * `reply.view` of @fastify/view, wrapped once on the prototype that holds it, so the reply
   * carries its template name (django's TemplateResponse): looked for when a route is first seen.
   */
  function wrapView (reply: FastifyReply): void {
    let proto: object | null = Object.getPrototypeOf(reply)
    while (proto !== null && !Object.hasOwn(proto, 'view')) proto = Object.getPrototypeOf(proto)
    if (proto === null || !Object.hasOwn(proto, 'viewAsync')) return
    const view = (proto as { view: unknown }).view as Wrapped<(...args: unknown[]) => unknown>
    if (typeof view !== 'function' || view[kWrapper] === true) return
    const metricsView: Wrapped<typeof view> = function (this: MarkedReply, page: unknown, ...rest: unknown[]) {
      this[kTemplate] = templateName(page)
      return view.call(this, page, ...rest)
    }
    metricsView[kWrapper] = true
    Object.defineProperty(proto, 'view', { value: metricsView, writable: true, configurable: true, enumerable: false })
  }

  wrapSend()
}

/** The reply prototype of this Fastify instance (its own, not the one every instance shares). */
function replyPrototype (fastify: FastifyInstance): Record<string, unknown> | undefined {
  const kReply = Object.getOwnPropertySymbols(fastify).find((s) => s.description === 'fastify.Reply')
  const Reply = kReply === undefined ? undefined : (fastify as unknown as Record<symbol, unknown>)[kReply]
  const proto = typeof Reply === 'function' ? (Reply as { prototype?: unknown }).prototype : undefined
  return typeof proto === 'object' && proto !== null && typeof (proto as { send?: unknown }).send === 'function'
    ? proto as Record<string, unknown>
    : undefined
}

export const kScrapeRoute = Symbol('upstream-metrics.scrape-route')

const charsets = new Map<string, string>()

/** django's `response.charset`: the Content-Type's charset as spelled there, `utf-8` when none is given. */
function charsetOf (contentType: unknown): string {
  if (typeof contentType !== 'string') return 'utf-8'
  let charset = charsets.get(contentType)
  if (charset === undefined) {
    const match = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)
    const value = match === null ? 'utf-8' : match[1]!
    charset = CHARSET_TOKEN.test(value) ? value : 'other'
    if (charsets.size < 512) charsets.set(contentType, charset)
  }
  return charset
}

/** django's `str(response.template_name)`: the name given to `reply.view`, `None` for a template given as code. */
function templateName (page: unknown): string {
  if (typeof page !== 'string') return NO_TEMPLATE_NAME
  return TEMPLATE_NAME.test(page) ? page : 'other'
}

/**
 * django's `type(exception).__name__`: the thrown value's class name as JavaScript reports it
 * (`error.constructor.name`): `TypeError`, `FastifyError`, `String` for a thrown string. An anonymous
 * or non-identifier class takes the nearest named class it extends; `null` and `undefined` are themselves.
 */
export function exceptionType (error: unknown): string {
  if (error === null || error === undefined) return String(error)
  const name = (error as { constructor?: { name?: unknown } }).constructor?.name
  if (typeof name === 'string' && CLASS_NAME.test(name)) return name
  try {
    for (let proto = Object.getPrototypeOf(Object(error)); proto !== null; proto = Object.getPrototypeOf(proto)) {
      const inherited = Object.hasOwn(proto, 'constructor') ? (proto as { constructor?: { name?: unknown } }).constructor?.name : undefined
      if (typeof inherited === 'string' && CLASS_NAME.test(inherited)) return inherited
    }
  } catch {}
  return 'Object'
}
