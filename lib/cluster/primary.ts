import type { Worker } from 'node:cluster'
import { ClusterTotals } from './totals'
import { ANSWER, ASK, COLLECT, COLLECTED, FINAL, fromWire, HELLO, isMessage, toWire } from './wire'
import { nodeCluster } from './node-cluster'

/**
 * Totals over every worker, as django-prometheus's multiprocess mode gives them: the
 * worker that receives a scrape asks the primary, the primary asks every worker for
 * its collected metrics, adds them to what the workers that are gone had counted, and
 * answers. See docs/scaling.md for what is guaranteed.
 */
/** Call once in the primary process, before forking workers that register the plugin with `cluster: true`. */
export function setupClusterPrimary (options: { timeoutMs?: number } = {}): () => void {
  const cluster = nodeCluster()
  if (!cluster.isPrimary) throw new Error('upstream-metrics: setupClusterPrimary() must run in the cluster primary')
  const timeoutMs = options.timeoutMs ?? 4000
  const totals = new ClusterTotals()
  const pending = new Map<string, { expected: Set<number>, failed: string | undefined, done: () => void }>()

  function forget (workerId: number): void {
    for (const round of pending.values()) {
      if (round.expected.delete(workerId) && round.expected.size === 0) round.done()
    }
  }

  // A partial sum would make counters drop (a reset to Prometheus): a round missing a live worker fails the scrape instead.
  function onMessage (worker: Worker, message: unknown): void {
    if (!isMessage(message)) return
    if (message.type === HELLO) {
      totals.join(worker.id)
      return
    }
    if (message.type === COLLECTED) {
      if (message.scopeMetrics !== undefined) totals.record(worker.id, fromWire(message.scopeMetrics))
      // The worker's plugin closed (its process may live on, or register the plugin again: a new member).
      if (message.id === FINAL) return onDisconnect(worker)
      const round = pending.get(message.id)
      if (round === undefined || !round.expected.has(worker.id)) return
      round.expected.delete(worker.id)
      if (message.scopeMetrics === undefined) round.failed ??= message.error ?? 'a worker failed to collect'
      if (round.expected.size === 0) round.done()
      return
    }
    if (message.type !== ASK) return
    totals.join(worker.id)
    // Every worker is asked; only those known to run the plugin are waited for (one still starting has counted nothing).
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected())
    const round = { expected: new Set(workers.filter((w) => totals.isMember(w.id)).map((w) => w.id)), failed: undefined as string | undefined, done: () => {} }
    const timer = setTimeout(() => {
      round.failed ??= `${round.expected.size} worker(s) did not answer within ${timeoutMs} ms`
      round.done()
    }, timeoutMs)
    round.done = () => {
      clearTimeout(timer)
      pending.delete(message.id)
      if (!worker.isConnected()) return
      const answer = round.failed === undefined
        ? { type: ANSWER, id: message.id, scopeMetrics: toWire(totals.answer(message.namespace)) }
        : { type: ANSWER, id: message.id, error: round.failed }
      worker.send(answer, () => {})
    }
    pending.set(message.id, round)
    for (const w of workers) w.send({ type: COLLECT, id: message.id }, () => {})
  }

  // Once its channel is closed a worker can send nothing more: its last collection is final. (A process
  // can exit before its last messages are read: only the closed channel says they all were.)
  function onDisconnect (worker: Worker): void {
    totals.leave(worker.id)
    forget(worker.id)
  }
  function onExit (worker: Worker): void {
    if (worker.isConnected()) forget(worker.id)
    else onDisconnect(worker)
  }

  cluster.on('message', onMessage)
  cluster.on('disconnect', onDisconnect)
  cluster.on('exit', onExit)
  return () => {
    cluster.off('message', onMessage)
    cluster.off('disconnect', onDisconnect)
    cluster.off('exit', onExit)
  }
}
