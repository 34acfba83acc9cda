/**
 * The addon's TypeScript face: everything src/ and bench/ use from native/.
 *
 * Each module has one job: loader.ts loads the .node and declares its
 * exports; errors.ts is the coded error every module throws (codes from
 * proto/constants.json; src/errors.ts types them); info.ts, hash.ts,
 * peer-cred.ts and valkey-link.ts wrap single addon calls; disk-io.ts is the
 * disk tier's file I/O on its own threads; host-pool.ts is
 * the pinned NativePool; registered-kv.ts maps a worker's KV memory;
 * layout-plan.ts is the layout math (pure TypeScript). Inputs are checked in
 * TypeScript first ("expected X for Y, got Z"); the addon gets plain numbers,
 * Buffers and tables, and re-checks every bound. native/ imports nothing
 * from src/.
 */
export { NativeCodedError } from './errors.js';
export { addonPath, type ChainMemoStats, type PeerCredentials, type ValkeyLinkBinding, type ValkeyReadResult } from './loader.js';
export { cudaCopyGpuMs, nativeAvailable, nativeInfo, setCudaCopyMode, tuneMalloc, type CudaCopyMode, type NativeInfo } from './info.js';
export { chainHashes, chainMemoStats, nativePayloadSum, setChainMemo } from './hash.js';
export { peerCredentials } from './peer-cred.js';
export { openValkeyLink, type ValkeyLinkOptions } from './valkey-link.js';
export { DISK_BLOCK, DiskIo, lockDiskDir, probeDiskDir, unlockDiskDir, type ChunkWrite, type DiskReadResult, type DiskScanResult } from './disk-io.js';
export { ARENA_MAX_BYTES, NativePool, WARM_STEP_BYTES, type NativePoolOptions, type PoolInfo, type PoolSlab } from './host-pool.js';
export { RegisteredKv, type GatherJob, type RegisteredKvOptions, type ScatterJob } from './registered-kv.js';
export { SKIP_BLOCK, type KvLayoutSpec, type KvPlaneSpec, type KvRegionSpec } from './layout-plan.js';
