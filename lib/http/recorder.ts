import { performance } from 'node:perf_hooks'
import type { SpanContext } from '@opentelemetry/api'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { requestSpan } from '../exemplars'
import type { Faults } from '../faults'
import { DJANGO_BODY_BUCKETS, HTTP, HTTP_SEMCONV, SEMCONV_HTTP_DURATION_BUCKETS, type MetricSpec } from '../names'
import type { ResolvedOptions } from '../options'
import { bucketOf, exemplarOf, observe, observeIn, type Cell, type Family, type HistogramCell, type Store } from '../store'
import { CustomLabels, LABELLED_FAMILIES } from './custom-labels'
import { replyHeader } from '../fastify-internals'
import { charsetOf, exceptionType } from './labels'
import { isStreamed, templateOf } from './reply-patches'
import { Routes, type MethodCells, type RouteState } from './routes'

const kRequestState = Symbol('upstream-metrics.request')
/** `performance.now()` when the plugin's `onRequest` hook ran: the start of both latencies. */
const kStart = Symbol('upstream-metrics.start')
/** On a request that raised an exception, when the semantic-convention histogram needs its `error.type`. */
const kErrorType = Symbol('upstream-metrics.error-type')
/** Request state of a request not measured (excluded) or whose response is already recorded. */
const SETTLED = Object.freeze({ settled: true })

type RequestState = MethodCells | typeof SETTLED | null | undefined
/**
 * A request's state lives on its raw response, which Fastify's own code does not read, rather than on the request:
 * a decorated request costs every request a megamorphic store per decoration.
 */
type StatefulResponse = FastifyReply['raw'] & { [kRequestState]?: RequestState, [kErrorType]?: string, [kStart]?: number }

type Families = { [K in keyof typeof HTTP]: Family } & {
  latencyIncluding: Family<HistogramCell>
  latencyByViewMethod: Family<HistogramCell>
  requestBody: Family<HistogramCell>
  responseBody: Family<HistogramCell>
}

/** Seconds since the plugin's `onRequest`; Fastify's own measure for a request that never reached it. */
function elapsedSeconds (reply: FastifyReply): number {
  const start = (reply.raw as StatefulResponse)[kStart]
  return (start === undefined ? reply.elapsedTime : performance.now() - start) / 1000
}

/**
 * The django-prometheus middleware pair's numbers: the HTTP families and the cells each
 * request, exception and response adds to. A request is measured once on each side, whichever
 * of `onRequest`, `onError`, the response's finish or an abandoned reply sees it first.
 */
export class HttpRecorder {
  private readonly f = {} as Families
  private readonly routes: Routes
  /** `http.server.request.duration`, when semconv metrics are on. */
  private readonly semconv: Family<HistogramCell> | undefined
  private readonly latencyBounds: readonly number[]
  /** Whether latency observations keep the request's sampled span as an exemplar. */
  private readonly exemplars: boolean
  /** `http.labels`, when given: the view families' series are then looked up per request. */
  private readonly custom: CustomLabels | undefined
  private readonly requestsBefore: Cell
  private readonly responsesBefore: Cell
  private readonly latencyIncluding: HistogramCell
  private readonly ajax: Cell
  private readonly requestBody: HistogramCell
  private readonly responseBody: HistogramCell
  private readonly streaming: Cell
  private readonly byTransport: { http?: Cell, https?: Cell } = {}
  private readonly byMethod = new Map<string, Cell>()
  /** By status code. */
  private readonly byStatus: Array<Cell | undefined> = []
  private readonly byCharset = new Map<string, Cell>()
  /** The last response's Content-Type and its charset's cell: most responses of an app share one. */
  private lastContentType: unknown = undefined
  private lastCharset: Cell | undefined
  private readonly byTemplate = new Map<string, Cell>()

