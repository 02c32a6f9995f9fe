import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import { compareIds } from './bullmq-layout'

/** A Redis stream followed from a position. */
export interface FollowedStream {
  readonly key: string
  /** Last entry applied; '0-0' reads from the start. */
  lastId: string
  /**
   * How many entries the stream had ever received up to `lastId` (XINFO STREAM's `entries-added`,
   * Redis 7 and later); undefined when unknown. With it a gap is measured exactly.
   */
  position: number | undefined
  /** Whether `lastId` was an entry of this stream (not '0-0' nor an instant): only then can its absence mean a gap. */
  lastIsEntry: boolean
}

export type StreamRead =
  | { kind: 'entries', stream: FollowedStream, entries: Array<[string, string[]]> }
  /**
   * Entries after `lastId` were trimmed before they were read (BullMQ keeps `streams.events.maxLen`
   * entries, 10 000 by default). `lost`: how many, or undefined when Redis cannot say (before 7.0).
   * Nothing is returned past the gap: the reader rebuilds its state and continues from `endId`.
   */
  | { kind: 'gap', stream: FollowedStream, lost: number | undefined, endId: string, endPosition: number | undefined }
  /** The stream was deleted (obliterate, a Redis restarted empty) or recreated since `lastId`. */
  | { kind: 'recreated', stream: FollowedStream }

export interface StreamInfo {
  length: number
  lastGeneratedId: string
  firstEntryId: string | undefined
  entriesAdded: number | undefined
}

/** XINFO STREAM's flat reply; undefined when the reply is an error (no such key). */
export function streamInfo (raw: unknown): StreamInfo | undefined {
  if (!Array.isArray(raw)) return undefined
  const info: Record<string, unknown> = {}
  for (let i = 0; i + 1 < raw.length; i += 2) info[String(raw[i])] = raw[i + 1]
  const first = info['first-entry'] as [string, string[]] | null | undefined
  const added = info['entries-added']
  return {
    length: Number(info.length ?? 0),
    lastGeneratedId: String(info['last-generated-id'] ?? '0-0'),
    firstEntryId: first?.[0] ?? undefined,
    entriesAdded: added === undefined ? undefined : Number(added)
  }
}

/**
 * Where reading stands against what the stream holds, both read in one transaction: `ok`, a gap of
 * `lost` entries trimmed unread, or a stream that is not the one the position was taken in.
 */
export function continuity (s: Pick<FollowedStream, 'lastId' | 'position' | 'lastIsEntry'>, info: StreamInfo | undefined): { kind: 'ok' } | { kind: 'gap', lost: number | undefined } | { kind: 'recreated' } {
  if (info === undefined) return s.lastId === '0-0' ? { kind: 'ok' } : { kind: 'recreated' }
  if (compareIds(info.lastGeneratedId, s.lastId) < 0) return { kind: 'recreated' }
  const ourEntryGone = s.lastIsEntry && info.firstEntryId !== undefined && compareIds(info.firstEntryId, s.lastId) > 0
  if (s.position === undefined || info.entriesAdded === undefined) return ourEntryGone ? { kind: 'gap', lost: undefined } : { kind: 'ok' }
  if (info.entriesAdded < s.position) return { kind: 'recreated' }
  // Entries 1 … trimmed are gone; ourEntryGone are 1 … position.
  const trimmed = info.entriesAdded - info.length
  if (trimmed > s.position) return { kind: 'gap', lost: trimmed - s.position }
  // Nothing after our entry was trimmed, and yet our entry is not there: another stream.
  return ourEntryGone && trimmed < s.position ? { kind: 'recreated' } : { kind: 'ok' }
}

export interface StreamFollowerOptions {
  /** Longest blocking wait for new entries. */
  blockMs: number
  /** Entries read per stream and round trip. */
  count: number
  /** How long entries may gather after a wake before they are read: each wake costs round trips however few it reads. */
  gatherMs: number
}

/**
 * Reads streams from their positions without ever skipping an entry unnoticed. A blocking XREAD
 * (on its own connection) only says which streams have new entries; those are then read on the
 * command connection in one MULTI with each stream's XINFO, so a trim past the position (the
 * reader paused, a burst longer than the stream) is seen for what it is: Redis 7's MAXLEN trim
 * leaves `max-deleted-entry-id` at 0-0, so the check compares the first retained entry and
 * `entries-added` with the position instead.
 */
export class StreamFollower {
  /** Streams known to have entries after their position. */
  private readonly behind = new Set<FollowedStream>()
  private blockingReadyAt = 0

