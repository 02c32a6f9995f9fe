export { setupClusterPrimary } from './primary'
export { ClusterTotals, mergeScopeMetrics, Totals } from './totals'
export { ClusterWorker } from './worker'
export { fromWire, toWire } from './wire'
