import { readFileSync } from 'node:fs'
import { join, sep } from 'node:path'
import type { InstrumentationBase, InstrumentationModuleDefinition, InstrumentationModuleFile } from '@opentelemetry/instrumentation'

/**
 * The one owner of module patching for the OpenTelemetry instrumentations this plugin
 * uses (pg, ioredis, …). OpenTelemetry only patches a module when it is loaded *after*
 * the instrumentation is enabled; real apps import their database client first. So an
 * acquire here (1) enables the instrumentation for copies loaded later and (2) patches
 * every copy already in `require.cache` through its module definitions. Instrumentations
 * are process-wide singletons, shared by every plugin instance (and the preload entry)
 * and reference-counted: the patches are removed when the last holder releases.
 */

export interface PatchLogger {
  warn: (obj: object, msg: string) => void
}

export interface PatchSpec<I extends InstrumentationBase = InstrumentationBase> {
  /** Process-wide identity of the instrumentation, e.g. `pg`. */
  readonly key: string
  /** Builds the instrumentation; it must be created with `enabled: false` (acquire enables it). */
  readonly create: () => I
  /**
   * Tells whether one loaded copy really is patched, given its main exports; when it returns
   * false for a copy that is present, the single warning is logged.
   */
  readonly verify?: (moduleName: string, moduleExports: unknown) => boolean
}

export interface LoadedCopy {
  readonly name: string
  readonly dir: string
  readonly version: string | undefined
  readonly patched: boolean
  /** Why the copy could not be patched. */
  readonly reason?: string
}

export interface PatchLease<I extends InstrumentationBase = InstrumentationBase> {
  readonly instrumentation: I
  /** The copies found already loaded at acquire time, patched or not. */
  readonly loaded: readonly LoadedCopy[]
  /** Gives the reference back; the last one removes every patch. Idempotent. */
  release: () => void
}

interface PatchRecord {
  readonly target: InstrumentationModuleDefinition | InstrumentationModuleFile
  readonly exports: unknown
  readonly version: string | undefined
}

interface PatchState {
  readonly instrumentation: InstrumentationBase
  /** The definitions the instrumentation's own load hooks use (getModuleDefinitions() builds new ones per call). */
  readonly definitions: InstrumentationModuleDefinition[]
  refs: number
  readonly records: PatchRecord[]
  readonly warned: Set<string>
}

export const PRELOAD_HINT = 'start Node with `--import upstream-metrics/register` (ESM) or `--require upstream-metrics/register` (CommonJS) so it is instrumented as it loads; for a bundle, mark the module as external'

const REGISTRY = Symbol.for('upstream-metrics.patch-registry')
type Registry = Map<string, PatchState>

function registry (): Registry {
  const holder = globalThis as unknown as Record<symbol, Registry | undefined>
  holder[REGISTRY] ??= new Map()
  return holder[REGISTRY]
}

function record (state: PatchState, target: PatchRecord['target'], exports: unknown, version: string | undefined): void {
  if (exports === undefined || exports === null) return
  if (state.records.some((r) => r.target === target && r.exports === exports)) return
  state.records.push({ target, exports, version })
}

/** Makes every patch the instrumentation applies (hooks included) known here, so each copy can be unpatched. */
function trackPatches (state: PatchState): void {
  for (const definition of state.definitions) {
    const patch = definition.patch
    if (typeof patch === 'function') {
      definition.patch = (exports: unknown, version?: string) => {
        const patched = patch.call(definition, exports, version)
        record(state, definition, exports, version)
        return patched
      }
    }
    for (const file of definition.files ?? []) {
      const filePatch = file.patch
      file.patch = (exports: unknown, version?: string) => {
        const patched = filePatch.call(file, exports, version)
        record(state, file, exports, version)
        return patched
      }
    }
  }
}

/** Directories of every copy of package `name` with at least one file in `require.cache`. */
export function loadedPackageDirs (name: string): string[] {
  const needle = `${sep}node_modules${sep}${name.split('/').join(sep)}${sep}`
  const dirs = new Set<string>()
  for (const filename of Object.keys(require.cache)) {
    const at = filename.lastIndexOf(needle)
    if (at !== -1) dirs.add(filename.slice(0, at + needle.length - 1))
  }
  return [...dirs]
}

function packageVersion (dir: string): string | undefined {
  try {
    const version = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: unknown }).version
    return typeof version === 'string' ? version : undefined
  } catch {
    return undefined
  }
}

function mainFile (dir: string): string | undefined {
  try {
    return require.resolve(dir)
  } catch {
    return undefined
  }
}

const COMPARATOR = /^(>=|<=|>|<|=|\^|~)?v?(\d+)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?$/

function compare (a: number[], b: number[]): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return 0
}