  constructor (
    /** The command connection of the moment (a hung one is replaced). */
    private readonly command: () => Redis,
    private readonly blocking: Redis,
    private readonly options: StreamFollowerOptions,
    /** Called when a blocking read was left unanswered and its connection is reopened. */
    private readonly onStuck: () => void
  ) {
    blocking.on('ready', () => { this.blockingReadyAt = Date.now() })
  }

  /** The next stream to be read with a check, at once (after a reconnect, a new stream, a suspicion). */
  check (stream: FollowedStream): void {
    this.behind.add(stream)
  }

  forget (stream: FollowedStream): void {
    this.behind.delete(stream)
  }

  /**
   * One round: reads the streams known to be behind, or waits (at most `blockMs`) for any of
   * `streams` to have new entries. Returns what was read; the caller applies it and moves positions.
   */
  async read (streams: readonly FollowedStream[], running: () => boolean): Promise<StreamRead[]> {
    if (this.behind.size === 0) {
      await this.wait(streams, running)
      return []
    }
    const batch = [...this.behind]
    const multi = this.command().multi()
    for (const s of batch) {
      multi.call('XINFO', 'STREAM', s.key)
      multi.call('XREAD', 'COUNT', String(this.options.count), 'STREAMS', s.key, s.lastId)
    }
    const results = await multi.exec()
    if (results === null) throw new Error('stream read transaction discarded')
    const reads: StreamRead[] = []
    batch.forEach((s, i) => {
      const [infoErr, rawInfo] = results[2 * i]!
      const [readErr, rawRead] = results[2 * i + 1]!
      if (infoErr !== null && !/no such key/i.test(infoErr.message)) throw infoErr
      if (readErr !== null) throw readErr
      const info = infoErr === null ? streamInfo(rawInfo) : undefined
      const state = continuity(s, info)
      if (state.kind === 'recreated') {
        reads.push({ kind: 'recreated', stream: s })
        return
      }
      if (state.kind === 'gap') {
        this.behind.delete(s)
        reads.push({ kind: 'gap', stream: s, lost: state.lost, endId: info!.lastGeneratedId, endPosition: info!.entriesAdded })
        return
      }
      const entries = (rawRead as Array<[string, Array<[string, string[]]>]> | null)?.[0]?.[1] ?? []
      if (entries.length < this.options.count) this.behind.delete(s)
      // Caught up with the stream's end as of the same instant: the position is known from here.
      const last = entries.length > 0 ? entries[entries.length - 1]![0] : s.lastId
      if (info !== undefined && last === info.lastGeneratedId && info.entriesAdded !== undefined) {
        s.position = info.entriesAdded - entries.length
      }
      if (entries.length > 0) reads.push({ kind: 'entries', stream: s, entries })
    })
    return reads
  }

  /** Waits for new entries on any stream; marks those that have some. */
  private async wait (streams: readonly FollowedStream[], running: () => boolean): Promise<void> {
    if (this.blocking.status === 'end') this.blocking.connect().catch(() => {})
    const read = this.blocking.call(
      'XREAD', 'COUNT', '1', 'BLOCK', String(this.options.blockMs), 'STREAMS',
      ...streams.map((s) => s.key), ...streams.map((s) => s.lastId)
    ) as Promise<Array<[string, unknown]> | null>
    read.catch(() => {})
    const reply = await this.watch(read, running)
    if (reply === null) return
    const byKey = new Map(streams.map((s) => [s.key, s]))
    for (const [key] of reply) {
      const s = byKey.get(key)
      if (s !== undefined) this.behind.add(s)
    }
    if (this.behind.size > 0 && running()) await sleep(this.options.gatherMs)
  }

  /**
   * ioredis re-sends a blocking read interrupted by a reconnect; BullMQ found such a read can
   * stay unanswered for good (its issue #4479). Past its BLOCK time on a connection that has been
   * up all along, the connection is reset, which fails the read and lets the loop issue a new one.
   */
  private async watch<T> (read: Promise<T>, running: () => boolean): Promise<T | null> {
    const margin = 2000
    for (;;) {
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), this.options.blockMs + margin) })
      try {
        const result = await Promise.race([read, late])
        if (result !== 'late') return result
      } finally {
        clearTimeout(timer)
      }
      if (!running()) return null
      if (this.blocking.status === 'ready' && Date.now() - this.blockingReadyAt > this.options.blockMs + margin) {
        this.onStuck()
        // A plain disconnect fails the pending read (a reconnecting one would re-send it again);
        // the next wait connects it again once it has ended.
        this.blocking.disconnect()
        return null
      }
    }
  }
}
