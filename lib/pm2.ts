import type { FastifyBaseLogger } from 'fastify'

/**
 * PM2's cluster mode (`pm2 start app.js -i N`): PM2's daemon is the Node cluster primary and its instances share the
 * app's port, so one scrape of that port reaches one instance. PM2 tells each instance through its environment.
 */
export interface Pm2Cluster {
  /** `NODE_APP_INSTANCE` (or PM2's `instance_var`): 0, 1, … */
  readonly instance: string | undefined
  /** As given to `-i`: a count, `max` or -1. */
  readonly instances: string | undefined
}

export const PM2_DOC = 'docs/apps.md#pm2'

export function pm2Cluster (env: NodeJS.ProcessEnv = process.env): Pm2Cluster | undefined {
  if (env.pm_id === undefined || env.exec_mode !== 'cluster_mode') return undefined
  return { instance: env[env.instance_var ?? 'NODE_APP_INSTANCE'], instances: env.instances }
}

/** Once per registration: the route on the shared port would serve one instance's numbers as the app's. */
export function warnUnderPm2 (path: string | false, log: FastifyBaseLogger, env: NodeJS.ProcessEnv = process.env): void {
  const pm2 = pm2Cluster(env)
  if (pm2 === undefined || path === false || pm2.instances === '1') return
  log.warn(
    { pm2Instance: pm2.instance, pm2Instances: pm2.instances },
    `upstream-metrics: PM2 cluster mode: GET ${path} on the port the instances share answers one instance's numbers per scrape, not the app's (and Prometheus reads the switches as counter resets); give each instance its own metrics port (path: false, listener: { port: BASE + Number(process.env.NODE_APP_INSTANCE) }) and scrape them all: see ${PM2_DOC}`
  )
}
