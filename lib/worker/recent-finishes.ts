/**
 * The jobs whose finish was applied from their event lately (id → the event's Redis time, ms), so
 * that after a gap in the event stream the jobs found in BullMQ's completed and failed sets can be
 * told apart: those finished in the gap are the ones not here. Bounded by time and by count.
 */
export class RecentFinishes {
  private readonly ids = new Map<string, number>()
  /**
   * The same finishes in the order they came, consumed from `head`: a Map iterated from its start
   * after many deletions walks over their holes (V8 compacts it only when it rehashes).
   */
  private order: Array<[string, number]> = []
  private head = 0
  /** Newest event time forgotten for the count bound: jobs finished up to then may no longer be here. */
  private floor = -Infinity

  constructor (
    /** How long a finish is kept; half of it is the clock skew tolerated between workers and Redis. */
    private readonly windowMs = 10_000,
    private readonly cap = 50_000
  ) {}

  add (jobId: string, t: number): void {
    this.ids.set(jobId, t)
    this.order.push([jobId, t])
    while (this.head < this.order.length) {
      const [id, at] = this.order[this.head]!
      const full = this.ids.size > this.cap
      if (at >= t - this.windowMs && !full) break
      this.head++
      // A job finished again later (retried by hand) stays for its later finish.
      if (this.ids.get(id) !== at) continue
      this.ids.delete(id)
      if (full) this.floor = Math.max(this.floor, at)
    }
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head)
      this.head = 0
    }
  }

  has (jobId: string): boolean {
    return this.ids.has(jobId)
  }

  /**
   * The lowest `finishedOn` (a worker's clock) worth reading after the last event applied at Redis
   * time `lastTime`: a job finished in the gap has its event after `lastTime`, and `finishedOn` is
   * taken by the worker just before; every job finished earlier with a later `finishedOn` is here.
   */
  lowerBound (lastTime: number): number {
    return Math.max(lastTime - this.windowMs / 2, this.floor)
  }
}
