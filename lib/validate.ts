import { InvalidOptionError } from './errors'
import { kind } from './redact'

/** `got` says what was given without a secret in it: `kind`, `describe`, `show` or `showUrl` of the value (see redact.ts). */
export function fail (option: string, expected: string, got: string): never {
  throw new InvalidOptionError(option, expected, got)
}

/**
 * Unknown keys are refused at every level; their values are never shown (a misplaced password, a token).
 * `passed` are keys others may add and that mean nothing here: accepted, not listed; `hint` ends the error.
 */
export function onlyKeys (value: Record<string, unknown>, prefix: string, allowed: readonly string[], passed: readonly string[] = [], hint = ''): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key) && !passed.includes(key)) fail(prefix + key, `is not an option (allowed: ${allowed.join(', ')})${hint}`, kind(value[key]))
  }
}

export function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
