/** Real Prometheus tooling for tests: child processes, promtool, a Prometheus server and its HTTP API. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { stringify } from 'yaml'
import { freePort } from './net'

export const ROOT = resolve(__dirname, '..', '..')

/** Starts a process, keeps the tail of its output for failure messages, and stops it at teardown. */
export function startProcess (t: Test, name: string, command: string, args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess, output: () => string } {
  const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const keep = (chunk: Buffer): void => { output = (output + chunk.toString()).slice(-4000) }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  child.on('error', (err) => { output += `\n${name} failed to start: ${err.message}` })
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    if (await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]) === false) {
      child.kill('SIGKILL')
      await exited
    }
  })
  return { child, output: () => output }
}

/** Polls until `check` returns true; bounded in time, never an assertion on speed. */
export async function waitFor (what: string, deadlineMs: number, check: () => Promise<boolean>, details: () => string): Promise<void> {
  const deadline = Date.now() + deadlineMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    await sleep(250)
  }
  throw new Error(`timed out waiting for ${what}\n${details()}`)
}

export interface QueryAnswer { status: string, error?: string, data?: { result: Array<{ metric: Record<string, string>, value: [number, string] }> } }

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

/** A Prometheus on a free loopback port and a temporary directory, scraping `targets` every second; stopped at teardown. */
export async function startPrometheus (t: Test, targets: string[]): Promise<{ url: string, output: () => string }> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'um-prometheus-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    scrape_configs: [{ job_name: 'app', static_configs: [{ targets }] }]
  }
  writeFileSync(join(dir, 'prometheus.yml'), stringify(config))
  const prometheus = startProcess(t, 'prometheus', 'prometheus', [
    `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'
  ], process.env)
  const url = `http://127.0.0.1:${port}`
  await waitFor('Prometheus to be ready', 30_000, async () => (await fetch(`${url}/-/ready`)).ok, prometheus.output)
  return { url, output: prometheus.output }
}
