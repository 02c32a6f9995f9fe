import type { Cell, Family, HistogramCell } from '../store'
import { CELERY_STATES, type CeleryState } from './celery-states'

/** A job name fit for a label: as templatename's rule (lib/http.ts), at most 200 characters of a bounded set. */
const JOB_NAME = /^[\w./@:+-]{1,200}$/
/** The label of every name not fit for one, and of the names past the cap. */
export const OTHER_NAME = 'other'

/** The `name` label of a job name from Redis (any string, any length): itself, or `other`. */
export function nameLabel (name: string): string {
  return JOB_NAME.test(name) ? name : OTHER_NAME
}

/**
 * The per-name series (`celery_tasks_by_name`, the runtime histogram), bounded by construction: a
 * name takes its 7 states at once or not at all, so the by-state sums always equal `celery_tasks`;
 * the names past the cap, and those unfit for a label, share `other`, which holds no memory per name.
 */
export class TaskNames {
  private readonly cells = new Map<string, Record<CeleryState, Cell>>()
  private readonly maxNames: number

  constructor (private readonly byName: Family, private readonly runtime: Family<HistogramCell>) {
    // `other` is one of them; the family's overflow series is never reached.
    this.maxNames = Math.max(1, Math.floor((byName.limit - 1) / CELERY_STATES.length))
  }

  /** The label a job of this (raw) name is counted under; makes its series exist, at 0. */
  label (name: string): string {
    const label = nameLabel(name)
    if (this.cells.has(label)) return label
    const kept = this.cells.size < this.maxNames - 1 || label === OTHER_NAME ? label : OTHER_NAME
    if (!this.cells.has(kept)) {
      this.cells.set(kept, Object.fromEntries(CELERY_STATES.map((s) => [s, this.byName.cell(s, kept)])) as Record<CeleryState, Cell>)
    }
    return kept
  }

  /** The cells of a label returned by `label`. */
  states (label: string): Record<CeleryState, Cell> {
    return this.cells.get(label)!
  }

  runtimeCell (label: string): HistogramCell {
    return this.runtime.cell(label)
  }
}
