import type { Redis } from 'ioredis'
import type { Cell } from '../store'
import { hasListMarkers, isMarker, workerConnections } from './bullmq-layout'
import type { JobLifecycle } from './lifecycle'
import type { QueueState } from './queues'
import { streamInfo, type StreamFollower } from './stream-follower'

/**
 * What a scrape reads from Redis: each queue's length, the workers connected (and the jobs each
 * holds, from the tracked states), and whether the tracked states still agree with Redis' counts.
 */
export class LengthsAndWorkers {
  constructor (
    private readonly command: () => Redis,
    private readonly prefix: string,
    private readonly workers: Cell,
    private readonly lifecycle: JobLifecycle,
    private readonly follower: StreamFollower,
    private readonly rebuildIntervalMs: number
  ) {}

  /** Answers whether a queue looked stale: the follower has been told to look, or a rebuild is asked for. */
  async read (queues: readonly QueueState[]): Promise<boolean> {
    // One transaction: the counts and the stream's state are of the same instant.
    const multi = this.command().multi()
    multi.client('LIST')
    // Row of a queue: 6 counts, XINFO STREAM, then its meta's version until known, then (unless a BullMQ 5+ queue) the list tails.
    const rowLength = (q: QueueState): number => q.listMarkers === undefined ? 10 : q.listMarkers ? 9 : 7
    for (const q of queues) {
      const { keys } = q
      multi.llen(keys.wait).llen(keys.paused).zcard(keys.prioritized).llen(keys.active).zcard(keys.delayed).zcard(keys.waitingChildren)
        .call('XINFO', 'STREAM', keys.events)
      if (q.listMarkers === undefined) multi.hget(keys.meta, 'version')
      if (q.listMarkers !== false) multi.lindex(keys.wait, -1).lindex(keys.paused, -1)
    }
    const results = await multi.exec()
    if (results === null) return false
    for (const [err] of results.slice(0, 1)) if (err !== null) throw err
    const hosts = workerConnections(String(results[0]![1]), this.prefix, queues.map((q) => q.name))
    this.workers.value = hosts.length
    const active = activeByWorker(queues)
    // A worker name seen twice on a queue gets its active jobs once.
    this.lifecycle.workers(hosts.map((h) => {
      const key = `${h.queue}\u0000${h.hostname ?? ''}`
      const n = active.get(key) ?? 0
      active.delete(key)
      return { ...h, active: n }
    }))
    const now = Date.now()
    let stale = false
    let at = 1
    for (const q of queues) {
      const row = results.slice(at, at + rowLength(q))
      at += row.length
      row.forEach(([err], i) => { if (err !== null && i !== 6) throw err })
      const n = row.slice(0, 6).map(([, v]) => Number(v))
      if (q.listMarkers === undefined) {
        const version = row[7]![1] as string | null
        // Read again until the queue has written its meta.
        if (version !== null) q.listMarkers = hasListMarkers(version)
      }
      const markers = q.listMarkers === true ? row.slice(-2).filter(([, v]) => typeof v === 'string' && isMarker(v)).length : 0
      n[0] = n[0]! - markers
      q.lengthCell.value = n[0]! + n[1]! + n[2]!
      const [infoErr, rawInfo] = row[6]!
      const info = infoErr === null ? streamInfo(rawInfo) : undefined
      if (info === undefined) {
        // Deleted (obliterate) with nothing after it to wake the reader: checked now.
        if (q.stream.lastId !== '0-0' || q.current > 0) { this.follower.check(q.stream); stale = true }
        continue
      }
      // Jobs can leave without an event (drain, a flushed key). When every event up to this
      // instant has been applied, the tracked count must match; if not, rebuild.
      const unfinished = n.reduce((a, b) => a + b, 0)
      if (info.lastGeneratedId === q.stream.lastId && unfinished !== q.current + q.untracked && now - q.lastSnapshot >= this.rebuildIntervalMs) {
        q.needsSnapshot = true
        stale = true
      }
    }
    return stale
  }
}

/** Started jobs by queue and worker name (`queue\0name`, '' for an unnamed worker). */
function activeByWorker (queues: readonly QueueState[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const q of queues) {
    for (const job of q.jobs.values()) {
      if (job.state !== 'STARTED') continue
      const key = `${q.name}\u0000${job.hostname ?? ''}`
      counts.set(key, (counts.get(key) ?? 0) + 1)
    }
  }
  return counts
}
