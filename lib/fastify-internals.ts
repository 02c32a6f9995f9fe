import type { FastifyInstance } from 'fastify'

// Fastify's (and @fastify/otel's) private state that the plugin must reach, found by the
// descriptions of their symbols; each lookup falls back to public behaviour when absent.

function own (instance: object, description: string): unknown {
  const symbol = Object.getOwnPropertySymbols(instance).find((s) => s.description === description)
  return symbol === undefined ? undefined : (instance as Record<symbol, unknown>)[symbol]
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
