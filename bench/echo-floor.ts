/**
 * The floor under `bench lookup`'s rtt: a plain Node Unix-socket echo.
 *
 * A child process (plain `net`, no kvtier code) writes back whatever it
 * reads; the bench sends a frame of the same size as its Ping and waits for
 * that many bytes. Same machine, same run, same kind of process pair as the
 * daemon and its client, so rtt_us minus echo_us is what kvtier adds.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SERVER = `
const net = require('node:net');
net.createServer((s) => s.on('data', (d) => s.write(d))).listen(process.argv[1], () => process.stdout.write('ready\\n'));
`;

export interface EchoFloor {
  /** The echo server's process (bench lookup pins it beside the daemon). */
  pid: number;
  /** One round trip of `frame`: resolves when as many bytes came back. */
  roundTrip(): Promise<void>;
  stop(): Promise<void>;
}

export async function startEchoFloor(frame: Buffer): Promise<EchoFloor> {
  const dir = mkdtempSync(join(tmpdir(), 'kvtier-echo-'));
  const path = join(dir, 'echo.sock');
  const child = spawn(process.execPath, ['-e', SERVER, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`echo server exited with ${code}`)));
  });
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = createConnection(path, () => resolve(s));
    s.once('error', reject);
  });
  let want = 0;
  let done: (() => void) | null = null;
  socket.on('data', (d: Buffer) => {
    want -= d.length;
    if (want <= 0 && done !== null) {
      const d0 = done;
      done = null;
      d0();
    }
  });
  return {
    pid: child.pid!,
    roundTrip: () => new Promise<void>((resolve) => {
      want = frame.length;
      done = resolve;
      socket.write(frame);
    }),
    stop: async () => {
      socket.destroy();
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