  constructor (store: Store, options: ResolvedOptions, faults: Faults) {
    const f = this.f
    const custom = options.http.labels.length === 0 ? undefined : new CustomLabels(options.http.labels, faults)
    this.custom = custom
    for (const [key, declared] of Object.entries(HTTP) as Array<[keyof typeof HTTP, typeof HTTP[keyof typeof HTTP]]>) {
      const spec: MetricSpec = custom !== undefined && (LABELLED_FAMILIES as readonly string[]).includes(key)
        ? { ...declared, labels: [...declared.labels, ...custom.names] }
        : declared
      if (spec.type === 'histogram') {
        (f as Record<string, Family>)[key] = store.histogram(spec, spec.buckets === 'body' ? DJANGO_BODY_BUCKETS : options.latencyBuckets)
      } else {
        (f as Record<string, Family>)[key] = store.counter(spec)
      }
    }
    // A standard name: never namespaced, as OpenTelemetry-native dashboards query it as such.
    this.semconv = options.http.semconvMetrics
      ? store.histogram(HTTP_SEMCONV.requestDuration, SEMCONV_HTTP_DURATION_BUCKETS, { namespaced: false })
      : undefined
    this.routes = new Routes(options.countScrape, options.excludePaths, (err) => faults.report(err))
    this.latencyBounds = options.latencyBuckets
    this.exemplars = options.exemplars
    this.requestsBefore = f.requestsBefore.cell()
    this.responsesBefore = f.responsesBefore.cell()
    this.latencyIncluding = f.latencyIncluding.cell() as HistogramCell
    this.ajax = f.ajax.cell()
    this.requestBody = f.requestBody.cell() as HistogramCell
    this.responseBody = f.responseBody.cell() as HistogramCell
    this.streaming = f.streaming.cell()
  }

  /** Starts the request's clock and records its request side; its cells, or `undefined` when it is not measured. */
  start (request: FastifyRequest, reply: FastifyReply): MethodCells | undefined {
    (reply.raw as StatefulResponse)[kStart] = performance.now()
    return this.track(request, reply)
  }

  /** Records the request side; the request's cells, or `undefined` when it is not measured. */
  track (request: FastifyRequest, reply: FastifyReply): MethodCells | undefined {
    const route = this.routes.of(request)
    if (this.routes.excludes(route, request)) {
      (reply.raw as StatefulResponse)[kRequestState] = SETTLED
      return undefined
    }
    return this.recordRequest(request, reply, route)
  }

  /** The cells of a request still to be answered; the request side is recorded now if `onRequest` never ran. */
  cellsOfUnanswered (request: FastifyRequest, reply: FastifyReply): MethodCells | undefined {
    const state = (reply.raw as StatefulResponse)[kRequestState]
    if (state == null) return this.track(request, reply)
    return state === SETTLED ? undefined : state as MethodCells
  }

  /** An exception out of the handler or a hook: django's `process_exception`. */
  recordError (request: FastifyRequest, reply: FastifyReply, error: unknown): void {
    const cells = this.cellsOfUnanswered(request, reply)
    // The disconnect that broke a body upload is the client's doing, not an exception of the app.
    if (cells === undefined || (typeof error === 'object' && error !== null && error === request.raw.errored)) return
    const type = exceptionType(error)
    const custom = this.custom?.values(request)
    this.f.exceptionsByType.cell(type).value++
    if (cells.route.matched) {
      const cell = custom === undefined ? this.f.exceptionsByView.cell(cells.route.view) : this.f.exceptionsByView.cell(cells.route.view, ...custom)
      cell.value++
    }
    // django observes the latency in process_exception and again in process_response.
    const seconds = elapsedSeconds(reply)
    const span = this.exemplars ? requestSpan(request) : undefined
    observe(this.latencyCell(cells, custom), this.latencyBounds, seconds, span === undefined ? undefined : exemplarOf(span, seconds))
    if (this.semconv !== undefined) (reply.raw as StatefulResponse)[kErrorType] = type
  }

  /** The response side, once per request: when its response finishes, or for a reply whose client left. */
  recordResponse (request: FastifyRequest, reply: FastifyReply): void {
    const cells = this.cellsOfUnanswered(request, reply)
    if (cells === undefined) return
    const seconds = elapsedSeconds(reply)
    const res = reply.raw as StatefulResponse
    const status = res.statusCode
    // Answered: a close listener of an abandoned-reply watch must not record it again.
    res[kRequestState] = SETTLED
    this.responsesBefore.value++
    const span: SpanContext | undefined = this.exemplars ? requestSpan(request) : undefined
    const exemplar = span === undefined ? undefined : exemplarOf(span, seconds)
    const custom = this.custom?.values(request)
    const bucket = bucketOf(this.latencyBounds, seconds)
    observeIn(this.latencyIncluding, bucket, seconds, exemplar)
    observeIn(this.latencyCell(cells, custom), bucket, seconds, exemplar)
    ;(this.byStatus[status] ??= this.f.byStatus.cell(String(status))).value++
    const byStatusViewMethod = custom === undefined
      ? (cells.byStatus[status] ??= this.f.byStatusViewMethod.cell(String(status), cells.route.view, cells.method))
      : this.f.byStatusViewMethod.cell(String(status), cells.route.view, cells.method, ...custom)
    byStatusViewMethod.value++
    const length = replyHeader(reply, 'content-length')
    if (isStreamed(reply)) this.streaming.value++
    else if (length !== undefined) observe(this.responseBody, DJANGO_BODY_BUCKETS, Number(length) || 0)
    else if (status === 204 || status === 304 || status < 200) observe(this.responseBody, DJANGO_BODY_BUCKETS, 0)
    else this.streaming.value++
    this.charsetCell(replyHeader(reply, 'content-type')).value++
    const template = templateOf(reply)
    if (template !== undefined) {
      let cell = this.byTemplate.get(template)
      if (cell === undefined) {
        cell = this.f.byTemplateName.cell(template)
        if (this.byTemplate.size < 256) this.byTemplate.set(template, cell)
      }
      cell.value++
    }
    if (this.semconv !== undefined) observe(this.semconvCell(cells, request, res, status), SEMCONV_HTTP_DURATION_BUCKETS, seconds, exemplar)
  }

