import type { FastifyRequest } from 'fastify'
import { routeContextOf } from '../fastify-internals'
import { SCRAPE_VIEW, UNNAMED_VIEW } from '../names'
import type { Cell, HistogramCell } from '../store'
import { cleanMethod, latencyMethod, semconvMethod } from './labels'
import { readRouteConfig } from './route-config'

/** On the `/metrics` route's config: its view is django's scrape view, counted only with `countScrape`. */
export const kScrapeRoute = Symbol('upstream-metrics.scrape-route')
/** On Fastify's route context: the route's state, resolved on its first request. */
const kRouteState = Symbol('upstream-metrics.route-state')

/** The label values and cells of one (route, method): resolved once, reused by every request. */
export interface MethodCells {
  readonly route: RouteState
  /** The request method as sent. */
  readonly rawMethod: string
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
  /** By status code. */
  readonly byStatus: Array<Cell | undefined>
  /** `http.server.request.duration` series by status, per scheme; `undefined` while semconv is off. */
  semconv: { http: Map<number, HistogramCell>, https: Map<number, HistogramCell>, failed: Map<string, HistogramCell> } | undefined
}

export interface RouteState {
  readonly view: string
  readonly matched: boolean
  readonly excluded: boolean
  /** The route's URL template (`http.route`), when a route matched. */
  readonly template: string | undefined
  readonly methods: Map<string, MethodCells>
  /** The cells of the route's last request: most routes take one method, and a `Map` lookup costs each request about 80 instructions. */
  last: MethodCells | undefined
}

/** Each route's view label and exclusion, resolved on its first request and kept on Fastify's route context. */
export class Routes {
  private readonly states = new WeakMap<object, RouteState>()
  private readonly noConfig = {}

  constructor (
    private readonly countScrape: boolean,
    private readonly excludePaths: ReadonlyArray<string | RegExp>,
    private readonly report: (err: Error) => void
  ) {}

  of (request: FastifyRequest): RouteState {
    const context = routeContextOf(request) as { [kRouteState]?: RouteState } | undefined
    if (context === undefined) return this.resolve(request)
    return (context[kRouteState] ??= this.resolve(request))
  }

  /** A route's state, resolved on its first request; kept by its config object too, the only cache where Fastify hides its route context. */
  private resolve (request: FastifyRequest): RouteState {
    const routeOptions = request.routeOptions
    const config = routeOptions.config ?? this.noConfig
    let state = this.states.get(config)
    if (state === undefined) {
      const custom = readRouteConfig(config, `${request.method} ${routeOptions.url ?? request.url}`, this.report)
      const matched = routeOptions.url !== undefined
      const isScrape = (config as unknown as Record<symbol, unknown>)[kScrapeRoute] === true
      const view = isScrape ? SCRAPE_VIEW : matched ? (custom?.view ?? routeOptions.url!) : UNNAMED_VIEW
      const excluded = custom?.exclude === true || (isScrape && !this.countScrape)
      state = { view, matched, excluded, template: routeOptions.url, methods: new Map(), last: undefined }
      this.states.set(config, state)
    }
    return state
  }

  /** Whether a request of this route is left unmeasured, by the route's config or by `excludePaths`. */
  excludes (route: RouteState, request: FastifyRequest): boolean {
    return route.excluded || (this.excludePaths.length > 0 && this.pathExcluded(request.url))
  }

  methodCells (route: RouteState, rawMethod: string): MethodCells {
    const last = route.last
    if (last !== undefined && last.rawMethod === rawMethod) return last
    const found = route.methods.get(rawMethod)
    if (found !== undefined) return (route.last = found)
    const cells: MethodCells = {
      route,
      rawMethod,
      method: cleanMethod(rawMethod),
      latencyMethod: latencyMethod(rawMethod),
      semconvMethod: semconvMethod(rawMethod),
      latency: undefined,
      byMethod: undefined,
      byViewHttp: undefined,
      byViewHttps: undefined,
      byStatus: [],
      semconv: undefined
    }
    route.methods.set(rawMethod, cells)
    return (route.last = cells)
  }

  private pathExcluded (url: string): boolean {
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    for (const rule of this.excludePaths) {
      if (typeof rule === 'string') {
        if (rule === path) return true
        continue
      }
      rule.lastIndex = 0 // a /g or /y pattern keeps state between test() calls
      if (rule.test(path)) return true
    }
    return false
  }
}
