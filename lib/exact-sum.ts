/**
 * A sum of doubles kept exactly, read correctly rounded (Shewchuk's non-overlapping partials, the method of
 * Python's `math.fsum`). Its value does not depend on the order or the grouping of the additions, and it never
 * decreases when an addend grows: the exact sum grows and rounding to nearest is monotonic. Integer sums, the
 * common case, stay a plain number while they are exact.
 */
export class ExactSum {
  /** Exact while `partials` is undefined: an integer no larger than 2^53 - 1. */
  private small = 0
  private partials: number[] | undefined
  /** Infinities and NaN, which the partials cannot hold; they decide the value as in plain arithmetic. */
  private special: number | undefined

  static of (x: number): ExactSum {
    const sum = new ExactSum()
    sum.add(x)
    return sum
  }

  add (x: number): void {
    if (!Number.isFinite(x)) {
      this.special = (this.special ?? 0) + x
      return
    }
    if (this.partials === undefined) {
      const next = this.small + x
      if (Number.isInteger(x) && Number.isSafeInteger(next)) {
        this.small = next
        return
      }
      this.partials = [this.small]
    }
    this.grow(x)
  }

  addSum (other: ExactSum): void {
    if (other.special !== undefined) this.add(other.special)
    if (other.partials === undefined) this.add(other.small)
    else for (const x of other.partials) this.add(x)
  }

  clone (): ExactSum {
    const copy = new ExactSum()
    copy.small = this.small
    copy.partials = this.partials?.slice()
    copy.special = this.special
    return copy
  }

  value (): number {
    const finite = this.partials === undefined ? this.small : this.rounded(this.partials)
    return this.special === undefined ? finite : this.special + finite
  }

  /** Adds x to the expansion in place, keeping it exact and non-overlapping (smallest magnitude first). */
  private grow (x: number): void {
    const p = this.partials!
    let kept = 0
    for (let j = 0; j < p.length; j++) {
      let y = p[j]!
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x]
      const hi = x + y
      const lo = y - (hi - x)
      if (lo !== 0) p[kept++] = lo
      x = hi
    }
    p.length = kept
    p.push(x)
  }

  /** The exact sum of the partials rounded to the nearest double, ties to even (CPython's fsum). */
  private rounded (p: readonly number[]): number {
    let n = p.length
    if (n === 0) return 0
    let hi = p[--n]!
    let lo = 0
    while (n > 0) {
      const x = hi
      const y = p[--n]!
      hi = x + y
      lo = y - (hi - x)
      if (lo !== 0) break
    }
    // A half-way case rounded the wrong way by the last addition: the rest of the partials decide it.
    if (n > 0 && ((lo < 0 && p[n - 1]! < 0) || (lo > 0 && p[n - 1]! > 0))) {
      const y = lo * 2
      const x = hi + y
      if (y === x - hi) hi = x
    }
    return hi
  }
}
