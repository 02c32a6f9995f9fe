import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Faults } from '../faults'
import type { ResolvedOptions } from '../options'
import type { Store } from '../store'
import { addFirstRequestHook, untracedAddHook } from '../fastify-internals'
import { HttpRecorder } from './recorder'
import { checkRouteConfig } from './route-config'
import { wrapReplies, wrapViews } from './reply-patches'
import { ResponseFinish } from './response-finish'

export { exceptionType } from './labels'
export { kScrapeRoute } from './routes'

/**
 * The django-prometheus middleware pair on Fastify: request-side counters and the start of
 * the latency in an `onRequest` hook that runs before every other (django's Before/After
 * `process_request` and `process_view`), exceptions in `onError`, and the response side when
 * the response finishes, heard without an `onResponse` hook (see `ResponseFinish`). A request
 * whose client left is recorded when its handler's reply is written (see `wrapReplies`).
 */
export function instrumentHttp (fastify: FastifyInstance, store: Store, options: ResolvedOptions, faults: Faults): void {
  const recorder = new HttpRecorder(store, options, faults)
  const addHook = untracedAddHook(fastify)

  fastify.addHook('onRoute', function upstreamMetricsCheckRoute (route) {
    const methods = Array.isArray(route.method) ? route.method.join(',') : route.method
    checkRouteConfig(route.config, `${methods} ${route.url}`)
  })

  const recordResponse = (reply: FastifyReply): void => {
    try {
      recorder.recordResponse(reply.request, reply)
    } catch (err) {
      faults.report(err)
    }
  }
  const finished = new ResponseFinish(recordResponse)
  fastify.addHook('onClose', function upstreamMetricsStopHearing (instance, done) {
    finished.close()
    done()
  })

  addFirstRequestHook(fastify, function upstreamMetricsOnRequest (request: FastifyRequest, reply: FastifyReply, done: () => void) {
    try {
      if (recorder.start(request, reply) !== undefined) finished.watch(reply)
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

  wrapReplies(fastify, recordResponse, faults)
  wrapViews(fastify)
}
