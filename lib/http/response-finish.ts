import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { IncomingMessage, type ServerResponse } from 'node:http'
import type { FastifyReply } from 'fastify'

const CHANNEL = 'http.server.response.finish'

type TaggedResponse = ServerResponse & Record<symbol, FastifyReply | undefined>

/**
 * Tells when a reply's response has finished, the moment Fastify runs `onResponse`, without that
 * hook: with one, Fastify adds and removes a `finish` and an `error` listener on every response,
 * the costliest step of its hook floor. Node's HTTP server announces every finished response on
 * the `http.server.response.finish` diagnostics channel; a response that does not come from it
 * (`inject()`, HTTP/2) gets the two listeners instead.
 */
export class ResponseFinish {
  /** One per plugin instance: each of several apps in a process hears its own replies only. */
  private readonly key = Symbol('upstream-metrics.reply')
  private readonly onMessage: (message: unknown) => void

  constructor (private readonly onFinished: (reply: FastifyReply) => void) {
    const key = this.key
    this.onMessage = (message) => {
      const reply = (message as { response: TaggedResponse }).response[key]
      if (reply !== undefined) onFinished(reply)
    }
    subscribe(CHANNEL, this.onMessage)
  }

  /** Calls back once when the reply's response finishes (or fails). */
  watch (reply: FastifyReply): void {
    const req = reply.request.raw
    if (req.constructor === IncomingMessage || req instanceof IncomingMessage) {
      (reply.raw as TaggedResponse)[this.key] = reply
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