/** The subset of semver ranges instrumentations declare: `>=1.2.3 <4`, `^2`, `1.x`, `*`, joined by `||`. */
export function satisfies (version: string | undefined, ranges: readonly string[]): boolean {
  if (ranges.length === 0 || ranges.includes('*')) return true
  const parsed = version === undefined ? undefined : /^(\d+)\.(\d+)\.(\d+)/.exec(version)
  if (parsed === null || parsed === undefined) return false
  const v = [Number(parsed[1]), Number(parsed[2]), Number(parsed[3])]
  return ranges.some((range) => range.split('||').some((set) => set.trim().split(/\s+/).every((token) => {
    if (token === '' || token === '*' || token === 'x') return true
    const m = COMPARATOR.exec(token)
    if (m === null) return false
    const op = m[1] ?? '='
    const parts = [Number(m[2]), m[3] === undefined || m[3] === 'x' || m[3] === '*' ? undefined : Number(m[3]), m[4] === undefined || m[4] === 'x' || m[4] === '*' ? undefined : Number(m[4])]
    const low = parts.map((p) => p ?? 0)
    const c = compare(v, low)
    switch (op) {
      case '>=': return c >= 0
      case '>': return c > 0
      case '<=': return c <= 0
      case '<': return c < 0
      case '^': return c >= 0 && v[0] === low[0] && (low[0] !== 0 || v[1] === low[1])
      case '~': return c >= 0 && v[0] === low[0] && (parts[1] === undefined || v[1] === low[1])
      default: return parts.every((p, i) => p === undefined || p === v[i])
    }
  })))
}

/** Patches the copies of the instrumented modules already loaded; returns what it found. */
function patchLoaded (state: PatchState, verify: PatchSpec['verify']): LoadedCopy[] {
  const found: LoadedCopy[] = []
  for (const definition of state.definitions) {
    for (const dir of loadedPackageDirs(definition.name)) {
      const version = packageVersion(dir)
      const copy = (patched: boolean, reason?: string): LoadedCopy => ({ name: definition.name, dir, version, patched, reason })
      if (!satisfies(version, definition.supportedVersions)) {
        found.push(copy(false, `version ${version ?? 'unknown'} is outside the supported ${definition.supportedVersions.join(' || ')}`))
        continue
      }
      const main = mainFile(dir)
      const exports = main === undefined ? undefined : require.cache[main]?.exports
      try {
        if (exports !== undefined && typeof definition.patch === 'function' && !state.records.some((r) => r.target === definition && r.exports === exports)) {
          definition.patch(exports, version)
        }
        for (const file of definition.files ?? []) {
          const relative = file.name.startsWith(definition.name + '/') ? file.name.slice(definition.name.length + 1) : undefined
          if (relative === undefined || !satisfies(version, file.supportedVersions)) continue
          const fileExports = require.cache[join(dir, relative)]?.exports
          if (fileExports !== undefined && !state.records.some((r) => r.target === file && r.exports === fileExports)) file.patch(fileExports, version)
        }
      } catch (err) {
        found.push(copy(false, `patching failed: ${err instanceof Error ? err.message : String(err)}`))
        continue
      }
      if (exports !== undefined && verify !== undefined && !safeVerify(verify, definition.name, exports)) {
        found.push(copy(false, 'it was patched but the patch is not in place (another instrumentation or a frozen module?)'))
        continue
      }
      found.push(copy(true))
    }
  }
  return found
}

function safeVerify (verify: NonNullable<PatchSpec['verify']>, name: string, exports: unknown): boolean {
  try {
    return verify(name, exports)
  } catch {
    return false
  }
}

function unpatchAll (state: PatchState): void {
  for (const r of state.records.splice(0)) {
    try {
      r.target.unpatch?.(r.exports, r.version)
    } catch {}
  }
  // disable() unpatches the last copy it saw itself: it has been done above, for every copy.
  for (const definition of state.definitions) {
    definition.moduleExports = undefined
    for (const file of definition.files ?? []) file.moduleExports = undefined
  }
  state.instrumentation.disable()
}

function warnOnce (state: PatchState, copies: readonly LoadedCopy[], log: PatchLogger | undefined): void {
  for (const c of copies) {
    if (c.patched || state.warned.has(c.dir)) continue
    state.warned.add(c.dir)
    const msg = `upstream-metrics: ${c.name}${c.version === undefined ? '' : '@' + c.version} is loaded (${c.dir}) but could not be instrumented: ${c.reason ?? 'unknown reason'}; its calls are not measured. To fix, ${PRELOAD_HINT}`
    if (log !== undefined) log.warn({ module: c.name, version: c.version, dir: c.dir }, msg)
    else process.emitWarning(msg, { code: 'UPSTREAM_METRICS_NOT_INSTRUMENTED' })
  }
}

/**
 * Takes a reference on the instrumentation of `spec.key`, creating and enabling it on
 * first use and patching copies already loaded. `log` receives the single warning when
 * a loaded copy cannot be patched (default: `process.emitWarning`).
 */
export function acquirePatch<I extends InstrumentationBase> (spec: PatchSpec<I>, log?: PatchLogger): PatchLease<I> {
  const reg = registry()
  let state = reg.get(spec.key)
  if (state === undefined) {
    const instrumentation = spec.create()
    if (instrumentation.isEnabled()) instrumentation.disable()
    const own = (instrumentation as unknown as { _modules?: unknown })._modules
    const definitions = Array.isArray(own) ? own as InstrumentationModuleDefinition[] : instrumentation.getModuleDefinitions()
    state = { instrumentation, definitions, refs: 0, records: [], warned: new Set() }
    trackPatches(state)
    reg.set(spec.key, state)
  }
  const s = state
  if (s.refs === 0) s.instrumentation.enable()
  s.refs++
  const loaded = patchLoaded(s, spec.verify)
  warnOnce(s, loaded, log)
  let released = false
  return {
    instrumentation: s.instrumentation as I,
    loaded,
    release () {
      if (released) return
      released = true
      if (--s.refs === 0) unpatchAll(s)
    }
  }
}

/** How many holders the instrumentation of `key` has (0 when it is not patched at all). */
export function patchRefs (key: string): number {
  return registry().get(key)?.refs ?? 0
}
