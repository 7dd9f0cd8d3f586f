/**
 * A binary min-heap of queued requests ordered by `priority` (then arrival order). Priority is
 * `tokens + agingRate * enqueuedAt`: comparing it at any moment equals comparing
 * `tokens - agingRate * waited`, so small requests go first and every request's priority improves as
 * it waits, with no re-sorting.
 */
export class RequestQueue<T extends { priority: number; order: number }> {
  private readonly heap: T[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(item: T): void {
    const heap = this.heap;
    heap.push(item);
    let child = heap.length - 1;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (!this.before(heap[child], heap[parent])) break;
      [heap[child], heap[parent]] = [heap[parent], heap[child]];
      child = parent;
    }
  }

  pop(): T | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  /** Keeps only the items for which `keep` holds (drops cancelled work in one pass). */
  retain(keep: (item: T) => boolean): void {
    let kept = 0;
    for (const item of this.heap) {
      if (keep(item)) this.heap[kept++] = item;
    }
    this.heap.length = kept;
    for (let index = (this.heap.length >> 1) - 1; index >= 0; index -= 1) {
      this.siftDown(index);
    }
  }

  /** The items in heap order (not sorted); for estimates that look at everything waiting. */
  items(): readonly T[] {
    return this.heap;
  }

  clear(): T[] {
    return this.heap.splice(0, this.heap.length);
  }

  private siftDown(start: number): void {
    const heap = this.heap;
    let parent = start;
    for (;;) {
      const left = 2 * parent + 1;
      const right = left + 1;
      let best = parent;
      if (left < heap.length && this.before(heap[left], heap[best])) best = left;
      if (right < heap.length && this.before(heap[right], heap[best])) best = right;
      if (best === parent) return;
      [heap[parent], heap[best]] = [heap[best], heap[parent]];
      parent = best;
    }
  }

  private before(a: T, b: T): boolean {
    return a.priority < b.priority || (a.priority === b.priority && a.order < b.order);
  }
}
