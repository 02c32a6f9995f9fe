import { InvalidOptionError } from '../errors'
import { describe } from '../redact'
import type { RouteMetricsConfig } from '../types'
import { isPlainObject } from '../validate'

const KEYS = ['view', 'exclude']
const MAX_VIEW_LENGTH = 200

/** What is wrong with a route's `config.metrics`: [the key's path, the rule, what was given]; undefined when valid. */
function problem (metrics: unknown): [string, string, string] | undefined {
  if (metrics === undefined) return undefined
  if (!isPlainObject(metrics)) return ['', 'must be an object with view or exclude', describe(metrics)]
  for (const key of Object.keys(metrics)) {
    if (!KEYS.includes(key)) return [`.${key}`, `is not a route option (${KEYS.join(', ')})`, describe(metrics[key])]
  }
  const { view, exclude } = metrics
  if (view !== undefined && (typeof view !== 'string' || view.length === 0 || view.length > MAX_VIEW_LENGTH)) {
    return ['.view', `must be a non-empty string of at most ${MAX_VIEW_LENGTH} characters`, describe(view)]
  }
  if (exclude !== undefined && typeof exclude !== 'boolean') return ['.exclude', 'must be true or false', describe(exclude)]
  return undefined
}

function metricsOf (config: unknown): unknown {
  return typeof config === 'object' && config !== null ? (config as { metrics?: unknown }).metrics : undefined
}

function invalid (found: [string, string, string], route: string): Error {
  return new InvalidOptionError(`config.metrics${found[0]}" of route "${route}`, found[1], found[2])
}

/** At a route's declaration: a wrong `config.metrics` fails it, naming the route and the key. */
export function checkRouteConfig (config: unknown, route: string): void {
  let found: [string, string, string] | undefined
  try {
    found = problem(metricsOf(config))
  } catch {
    // A config that throws when read is no wrong option: met again at the request, where faults are isolated and logged.
    return
  }
  if (found !== undefined) throw invalid(found, route)
}

/**
 * At a route's first request (a route declared before the plugin was not checked at its
 * declaration): a wrong `config.metrics` is reported and left out, and the route measured as if it had none.
 */
export function readRouteConfig (config: unknown, route: string, report: (err: Error) => void): RouteMetricsConfig | undefined {
  const metrics = metricsOf(config)
  const found = problem(metrics)
  if (found === undefined) return metrics as RouteMetricsConfig | undefined
  report(invalid(found, route))
  return undefined
}