  private recordRequest (request: FastifyRequest, reply: FastifyReply, route: RouteState): MethodCells {
    const cells = this.routes.methodCells(route, request.raw.method!)
    const f = this.f
    ;(reply.raw as StatefulResponse)[kRequestState] = cells
    this.requestsBefore.value++
    ;(cells.byMethod ??= this.methodCounter(cells.method)).value++
    const custom = this.custom
    if (request.protocol === 'https') {
      (this.byTransport.https ??= f.byTransport.cell('https')).value++
      if (route.matched) (custom === undefined ? (cells.byViewHttps ??= f.byViewTransportMethod.cell(route.view, 'https', cells.method)) : f.byViewTransportMethod.cell(route.view, 'https', cells.method, ...custom.values(request))).value++
    } else {
      (this.byTransport.http ??= f.byTransport.cell('http')).value++
      if (route.matched) (custom === undefined ? (cells.byViewHttp ??= f.byViewTransportMethod.cell(route.view, 'http', cells.method)) : f.byViewTransportMethod.cell(route.view, 'http', cells.method, ...custom.values(request))).value++
    }
    // What the client sent, as django's request.META: an app's own `request.headers` additions are not.
    const headers = request.raw.headers
    if (headers['x-requested-with'] === 'XMLHttpRequest') this.ajax.value++
    const length = headers['content-length']
    observe(this.requestBody, DJANGO_BODY_BUCKETS, length === undefined ? 0 : (Number(length) || 0))
    return cells
  }

  private charsetCell (contentType: unknown): Cell {
    if (contentType === this.lastContentType && this.lastCharset !== undefined) return this.lastCharset
    const charset = charsetOf(contentType)
    let cell = this.byCharset.get(charset)
    if (cell === undefined) {
      cell = this.f.byCharset.cell(charset)
      if (this.byCharset.size < 256) this.byCharset.set(charset, cell)
    }
    this.lastContentType = contentType
    this.lastCharset = cell
    return cell
  }

  private methodCounter (method: string): Cell {
    let cell = this.byMethod.get(method)
    if (cell === undefined) {
      cell = this.f.byMethod.cell(method)
      this.byMethod.set(method, cell)
    }
    return cell
  }

  /** `custom`: the request's custom label values, when `http.labels` is set. */
  private latencyCell (cells: MethodCells, custom: string[] | undefined): HistogramCell {
    if (custom !== undefined) return this.f.latencyByViewMethod.cell(cells.route.view, cells.latencyMethod, ...custom) as HistogramCell
    return (cells.latency ??= this.f.latencyByViewMethod.cell(cells.route.view, cells.latencyMethod) as HistogramCell)
  }

  private semconvCell (cells: MethodCells, request: FastifyRequest, res: StatefulResponse, status: number): HistogramCell {
    const scheme = request.protocol === 'https' ? 'https' : 'http'
    const series = (cells.semconv ??= { http: new Map(), https: new Map(), failed: new Map() })
    const errorType = res[kErrorType] ?? (status >= 500 ? String(status) : undefined)
    if (errorType !== undefined) {
      const key = `${scheme} ${status} ${errorType}`
      let cell = series.failed.get(key)
      if (cell === undefined) {
        cell = this.semconv!.cell(cells.semconvMethod, cells.route.template, status, scheme, errorType) as HistogramCell
        series.failed.set(key, cell)
      }
      return cell
    }
    const byScheme = series[scheme]
    let cell = byScheme.get(status)
    if (cell === undefined) {
      cell = this.semconv!.cell(cells.semconvMethod, cells.route.template, status, scheme, undefined) as HistogramCell
      byScheme.set(status, cell)
    }
    return cell
  }
}
