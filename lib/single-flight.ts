/**
 * Single flight: every caller that comes while `run` runs shares that one call. It starts after
 * the current I/O phase, so that requests that arrived together join even when `run` would finish at once.
 */
export function singleFlight<T> (run: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined
  return async () => {
    running ??= new Promise<void>((resolve) => setImmediate(resolve)).then(run).finally(() => { running = undefined })
    return await running
  }
}
