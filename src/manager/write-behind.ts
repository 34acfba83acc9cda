/**
 * Write-behind queue: host entries on their way to the remote tier.
 *
 *   store ──► [ FIFO, bounded in bytes ] ──► up to `concurrency` puts in flight ──► Valkey
 *
 * A full queue refuses the job (the caller counts a drop): memory never
 * grows without bound while Valkey is slow or down. Each job's entry stays
 * pinned by the caller until its callback runs, so the bytes being sent
 * cannot be evicted and reused underneath the write.
 */
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

export interface WriteJob {
  bytes: number;
  run(): Promise<boolean>;
  done(ok: boolean): void;
}

export interface WriteBehindStats {
  queuedJobs: number;
  queuedBytes: number;
  inFlight: number;
  written: number;
  failed: number;
  dropped: number;
}

export class WriteBehindQueue {
  readonly #maxBytes: number;
  readonly #concurrency: number;
  readonly #log: Logger;
  #queue: WriteJob[] = [];
  #head = 0;
  #queuedBytes = 0;
  #inFlight = 0;
  #written = 0;
  #failed = 0;
  #dropped = 0;
  #idleWaiters: Array<() => void> = [];

  constructor(maxBytes: number, concurrency: number, log: Logger) {
    this.#maxBytes = maxBytes;
    this.#concurrency = concurrency;
    this.#log = log;
  }

  /** false (and counted) when the job would push the queue over its byte bound. */
  enqueue(job: WriteJob): boolean {
    if (this.#queuedBytes + job.bytes > this.#maxBytes) {
      this.#dropped++;
      return false;
    }
    this.#queue.push(job);
    this.#queuedBytes += job.bytes;
    this.#pump();
    return true;
  }

  stats(): WriteBehindStats {
    return {
      queuedJobs: this.#queue.length - this.#head,
      queuedBytes: this.#queuedBytes,
      inFlight: this.#inFlight,
      written: this.#written,
      failed: this.#failed,
      dropped: this.#dropped,
    };
  }

  /** Resolves when nothing is queued or in flight (used at shutdown and in tests). */
  idle(): Promise<void> {
    if (this.#inFlight === 0 && this.#head === this.#queue.length) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #pump(): void {
    while (this.#inFlight < this.#concurrency && this.#head < this.#queue.length) {
      const job = this.#queue[this.#head++];
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      this.#inFlight++;
      void this.#run(job);
    }
    if (this.#inFlight === 0 && this.#head === this.#queue.length) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  async #run(job: WriteJob): Promise<void> {
    let ok = false;
    try {
      ok = await job.run();
    } catch (e) {
      this.#log.warn('write-behind put failed', { error: errorMessage(e) });
    }
    if (ok) this.#written++;
    else this.#failed++;
    this.#queuedBytes -= job.bytes;
    this.#inFlight--;
    job.done(ok);
    this.#pump();
  }
}
