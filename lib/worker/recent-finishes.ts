/**
 * The jobs whose finish was applied from their event lately (id → the event's Redis time, ms), so
 * that after a gap in the event stream the jobs found in BullMQ's completed and failed sets can be
 * told apart: those finished in the gap are the ones not here. Bounded by time and by count.
 */
export class RecentFinishes {
  private readonly ids = new Map<string, number>()
  /** Newest event time forgotten for the count bound: jobs finished up to then may no longer be here. */
  private floor = -Infinity

  constructor (
    /** How long a finish is kept; half of it is the clock skew tolerated between workers and Redis. */
    private readonly windowMs = 10_000,
    private readonly cap = 50_000
  ) {}

  add (jobId: string, t: number): void {
    this.ids.delete(jobId)
    this.ids.set(jobId, t)
    for (const [id, at] of this.ids) {
      if (at >= t - this.windowMs && this.ids.size <= this.cap) break
      this.ids.delete(id)
      if (this.ids.size >= this.cap) this.floor = Math.max(this.floor, at)
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
