/**
 * Apps as users build them: a temp directory with this repository's packed tarball (`npm pack` of the built
 * package) and real packages from npm, through the machine's one npm cache. Long-running commands of those apps
 * (`npm start`, `pm2`) run in their own process group, so that a signal reaches what they started.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { killOnExit } from './children'

const root = join(__dirname, '..', '..')

/**
 * The environment of a user's shell: without what tap and `npm exec` set for this repository's processes
 * (npm_config_* point npm here, TS_NODE_* and TAP_* configure tools the apps run too).
 */
function userEnv (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^(npm_|INIT_CWD$|TAP|_TAPJS|TS_NODE_)/.test(name)) clean[name] = value
  }
  clean.PATH = (process.env.PATH ?? '').split(':').filter((dir) => !dir.includes('node_modules')).join(':')
  return { ...clean, ...env }
}

/**
 * `command args` through a shell that drops NODE_OPTIONS: tap adds its loader hooks to every process a test spawns
 * (they make node load an app's TypeScript tests as ESM, and are not what users run).
 */
function asUser (command: string, args: string[]): [string, string[]] {
  return ['sh', ['-c', 'unset NODE_OPTIONS; exec "$0" "$@"', command, ...args]]
}

export function npm (args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): string {
  const [shell, shellArgs] = asUser('npm', args)
  return execFileSync(shell, shellArgs, { cwd, env: userEnv(env), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 })
}

export const NPM_INSTALL = ['install', '--prefer-offline', '--no-audit', '--no-fund']

export interface PackedDir {
  readonly dir: string
  /** Path of the tarball, for `npm install`. */
  readonly tarball: string
  remove: () => void
}

/** A temp directory holding this repository packed as it is published (run `npm run build` first). */
export function packed (tag: string): PackedDir {
  const dir = mkdtempSync(join(tmpdir(), `um-${tag}-`))
  npm(['pack', '--pack-destination', dir], root)
  const tarball = join(dir, readdirSync(dir).find((f) => f.endsWith('.tgz'))!)
  return { dir, tarball, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** A new app in `base/name`: the packed plugin, `deps` from npm (versions as given), and `files` written in. */
export function packedApp (base: PackedDir, name: string, deps: string[], files: Record<string, string>): string {
  const dir = join(base.dir, name)
  execFileSync('mkdir', ['-p', dir])
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, private: true }))
  npm([...NPM_INSTALL, base.tarball, `fastify@${require('fastify/package.json').version as string}`, ...deps], dir)
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text)
  return dir
}

/** The code blocks of docs/apps.md whose first line names a file: `// plugins/metrics.js`. */
export function docFiles (): Map<string, string> {
  const text = readFileSync(join(root, 'docs', 'apps.md'), 'utf8')
  const files = new Map<string, string>()
  for (const [, body] of text.matchAll(/^```\w*\n([\s\S]*?)^```$/gm)) {
    const name = /^\/\/ ([\w./-]+)\n/.exec(body!)?.[1]
    if (name !== undefined) files.set(name, body!)
  }
  return files
}

export interface Running {
  readonly child: ChildProcess
  /** Everything written to stdout and stderr so far. */
  output: () => string
  /** Resolves with the first match of `pattern` in the output; rejects if the process exits first. */
  waitFor: (pattern: RegExp) => Promise<RegExpExecArray>
  readonly exit: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** Sends `signal` to the whole process group (npm, the shell, the app). */
  signal: (signal: NodeJS.Signals) => void
}

export function run (command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Running {
  const child = killOnExit(spawn(...asUser(command, args), { cwd, env: userEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached: true }), true)
  let output = ''
  const waiters = new Set<() => void>()
  const append = (chunk: Buffer): void => {
    output += chunk.toString()
    for (const check of waiters) check()
  }
  child.stdout!.on('data', append)
  child.stderr!.on('data', append)
  const exit = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => {
    resolve({ code, signal })
    for (const check of waiters) check()
  }))
  return {
    child,
    output: () => output,
    exit,
    signal: (signal) => {
      try {
        process.kill(-child.pid!, signal)
      } catch {}
    },
    waitFor: async (pattern) => await new Promise((resolve, reject) => {
      const check = (): void => {
        const match = pattern.exec(output)
        if (match !== null) {
          waiters.delete(check)
          resolve(match)
        } else if (child.exitCode !== null || child.signalCode !== null) {
          waiters.delete(check)
          reject(new Error(`${command} ${args.join(' ')} exited before printing ${String(pattern)}:\n${output}`))
        }
      }
      waiters.add(check)
      check()
    })
  }
}
