import { readFileSync } from 'node:fs'
import { join, sep } from 'node:path'
import type { InstrumentationBase, InstrumentationModuleDefinition, InstrumentationModuleFile } from '@opentelemetry/instrumentation'
import { satisfies as semverSatisfies } from 'semver'

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
  /** The versions each definition and file declared it supports (their own ranges are widened to '*', see trackPatches). */
  readonly ranges: Map<InstrumentationModuleDefinition | InstrumentationModuleFile, Claim>
  refs: number
  readonly records: PatchRecord[]
  readonly warned: Set<string>
  /** Loggers of the current holders; the latest reports a copy that loads later. */
  readonly logs: PatchLogger[]
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

/** The versions a definition or file supports: its ranges, prereleases included only when its definition says so. */
interface Claim {
  readonly ranges: readonly string[]
  readonly includePrerelease: boolean
}

function claimOf (state: PatchState, target: InstrumentationModuleDefinition | InstrumentationModuleFile, definition: InstrumentationModuleDefinition): Claim {
  return state.ranges.get(target) ?? { ranges: target.supportedVersions, includePrerelease: definition.includePrerelease === true }
}

/**
 * Makes every patch the instrumentation applies (hooks included) known here, so each copy can be
 * unpatched. The load hooks only offer a module to `patch` when its version is in range, so a copy
 * out of range would load unnoticed: they are made to offer every version, and the range is
 * checked here instead, where a copy that cannot be patched is reported as it loads.
 */
function trackPatches (state: PatchState): void {
  for (const definition of state.definitions) {
    const includePrerelease = definition.includePrerelease === true
    const range: Claim = { ranges: definition.supportedVersions, includePrerelease }
    state.ranges.set(definition, range)
    definition.supportedVersions = ['*']
    // '*' alone leaves prereleases out (semver's rule): offered too, they are checked (and reported) here.
    definition.includePrerelease = true
    const patch = definition.patch
    if (typeof patch === 'function') {
      definition.patch = (exports: unknown, version?: string) => {
        if (!supports(range, version)) {
          reportUnsupported(state, definition.name, exports, version, range)
          return exports
        }
        const patched = patch.call(definition, exports, version)
        record(state, definition, exports, version)
        return patched
      }
    }
    for (const file of definition.files ?? []) {
      const fileRange: Claim = { ranges: file.supportedVersions, includePrerelease }
      state.ranges.set(file, fileRange)
      file.supportedVersions = ['*']
      const filePatch = file.patch
      file.patch = (exports: unknown, version?: string) => {
        if (!supports(fileRange, version)) {
          // A file may be patched for some of the package's versions only: the package's range decides.
          if (!supports(range, version)) reportUnsupported(state, definition.name, exports, version, range)
          return exports
        }
        const patched = filePatch.call(file, exports, version)
        record(state, file, exports, version)
        return patched
      }
    }
  }
}

function unsupportedReason (version: string | undefined, range: Claim): string {
  return `version ${version ?? 'unknown'} is outside the supported ${range.ranges.join(' || ')}`
}

/** A copy the load hooks offered that is out of range: warned about once, as a loaded one found at acquire time is. */
function reportUnsupported (state: PatchState, name: string, exports: unknown, version: string | undefined, range: Claim): void {
  const dir = packageDirOfExports(name, exports) ?? `${name}@${version ?? 'unknown'}`
  warnOnce(state, [{ name, dir, version, patched: false, reason: unsupportedReason(version, range) }], state.logs.at(-1))
}

/** `…/node_modules/<name>` of a file inside that package, or undefined. */
function packageDirOf (filename: string, name: string): string | undefined {
  const needle = `${sep}node_modules${sep}${name.split('/').join(sep)}${sep}`
  const at = filename.lastIndexOf(needle)
  return at === -1 ? undefined : filename.slice(0, at + needle.length - 1)
}

function packageDirOfExports (name: string, exports: unknown): string | undefined {
  for (const [filename, module] of Object.entries(require.cache)) {
    if (module?.exports === exports) return packageDirOf(filename, name)
  }
  return undefined
}

/** Directories of every copy of package `name` with at least one file in `require.cache`. */
export function loadedPackageDirs (name: string): string[] {
  const dirs = new Set<string>()
  for (const filename of Object.keys(require.cache)) {
    const dir = packageDirOf(filename, name)
    if (dir !== undefined) dirs.add(dir)
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

/**
 * Whether `version` is in one of `ranges`, as OpenTelemetry's instrumentations decide it (semver; an
 * unknown version only for `*`; a prerelease only with `includePrerelease`).
 */
export function satisfies (version: string | undefined, ranges: readonly string[], includePrerelease = false): boolean {
  if (version === undefined) return ranges.includes('*')
  return ranges.some((range) => semverSatisfies(version, range, { includePrerelease }))
}

function supports (claim: Claim, version: string | undefined): boolean {
  return satisfies(version, claim.ranges, claim.includePrerelease)
}

/** Patches the copies of the instrumented modules already loaded; returns what it found. */
function patchLoaded (state: PatchState, verify: PatchSpec['verify']): LoadedCopy[] {
  const found: LoadedCopy[] = []
  for (const definition of state.definitions) {
    for (const dir of loadedPackageDirs(definition.name)) {
      const version = packageVersion(dir)
      const copy = (patched: boolean, reason?: string): LoadedCopy => ({ name: definition.name, dir, version, patched, reason })
      const range = claimOf(state, definition, definition)
      if (!supports(range, version)) {
        found.push(copy(false, unsupportedReason(version, range)))
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
          if (relative === undefined || !supports(claimOf(state, file, definition), version)) continue
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

/** Fastify without a logger hands out one that drops everything (no level); this warning must be seen all the same. */
export function writes (log: PatchLogger | undefined): log is PatchLogger {
  const l = log as { level?: unknown, isLevelEnabled?: unknown } | undefined
  return typeof l?.level === 'string' || typeof l?.isLevelEnabled === 'function'
}

function warnOnce (state: PatchState, copies: readonly LoadedCopy[], log: PatchLogger | undefined): void {
  for (const c of copies) {
    if (c.patched || state.warned.has(c.dir)) continue
    state.warned.add(c.dir)
    const msg = `upstream-metrics: ${c.name}${c.version === undefined ? '' : '@' + c.version} is loaded (${c.dir}) but could not be instrumented: ${c.reason ?? 'unknown reason'}; its calls are not measured. To fix, ${PRELOAD_HINT}`
    if (writes(log)) log.warn({ module: c.name, version: c.version, dir: c.dir }, msg)
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
    state = { instrumentation, definitions, ranges: new Map(), refs: 0, records: [], warned: new Set(), logs: [] }
    trackPatches(state)
    reg.set(spec.key, state)
  }
  const s = state
  if (log !== undefined) s.logs.push(log)
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
      if (log !== undefined) s.logs.splice(s.logs.lastIndexOf(log), 1)
      if (--s.refs === 0) unpatchAll(s)
    }
  }
}

/** How many holders the instrumentation of `key` has (0 when it is not patched at all). */
export function patchRefs (key: string): number {
  return registry().get(key)?.refs ?? 0
}
