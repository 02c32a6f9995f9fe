import type { Cluster } from 'node:cluster'

/**
 * `node:cluster`, loaded on first use only, so that an app without `cluster: true` never loads it
 * (prom-client loads it lazily too: importing it has crashed some hosts).
 */
export function nodeCluster (): Cluster {
  return require('node:cluster') as Cluster
}
