/**
 * Corks a socket for the rest of the event-loop turn: everything written in
 * one turn (the answers to one read's frames, a lease released per rank)
 * leaves in one writev. A write syscall that wakes the peer cost tens of
 * microseconds on the VMs measured here (docs/benchmarks.md, Lookup).
 */
import type { Socket } from 'node:net';

export class TurnCork {
  readonly #socket: Socket;
  #corked = false;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  /** Corks the socket unless it already is this turn; the next tick uncorks it. */
  hold(): void {
    if (this.#corked) return;
    this.#corked = true;
    this.#socket.cork();
    process.nextTick(this.flush);
  }

  /** Sends what is corked now (before a destroy, which would drop it). */
  readonly flush = (): void => {
    if (!this.#corked) return;
    this.#corked = false;
    this.#socket.uncork();
  };
}
