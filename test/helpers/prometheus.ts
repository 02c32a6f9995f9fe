/** Real Prometheus tooling for tests: a `prometheus` on 127.0.0.1 with a temp dir, promtool, and the child-process plumbing the end-to-end tests share. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { stringify } from 'yaml'
import { killOnExit } from './children'
import { freePort } from './net'
import { waitFor } from './wait'

export const ROOT = resolve(__dirname, '..', '..')

export interface Started { child: ChildProcess, output: () => string, stop: () => Promise<void> }

export interface StartOptions {
  /** Called with each line of the process's standard output. */
  onLine?: (line: string) => void
  /** Runs it in its own process group and signals the whole group (a shell command's children included). */
  group?: boolean
}

/**
 * Starts a process, keeps the head and the tail of its output for failure messages, and stops it at
 * teardown (SIGTERM, then SIGKILL after 5 s); `stop()` does it earlier.
 */
export function startProcess (t: Test, name: string, command: string, args: string[], env: NodeJS.ProcessEnv, options: StartOptions = {}): Started {
  const { onLine, group = false } = options
  const child = killOnExit(spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: group }), group)
  let head = ''
  let tail = ''
  const keep = (chunk: Buffer): void => {
    if (head.length < 4000) head += chunk.toString()
    else tail = (tail + chunk.toString()).slice(-4000)
  }
  let partial = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    keep(chunk)
    if (onLine === undefined) return
    const lines = (partial + chunk.toString()).split('\n')
    partial = lines.pop()!
    for (const line of lines) onLine(line)
  })
  child.stderr!.on('data', keep)
  child.on('error', (err) => { tail += `\n${name} failed to start: ${err.message}` })
  const stop = async (): Promise<void> => await stopProcess(child, 'SIGTERM', group)
  t.teardown(stop)
  return { child, output: () => tail === '' ? head : `${head}\n…\n${tail}`, stop }
}

/** SIGTERM (or `signal`), then SIGKILL after 5 s; `group` signals the child's whole process group. */
export async function stopProcess (child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', group = false): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const kill = (s: NodeJS.Signals): void => {
    try {
      if (group) process.kill(-child.pid!, s)
      else child.kill(s)
    } catch {}
  }
  kill(signal)
  if (await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]) === false) {
    kill('SIGKILL')
    await exited
  }
}

export interface QueryAnswer { status: string, error?: string, data?: { result: Sample[] } }

/** An instant query that reports errors in its answer instead of throwing (for checking that PromQL is valid). */
export async function promQuery (base: string, expr: string): Promise<QueryAnswer> {
  const response = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`, { signal: AbortSignal.timeout(10_000) })
  return await response.json() as QueryAnswer
}

/** `promtool check metrics` on an exposition: its whole output (empty when it has nothing to say) and exit status. */
export function promtoolCheckMetrics (text: string): { status: number | null, output: string } {
  const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 60_000 })
  if (result.error !== undefined) throw new Error(`promtool is needed (apt-get install -y --no-install-recommends prometheus): ${result.error.message}`)
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}

export interface Sample { metric: Record<string, string>, value: [number, string] }
export interface RangeSeries { metric: Record<string, string>, values: Array<[number, string]> }

export class Prometheus {
  constructor (readonly base: string, readonly output: () => string, readonly child: ChildProcess) {}

  /** Stops it before the test's end (its data directory goes at teardown). */
  async stop (): Promise<void> {
    await stopProcess(this.child)
  }

  /** An instant query; `time` in seconds (Prometheus' own notation), default now. */
  async query (expr: string, time?: number): Promise<Sample[]> {
    const params = new URLSearchParams({ query: expr })
    if (time !== undefined) params.set('time', time.toFixed(3))
    const answer = await (await fetch(`${this.base}/api/v1/query?${params.toString()}`, { signal: AbortSignal.timeout(10_000) })).json() as { status: string, error?: string, data: { resultType: string, result: unknown } }
    if (answer.status !== 'success') throw new Error(`query failed: ${expr}: ${answer.error ?? ''}`)
    return answer.data.result as Sample[]
  }

  /** The raw samples of a range selector (`metric[1m]`), with their scrape timestamps. */
  async samples (selector: string, time?: number): Promise<RangeSeries[]> {
    const params = new URLSearchParams({ query: selector })
    if (time !== undefined) params.set('time', time.toFixed(3))
    const answer = await (await fetch(`${this.base}/api/v1/query?${params.toString()}`, { signal: AbortSignal.timeout(10_000) })).json() as { status: string, error?: string, data: { result: RangeSeries[] } }
    if (answer.status !== 'success') throw new Error(`query failed: ${selector}: ${answer.error ?? ''}`)
    return answer.data.result
  }

  async rules (): Promise<Array<{ name: string, state?: string, health: string, lastError?: string, lastEvaluation: string }>> {
    const answer = await (await fetch(`${this.base}/api/v1/rules`, { signal: AbortSignal.timeout(10_000) })).json() as { data: { groups: Array<{ rules: never[] }> } }
    return answer.data.groups.flatMap((g) => g.rules)
  }

  /** Waits for a scrape of every target of `job` that started after `afterMs` (epoch ms) and is stored. */
  async scrapedAfter (job: string, afterMs: number, targets: number, deadlineMs = 15_000): Promise<number> {
    let newest = 0
    await waitFor(`a scrape of every ${job} target after ${new Date(afterMs).toISOString()}`, async () => {
      // timestamp() of a selector is its sample's time (of any other expression, the evaluation time).
      const ups = await this.query(`timestamp(up{job="${job}"})`)
      const values = await this.query(`up{job="${job}"}`)
      const times = ups.map((s) => Number(s.value[1]) * 1000)
      newest = Math.max(...times)
      return times.length === targets && times.every((time) => time > afterMs) && values.every((s) => s.value[1] === '1')
    }, { timeoutMs: deadlineMs, details: this.output })
    return newest
  }
}

/**
 * Starts `prometheus` with `config` (an object, written as YAML) in a temp dir; stopped and removed at teardown.
 * `files` (name → content) are written beside the configuration, which can name them by relative path
 * (rule files, file_sd target files). The listen address is chosen here. `flags` are added to its command line
 * (`--enable-feature=exemplar-storage`).
 */
export async function startPrometheus (t: Test, config: Record<string, unknown>, files: Record<string, string> = {}, flags: string[] = []): Promise<Prometheus> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'um-prometheus-'))
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content)
  writeFileSync(join(dir, 'prometheus.yml'), stringify(config))
  const started = startProcess(t, 'prometheus', 'prometheus', [
    `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn', ...flags
  ], process.env)
  // Stopped before its data directory is removed, whatever order the teardowns run in.
  t.teardown(async () => {
    await stopProcess(started.child)
    rmSync(dir, { recursive: true, force: true })
  })
  const prometheus = new Prometheus(`http://127.0.0.1:${port}`, started.output, started.child)
  await waitFor('Prometheus to be ready', async () => (await fetch(`${prometheus.base}/-/ready`)).ok, { timeoutMs: 30_000, details: started.output })
  return prometheus
}
