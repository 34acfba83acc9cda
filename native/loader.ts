/**
 * Loads the native addon (build/Release/kvtier_native.node), once, and
 * declares what it exports. The only module that requires the .node file;
 * everything else in native/ calls load(). A missing or unloadable addon
 * throws KVT_NATIVE with how to build it.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { DiskBinding } from './disk-io.js';
import { messageOf, nativeFailure } from './errors.js';

/** One pinned arena (native/src/pool.h). */
export interface BindingPool {

  readonly buffer: ArrayBuffer;
  alloc(bytes: number): number;
  free(offset: number): void;
  info(): { capacityBytes: number; usedBytes: number; liveSlabs: number; readyBytes: number; lockedBytes: number; warm: boolean; pinned: boolean; hugePages: boolean; cudaHost: boolean; detail: string };
  /** Faults in and mlocks the arena off the JS thread; true when done, false when stopped by close(). */
  warm(stepBytes: number): Promise<boolean>;
  warmNow(upToBytes: number): void;
  close(): void;
}

export interface BindingRegion {
  readonly size: number;
  readonly kind: 'shm' | 'cuda' | 'closed';
  close(): void;
}

export interface Binding extends DiskBinding {
  info(): { cudaCompiled: boolean; deviceCount: number; reason: string; copyThreads: number; cudaCopy: string; cudaCopyGpuMs: number };
  Pool: new (bytes: number) => BindingPool;
  Region: {
    new (shmPath: string, sizeBytes: number, shmDir: string, ownerUid: number): BindingRegion;
    new (ipcHandle: Uint8Array, sizeBytes: number, device: number): BindingRegion;
  };
  copyBlocks(scatter: boolean, regions: BindingRegion[], buffers: Uint8Array[], blockIds: Uint32Array[], planes: Float64Array, numBlocks: number): Promise<void>;
  chainHashes(prev: Uint8Array, tokens: Uint8Array, chunkBytes: number, count: number, out: Uint8Array): void;
  setChainMemo(bytes: number): void;
  chainMemoStats(): ChainMemoStats;
  tuneMalloc(): boolean;
  peerCredentials(fd: number): PeerCredentials;
  setCudaCopy(mode: string): boolean;
  ValkeyLink: new (host: string, port: number, username: string, password: string, db: number, connections: number, connectTimeoutMs: number, pipelineBytes: number, tls: boolean, tlsCaPem: string, tlsInsecure: boolean) => ValkeyLinkBinding;
  payloadSum(bytes: Uint8Array, pieceBytes: number): string;
}

/** The chain memo (native/src/prefix-hash.h): its table for the chunk size hashed last, and its counts. */
export interface ChainMemoStats {
  bytes: number;
  slots: number;
  hits: number;
  misses: number;
}

/** What a native read job found: the manifest (when asked for) and each segment. */
export interface ValkeyReadResult {
  manifestState: 'ok' | 'nil' | 'too-long' | 'none';
  manifest: Buffer | null;
  /** Per segment: bytes landed in place, -1 absent, -2 a value of another length. */
  got: Float64Array;
  /** Per segment: XXH3-64 (16 hex digits) of the bytes that landed. */
  sums: string[];
}

/**
 * One Valkey node's native data plane (native/src/valkey/link.h). Segment i
 * of `src`/`dest` is bytes [i*segBytes, min(len, (i+1)*segBytes)). Rejects
 * with a `code`: KVT_VALKEY_UNAVAILABLE (connection lost, timed out),
 * KVT_VALKEY_AUTH, KVT_VALKEY_REFUSED (a server error reply), KVT_BAD_REQUEST.
 */
export interface ValkeyLinkBinding {
  write(segKeys: string[], src: Uint8Array, segBytes: number, segTtl: number, manifestKey: string, manifest: Uint8Array, sumOffsets: Uint32Array, manifestTtl: number, timeoutMs: number): Promise<void>;
  /** `asking`: ASKING before each GET (a retry at the node an ASK redirect named). */
  read(manifestKey: string, manifestCap: number, segKeys: string[], dest: Uint8Array, segBytes: number, timeoutMs: number, asking: boolean): Promise<ValkeyReadResult>;
  /** busyMs: time connections spent running parts, summed; waitMs: time parts waited for a connection, summed. */
  stats(): { jobs: number; failures: number; reconnects: number; bytesOut: number; bytesIn: number; parts: number; busyMs: number; waitMs: number };
  /** Fails every queued part and wakes running ones (their sockets are shut down); the count of queued parts. */
  abort(why: string): number;
  close(): void;
}

/** Who is at the other end of a connected Unix socket, as the kernel recorded it at connect(). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw nativeFailure(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

let binding: Binding | undefined;

/** Where the built addon lives (for child processes that load it themselves). */
export function addonPath(): string {
  return join(packageRoot(), 'build', 'Release', 'kvtier_native.node');
}

export function load(): Binding {
  if (binding !== undefined) return binding;
  const file = addonPath();
  if (!existsSync(file)) {
    throw nativeFailure(`the native addon is not built (${file} is missing): run npm run build:native (needs cmake and a C++17 compiler)`);
  }
  try {
    binding = createRequire(import.meta.url)(file) as Binding;
  } catch (e) {
    throw nativeFailure(`the native addon at ${file} failed to load: ${messageOf(e)}; rebuild it with npm run build:native`, { cause: e });
  }
  return binding;
}

