/**
 * Every process a test starts, killed when the test's own process ends however it ends. A
 * teardown does not always get to run: on a timeout tap ends the test process (SIGALRM) while an
 * async teardown is still waiting, and a child left behind would hold its port, its Redis keys
 * and a core for the files that follow. Only a SIGKILL of the test process itself escapes this.
 */
import type { ChildProcess } from 'node:child_process'
import { onExit } from 'signal-exit'

/** Each live child, and whether it leads a process group of its own (signalled as a whole). */
const live = new Map<ChildProcess, boolean>()
/** Processes this one did not spawn itself (a daemon's), read when it ends. */
const others: Array<() => number[]> = []
let hooked = false

function killAll (): void {
  const kill = (pid: number): void => {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
  for (const [child, group] of live) kill(group ? -child.pid! : child.pid!)
  live.clear()
  for (const pids of others.splice(0)) {
    try {
      pids().forEach(kill)
    } catch {}
  }
}

function hook (): void {
  if (hooked) return
  hooked = true
  process.on('exit', killAll)
  onExit(() => { killAll() })
}

/**
 * Kills `child` when this process ends; with `group` (a child spawned `detached`, leading its own
 * process group: a shell's, npm's children), the whole group, listed even after its leader exits
 * as the rest of it may not have.
 */
export function killOnExit<T extends ChildProcess> (child: T, group = false): T {
  if (child.pid === undefined) return child
  hook()
  live.set(child, group)
  if (!group) child.once('exit', () => live.delete(child))
  return child
}

/** Kills the processes `pids()` names when this process ends: for those a daemon started. */
export function killPidsOnExit (pids: () => number[]): void {
  hook()
  others.push(pids)
}
