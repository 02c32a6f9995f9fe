import type { ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { Faults } from '../faults'
import { replyPrototype } from '../fastify-internals'
import { templateName } from './labels'

// The one module that patches replies: `reply.send` and `reply.hijack` on Fastify's private
// reply prototypes, the raw response's `end`, and @fastify/view's `reply.view`.

/** On a reply whose payload is a stream (set by the `send` wrapper). */
const kStreamed = Symbol('upstream-metrics.streamed')
/** On a reply rendered by `reply.view`: its `templatename` label. */
const kTemplate = Symbol('upstream-metrics.template')
/** On the wrappers this module installs, so a prototype is wrapped once. */
const kWrapper = Symbol('upstream-metrics.wrapper')

type MarkedReply = FastifyReply & { [kStreamed]?: boolean, [kTemplate]?: string }
type Send = (this: FastifyReply, payload?: unknown) => FastifyReply
type Hijack = (this: FastifyReply) => FastifyReply
type Wrapped<F> = F & { [kWrapper]?: true }

/** Whether the handler replied with a stream or wrote the response itself (a streaming response for django). */
export function isStreamed (reply: FastifyReply): boolean {
  return (reply as MarkedReply)[kStreamed] === true
}

/** The template `reply.view` rendered, if it did. */
export function templateOf (reply: FastifyReply): string | undefined {
  return (reply as MarkedReply)[kTemplate]
}

/** What Fastify's `reply.send` pipes instead of writing at once: Node and web streams, a `Response`'s body. */
function isStreamPayload (payload: object): boolean {
  return typeof (payload as { pipe?: unknown }).pipe === 'function' ||
    typeof (payload as { getReader?: unknown }).getReader === 'function' ||
    // A plain object (most JSON replies) is no Response: `instanceof` would cost it about 200 instructions.
    (payload.constructor !== Object && typeof Response === 'function' && payload instanceof Response && payload.body !== null)
}

/**
 * `reply.send` is where a handler's reply reaches Fastify, whatever the handler's style: the
 * one place that sees a stream payload (piped with its Content-Length, a streaming response
 * for django) and a reply to a client that already left. Wrapped once, on this instance's
 * reply prototype; per reply it costs a type check and two property reads. `reply.hijack`,
 * the other way a reply reaches the client, is wrapped too. `onAbandoned` records the
 * response of a reply whose client left: Fastify never runs `onResponse` for it.
 */
export function wrapReplies (fastify: FastifyInstance, onAbandoned: (reply: FastifyReply) => void, faults: Faults): void {
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

  /** A reply still being transferred ends without `finish` when its client leaves: record it then (or now, if it left). */
  function watchClose (reply: FastifyReply): void {
    const res = reply.raw
    if (res.destroyed) {
      onAbandoned(reply)
      return
    }
    try {
      res.once('close', () => {
        if (!res.writableFinished) onAbandoned(reply)
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
      onAbandoned(reply)
      return (end as (...a: unknown[]) => ServerResponse).apply(this, args)
    } as Wrapped<ServerResponse['end']>
    endAfterAbandon[kWrapper] = true
    try {
      res.end = endAfterAbandon
    } catch (err) {
      faults.report(err)
    }
  }

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

  // A hijacked reply (server-sent events, long polls) is written by the app: django's
  // StreamingHttpResponse. Its `finish` runs `onResponse`; a client that leaves first does not.
  const hijack = proto.hijack as Wrapped<Hijack> | undefined
  if (typeof hijack !== 'function' || hijack[kWrapper] === true) return
  const metricsHijack: Wrapped<Hijack> = function (this: MarkedReply): FastifyReply {
    this[kStreamed] = true
    watchClose(this)
    return hijack.call(this)
  }
  metricsHijack[kWrapper] = true
  Object.defineProperty(proto, 'hijack', { value: metricsHijack, writable: true, configurable: true, enumerable: false })
}

/**
 * `reply.view` of @fastify/view, wrapped once on the prototype that holds it, so the reply
 * carries its template name (django's TemplateResponse). Every context that declares a route
 * is noted, and its reply prototypes are wrapped when the app is ready, when every plugin
 * (@fastify/view included, wherever it is registered) has decorated its replies.
 */
export function wrapViews (fastify: FastifyInstance): void {
  const prototypes = new Set<object>()
  const root = replyPrototype(fastify)
  if (root !== undefined) prototypes.add(root)
  fastify.addHook('onRoute', function upstreamMetricsOnRoute (this: FastifyInstance) {
    const proto = replyPrototype(this)
    if (proto !== undefined) prototypes.add(proto)
  })
  fastify.addHook('onReady', function upstreamMetricsOnReady (done) {
    for (const proto of prototypes) wrapView(proto)
    prototypes.clear()
    done()
  })
}

function wrapView (reply: object): void {
  let proto: object | null = reply
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
