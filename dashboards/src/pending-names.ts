import type { MetricSpec } from '../../lib/names'

/**
 * [merge] The BullMQ worker exporter's metric table is on another branch. These specs mirror the
 * celery-prometheus-exporter names it will expose; once its table is in lib/names.ts, delete this
 * file and import that table in upstream-dashboard.ts instead (the panels then follow its names).
 */
export const CELERY_PENDING = {
  queueLength: { name: 'celery_queue_length', type: 'gauge', help: 'Number of tasks waiting in a queue.', labels: ['queue'] },
  tasks: { name: 'celery_tasks', type: 'gauge', help: 'Number of tasks per state.', labels: ['state'] },
  tasksByName: { name: 'celery_tasks_by_name', type: 'gauge', help: 'Number of tasks per state and name.', labels: ['state', 'name'] },
  taskLatency: { name: 'celery_task_latency', type: 'histogram', help: 'Seconds between a task being received and started.', labels: [] },
  workers: { name: 'celery_workers', type: 'gauge', help: 'Number of alive workers.', labels: [] }
} as const satisfies Record<string, MetricSpec>
