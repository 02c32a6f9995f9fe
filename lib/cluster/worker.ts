import { randomUUID } from 'node:crypto'
import type { ScopeMetrics } from '@opentelemetry/sdk-metrics'
import { ClusterInstanceError, ClusterTimeoutError } from '../errors'
import { nodeCluster } from './node-cluster'
import { ANSWER, ASK, COLLECT, COLLECTED, FINAL, fromWire, HELLO, isMessage, toWire, type Message } from './wire'

let activeWorkerInstance = false

function send (message: Message, callback: () => void = () => {}): void {
  // A channel closing during a rolling restart must not crash the worker.
  if (process.connected && process.send !== undefined) process.send(message, undefined, {}, callback)
  else callback()
}

/** In a worker: answers the primary's collection requests and asks it for totals. One per process. */
export class ClusterWorker {
  private readonly waiting = new Map<string, { resolve: (m: ScopeMetrics[]) => void, reject: (e: Error) => void, timer: NodeJS.Timeout }>()
  /** Once closed, the final collection is the last one the primary gets (a later one would count twice). */
  private closed = false
  /** Whether this process is a cluster worker (in a primary or a lone process, totals are this process's own). */
  private readonly inWorker = nodeCluster().isWorker
  private readonly onMessage = (message: unknown): void => {
    if (!isMessage(message)) return
    if (message.type === COLLECT) {
      this.collectLocal().then(
        (scopeMetrics) => { if (!this.closed) send({ type: COLLECTED, id: message.id, scopeMetrics: toWire(scopeMetrics) }) },
        (err: Error) => { if (!this.closed) send({ type: COLLECTED, id: message.id, error: err.message }) }
      )
    } else if (message.type === ANSWER) {
      const waiter = this.waiting.get(message.id)
      if (waiter === undefined) return
      this.waiting.delete(message.id)
      clearTimeout(waiter.timer)
      if (message.error !== undefined) waiter.reject(new Error(`upstream-metrics: cluster totals unavailable: ${message.error}`))
      else waiter.resolve(fromWire(message.scopeMetrics ?? []))
    }
  }

  constructor (private readonly collectLocal: () => Promise<ScopeMetrics[]>, private readonly timeoutMs: number, private readonly namespace = '') {
    if (this.inWorker) {
      if (activeWorkerInstance) throw new ClusterInstanceError()
      activeWorkerInstance = true
      process.on('message', this.onMessage)
      send({ type: HELLO, id: '' })
    }
  }

  async aggregate (): Promise<ScopeMetrics[]> {
    if (!this.inWorker || process.send === undefined) return await this.collectLocal()
    const id = randomUUID()
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        reject(new ClusterTimeoutError(this.timeoutMs))
      }, this.timeoutMs)
      this.waiting.set(id, { resolve, reject, timer })
      send({ type: ASK, id, namespace: this.namespace })
    })
  }

  /** On the app's close (after its in-flight requests): hands the primary this worker's last counts, so a graceful stop loses none. */
  async close (): Promise<void> {
    if (this.inWorker && !this.closed) {
      this.closed = true
      process.off('message', this.onMessage)
      activeWorkerInstance = false
      if (process.connected) {
        const handOver = async (): Promise<void> => {
          const last = await this.collectLocal().catch(() => undefined)
          // Without counts (collection failed) it still tells the primary to stop waiting for this worker.
          const final: Message = last === undefined ? { type: COLLECTED, id: FINAL, error: 'closed' } : { type: COLLECTED, id: FINAL, scopeMetrics: toWire(last) }
          await new Promise<void>((resolve) => send(final, resolve))
        }
        // Bounded: a close never waits longer than a round would.
        let timer: NodeJS.Timeout | undefined
        await Promise.race([handOver(), new Promise<void>((resolve) => { timer = setTimeout(resolve, this.timeoutMs) })])
        clearTimeout(timer)
      }
    }
    for (const waiter of this.waiting.values()) {
      clearTimeout(waiter.timer)
      waiter.reject(new Error('upstream-metrics: closed while waiting for cluster totals'))
    }
    this.waiting.clear()
  }
}
