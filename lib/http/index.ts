import type { FastifyInstance } from 'fastify'
import type { Faults } from '../faults'
import type { ResolvedOptions } from '../options'
import type { Store } from '../store'
import { untracedAddHook } from '../fastify-internals'
import { HttpRecorder } from './recorder'
import { checkRouteConfig } from './route-config'
import { wrapReplies, wrapViews } from './reply-patches'

export { exceptionType } from './labels'
export { kScrapeRoute } from './routes'

/**
 * The django-prometheus middleware pair as Fastify hooks: request-side counters in
 * `onRequest` (django's Before/After `process_request` and `process_view`), response
 * side in `onResponse`, exceptions in `onError`. A request whose `onRequest` never ran
 * (an earlier hook answered it) is recorded on both sides when it responds; a request
 * whose client left is recorded when its handler's reply is written (see `wrapReplies`).
 */
export function instrumentHttp (fastify: FastifyInstance, store: Store, options: ResolvedOptions, faults: Faults): void {
  const recorder = new HttpRecorder(store, options, faults)
  fastify.decorateRequest(HttpRecorder.stateKey as unknown as string, null)
  const addHook = untracedAddHook(fastify)

  fastify.addHook('onRoute', function upstreamMetricsCheckRoute (route) {
    const methods = Array.isArray(route.method) ? route.method.join(',') : route.method
    checkRouteConfig(route.config, `${methods} ${route.url}`)
  })

  addHook('onRequest', function upstreamMetricsOnRequest (request, reply, done) {
    try {
      recorder.track(request)
    } catch (err) {
      faults.report(err)
    }
    done()
  })

  addHook('onError', function upstreamMetricsOnError (request, reply, error, done) {
    try {
      recorder.recordError(request, reply, error)
    } catch (err) {
      faults.report(err)
    }
    done()
  })

  addHook('onResponse', function upstreamMetricsOnResponse (request, reply, done) {
    try {
      recorder.recordResponse(request, reply)
    } catch (err) {
      faults.report(err)
    }
    done()
  })

  wrapReplies(fastify, (reply) => {
    try {
      recorder.recordResponse(reply.request, reply)
    } catch (err) {
      faults.report(err)
    }
  }, faults)
  wrapViews(fastify)
}
