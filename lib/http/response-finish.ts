import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { IncomingMessage, type ServerResponse } from 'node:http'
import type { FastifyReply } from 'fastify'

const CHANNEL = 'http.server.response.finish'

/**
 * Tells when a reply's response has finished, the moment Fastify runs `onResponse`, without that
 * hook: with one, Fastify adds and removes a `finish` and an `error` listener on every response,
 * the costliest step of its hook floor. Node's HTTP server announces every finished response on
 * the `http.server.response.finish` diagnostics channel; a response that does not come from it
 * (`inject()`, HTTP/2) gets the two listeners instead.
 */
export class ResponseFinish {
  /**
   * The replies whose response is awaited, by raw response; one map per plugin instance, so each of
   * several apps in a process hears its own. Not a property of the response: Node's responses take a
   * few hidden classes, and a property added to all of them can turn every add into a slow runtime call.
   */
  private readonly awaited = new WeakMap<ServerResponse, FastifyReply>()
  private readonly onMessage: (message: unknown) => void

  constructor (private readonly onFinished: (reply: FastifyReply) => void) {
    const awaited = this.awaited
    this.onMessage = (message) => {
      const res = (message as { response: ServerResponse }).response
      const reply = awaited.get(res)
      if (reply === undefined) return
      awaited.delete(res)
      onFinished(reply)
    }
    subscribe(CHANNEL, this.onMessage)
  }

  /** Calls back once when the reply's response finishes (or fails). */
  watch (reply: FastifyReply): void {
    const req = reply.request.raw
    if (req.constructor === IncomingMessage || req instanceof IncomingMessage) {
      this.awaited.set(reply.raw as ServerResponse, reply)
      return
    }
    const res = reply.raw
    const onFinished = this.onFinished
    const done = (): void => {
      res.removeListener('finish', done)
      res.removeListener('error', done)
      onFinished(reply)
    }
    res.on('finish', done)
    res.on('error', done)
  }

  close (): void {
    unsubscribe(CHANNEL, this.onMessage)
  }
}
