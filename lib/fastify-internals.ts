import type { FastifyInstance, FastifyReply, onRequestHookHandler } from 'fastify'

// Fastify's (and @fastify/otel's) private state that the plugin must reach, found by the
// descriptions of their symbols; each lookup falls back to public behaviour when absent.

function own (instance: object, description: string): unknown {
  const symbol = privateKey(instance, description)
  return symbol === null ? undefined : (instance as Record<symbol, unknown>)[symbol]
}

/** The reply prototype of this Fastify instance (its own, not the one every instance shares). */
export function replyPrototype (fastify: FastifyInstance): Record<string, unknown> | undefined {
  const Reply = own(fastify, 'fastify.Reply')
  const proto = typeof Reply === 'function' ? (Reply as { prototype?: unknown }).prototype : undefined
  return typeof proto === 'object' && proto !== null && typeof (proto as { send?: unknown }).send === 'function'
    ? proto as Record<string, unknown>
    : undefined
}

/**
 * Takes `name` out of the instance's plugin-name chain, which `fastify-plugin` extends with
 * every plugin registered on it: `fastify.pluginName` (and so @fastify/otel's names for the
 * app's anonymous handlers and hooks) stays what the app's own plugins make it.
 */
export function leavePluginName (fastify: FastifyInstance, name: string): void {
  const chain = own(fastify, 'fastify.pluginNameChain')
  if (!Array.isArray(chain)) return
  const at = chain.lastIndexOf(name)
  if (at > 0) chain.splice(at, 1)
}

/**
 * `addHook` as Fastify defines it: @fastify/otel replaces `addHook` so that every hook added
 * after it runs in a span of its own; the plugin's hooks, run on every request, stay out of traces.
 */
export function untracedAddHook (fastify: FastifyInstance): FastifyInstance['addHook'] {
  const original = own(fastify, 'fastify otel addhook original')
  return (typeof original === 'function' ? original : fastify.addHook).bind(fastify) as FastifyInstance['addHook']
}

/**
 * Adds `hook` as an `onRequest` hook that runs before every hook added earlier, as django's Before
 * middleware comes first: added as Fastify adds hooks (to the instance and every child context),
 * then moved to the front of each of those lists. Left where Fastify put it (after hooks added
 * earlier) when this Fastify version hides its hook lists.
 */
export function addFirstRequestHook (fastify: FastifyInstance, hook: onRequestHookHandler): void {
  untracedAddHook(fastify)('onRequest', hook)
  // Fastify adds a request hook once the current plugin has loaded; this runs right after that
  // (no parameter: an error of the plugin goes on to the next listener).
  fastify.after(() => moveToFront(fastify, hook))
}

function moveToFront (instance: object, hook: onRequestHookHandler): void {
  const hooks = own(instance, 'fastify.hooks') as { onRequest?: unknown } | undefined
  const list = hooks?.onRequest
  if (Array.isArray(list)) {
    const at = list.indexOf(hook)
    if (at > 0) {
      list.splice(at, 1)
      list.unshift(hook)
    }
  }
  const children = own(instance, 'fastify.children')
  if (Array.isArray(children)) for (const child of children) moveToFront(child, hook)
}

/** The symbol of an own private property (of Fastify's instances, requests or replies), by its description; `null` when absent. */
function privateKey (instance: object, description: string): symbol | null {
  return Object.getOwnPropertySymbols(instance).find((s) => s.description === description) ?? null
}

// Each read by a function of its own: a property access shared by requests and replies would be megamorphic.
let routeContextKey: symbol | null | undefined
let replyHeadersKey: symbol | null | undefined

/**
 * The request's route context: one object per route (and per 404 handler), which the public
 * `request.routeOptions` getter copies into a new object of twelve fields on every call.
 */
export function routeContextOf (request: object): object | undefined {
  const key = routeContextKey ??= privateKey(request, 'fastify.context')
  return key === null ? undefined : (request as Record<symbol, object | undefined>)[key]
}

/** A header the reply has set, as `reply.getHeader` reads it, without lower-casing a name that already is. */
export function replyHeader (reply: FastifyReply, lowerCaseName: string): unknown {
  const key = replyHeadersKey ??= privateKey(reply, 'fastify.reply.headers')
  const value = key === null ? undefined : (reply as unknown as Record<symbol, Record<string, unknown> | undefined>)[key]?.[lowerCaseName]
  return value === undefined ? reply.getHeader(lowerCaseName) : value
}
