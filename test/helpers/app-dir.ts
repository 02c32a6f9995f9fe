import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

const root = join(__dirname, '..', '..')

export interface AppDir {
  readonly dir: string
  remove: () => void
}

function link (dir: string, name: string, target: string): void {
  const at = join(dir, 'node_modules', name)
  if (existsSync(at)) return
  mkdirSync(dirname(at), { recursive: true })
  symlinkSync(target, at, 'dir')
}

/**
 * A throwaway app directory whose `node_modules/ioredis` is a real copy of the package at
 * `source` (the instrumentation knows a module by the directory it is loaded from, so an npm
 * alias such as `node_modules/ioredis-6` is not `ioredis` to it), optionally claiming another
 * `version`. Its dependencies, `fastify`, `redis` and `upstream-metrics` (this repository, built)
 * are links to this repository's copies; `files` are copied in from test/fixtures.
 */
export function ioredisAppDir (source: string, options: { version?: string, files?: string[] } = {}): AppDir {
  const dir = mkdtempSync(join(tmpdir(), 'um-ioredis-'))
  const copy = join(dir, 'node_modules', 'ioredis')
  cpSync(source, copy, { recursive: true, dereference: true })
  const manifest = JSON.parse(readFileSync(join(copy, 'package.json'), 'utf8')) as { version: string, dependencies?: Record<string, string> }
  if (options.version !== undefined) writeFileSync(join(copy, 'package.json'), JSON.stringify({ ...manifest, version: options.version }))
  // Dependencies npm nested under the source stay in the copy; the hoisted ones are linked.
  for (const dep of Object.keys(manifest.dependencies ?? {})) {
    if (!existsSync(join(copy, 'node_modules', dep))) link(dir, dep, join(root, 'node_modules', dep))
  }
  for (const name of ['fastify', 'redis']) link(dir, name, join(root, 'node_modules', name))
  link(dir, 'upstream-metrics', root)
  for (const file of options.files ?? []) cpSync(join(root, 'test', 'fixtures', file), join(dir, file.split('/').pop()!))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/**
 * `npm pack` of this repository (built) into `dir`, installed there as a user's app would install it,
 * with `packages` (name@version) beside it; npm's cache is the machine's. Returns the tarball's name.
 */
export function installPacked (dir: string, packages: string[]): string {
  const npm = (args: string[]): string => execFileSync('npm', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 })
  npm(['pack', '--pack-destination', dir, root])
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!
  if (!existsSync(join(dir, 'package.json'))) writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'user-app', private: true }))
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', `./${tarball}`, ...packages])
  return tarball
}
