import type { Redis } from 'ioredis'
import type { Cell, Family } from '../store'
import { metaKeyPattern, queueKeys, queueOfMetaKey, type QueueKeys } from './bullmq-layout'
import type { JobTimes } from './celery-states'
import { RecentFinishes } from './recent-finishes'
import type { FollowedStream } from './stream-follower'

/** A job not finished, tracked by id: name and state only, never data. */
export interface Job extends JobTimes {
  /** The `name` label it is counted under (bounded); undefined when its name could not be read. */
  label: string | undefined
  /** The worker holding it (BullMQ's `pb`, its Worker's `name`), read when it turns active. */
  hostname?: string | undefined
}

export interface QueueState {
  readonly name: string
  readonly keys: QueueKeys
  readonly stream: FollowedStream
  jobs: Map<string, Job>
  /** Per job scheduler, its upcoming job. */
  schedulers: Map<string, string>
  /** Tracked jobs in a current state (not finished). */
  current: number
  /** Ids in the queue's lists whose job hash is gone, as of the last snapshot. */
  untracked: number
  needsSnapshot: boolean
  lastSnapshot: number
  lengthCell: Cell
  /** BullMQ 4 queue: its wait and paused lists may end with a marker, not a job; undefined until its meta is read. */
  listMarkers: boolean | undefined
  recentFinishes: RecentFinishes
}

const MAX_SCAN_ROUNDS = 10_000

/** The queues followed, by name: those given, or those found under the prefix by their meta hashes. */
export class TrackedQueues {
  private readonly byName = new Map<string, QueueState>()

  constructor (
    private readonly prefix: string,
    private readonly queueLength: Family,
    private readonly eventsLost: Family
  ) {}

  get size (): number {
    return this.byName.size
  }

  names (): string[] {
    return [...this.byName.keys()]
  }

  values (): IterableIterator<QueueState> {
    return this.byName.values()
  }

  track (name: string): QueueState {
    let q = this.byName.get(name)
    if (q === undefined) {
      const keys = queueKeys(this.prefix, name)
      q = {
        name,
        keys,
        stream: { key: keys.events, lastId: '0-0', position: undefined, lastIsEntry: false },
        jobs: new Map(),
        schedulers: new Map(),
        current: 0,
        untracked: 0,
        needsSnapshot: false,
        lastSnapshot: 0,
        lengthCell: this.queueLength.cell(name),
        listMarkers: undefined,
        recentFinishes: new RecentFinishes()
      }
      this.byName.set(name, q)
      // At 0 from the start, so that increase() sees the first loss.
      this.eventsLost.cell(name)
    }
    return q
  }

  /** Tracks every queue under the prefix not tracked yet (SCAN for meta keys); `found` is awaited on each before going on. */
  async discover (command: () => Redis, found: (q: QueueState) => Promise<void>): Promise<void> {
    let cursor = '0'
    for (let round = 0; round < MAX_SCAN_ROUNDS; round++) {
      const [nextCursor, keys] = await command().scan(cursor, 'MATCH', metaKeyPattern(this.prefix), 'COUNT', 1000)
      for (const key of keys) {
        const name = queueOfMetaKey(this.prefix, key)
        if (name === undefined || this.byName.has(name)) continue
        await found(this.track(name))
      }
      cursor = nextCursor
      if (cursor === '0') break
    }
  }
}
