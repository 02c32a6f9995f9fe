import type { Redis } from 'ioredis'

/** HGET of each (KEYS[i], ARGV[i]), in Redis: one command and one reply however many there are. */
const HGET_EACH = "local out = {} for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[i]) end return out"
/** What Redis answers when it will not run a script for this connection (an ACL without EVAL, scripting disabled). */
const SCRIPTS_REFUSED = /NOPERM|unknown command|scripting/i

/**
 * One field of each of many job hashes (a name, a worker, a stack), read as one script call: each
 * command ioredis sends costs a command object, a promise and a timer, and a pipeline of one HGET
 * per job was most of the exporter's CPU per job. A Redis that refuses scripts gets the pipeline.
 */
export class JobFields {
  private scripts = true

  /** `reads`: [hash key, field]; answers each field's value, null where the hash or the field is gone. */
  async read (command: Redis, reads: ReadonlyArray<readonly [string, string]>): Promise<Array<string | null>> {
    if (this.scripts) {
      try {
        return await command.eval(HGET_EACH, reads.length, ...reads.map(([key]) => key), ...reads.map(([, field]) => field)) as Array<string | null>
      } catch (err) {
        if (!SCRIPTS_REFUSED.test((err as Error)?.message ?? '')) throw err
        this.scripts = false
      }
    }
    const pipeline = command.pipeline()
    for (const [key, field] of reads) pipeline.hget(key, field)
    const rows = await pipeline.exec()
    if (rows === null) throw new Error('job fields pipeline discarded')
    for (const [err] of rows) if (err !== null) throw err
    return rows.map(([, value]) => value as string | null)
  }
}
