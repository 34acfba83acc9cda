/**
 * The one config table: every key kvtier reads, listed once with its type,
 * default, environment name, LMCache alias, check and doc line.
 *
 * SCHEMA is typed against KvtierConfig, so a field without an entry (or an
 * entry whose check returns the wrong type) does not compile. Loader, docs
 * and the example config all read from here; nothing else names a key.
 */
import { MAX_FRAME_BYTES_DEFAULT, MAX_FRAME_BYTES_MAX, MAX_FRAME_BYTES_MIN } from '../../proto/constants.js';
import * as c from './checks.js';

export interface KvtierConfig {
  chunkSize: number;
  localCpu: boolean;
  maxLocalCpuSize: number;
  shrinkLocalCpuToAvailable: boolean;
  localDisk: string | null;
  maxLocalDiskSize: number;
  diskIoThreads: number;
  diskDirectIo: 'auto' | boolean;
  remoteUrl: string | null;
  remoteSerde: 'naive' | 'lz4' | 'lz4-shuffle';
  saveUnfullChunk: boolean;
  blockingTimeoutSecs: number;
  valkeyMode: 'single' | 'cluster';
  valkeyUsername: string | null;
  valkeyPassword: string | null;
  valkeyTlsCaFile: string | null;
  valkeyTlsInsecure: boolean;
  valkeyConnections: number;
  valkeyDataPath: 'auto' | 'native' | 'glide';
  valkeySegmentBytes: number;
  keyPrefix: string;
  ttlSecs: number;
  writeBehindQueueBytes: number;
  pinBudgetBytes: number;
  socketPath: string;
  socketMode: number;
  metricsPort: number;
  metricsHost: string;
  maxFrameBytes: number;
  leaseTtlMs: number;
  prefetchWindowMb: number | null;
  prefetchBudgetMb: number | null;
  chainMemoMb: number;
  idleConnectionTimeoutMs: number;
  recomputeTokensPerS: number | null;
  hostMemory: 'auto' | 'native' | 'heap';
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  extraConfig: Record<string, unknown>;
}

export type Field = keyof KvtierConfig;

export interface Entry<T> extends c.Check<T> {
  /** YAML key, snake_case. */
  readonly key: string;
  /** KVTIER_<KEY>; LMCACHE_<KEY> is read when this one is unset. */
  readonly env: string;
  readonly lmcacheEnv: string;
  /** LMCache's name for the same setting, or null when kvtier-only. */
  readonly lmcacheAlias: string | null;
  readonly default: T;
  /** The default as written in YAML, for docs. */
  readonly defaultText: string;
  readonly doc: string;
  /** Never echo the value in errors. */
  readonly secret: boolean;
}

interface Spec<T> {
  check: c.Check<T>;
  default: T;
  defaultText?: string;
  lmcache?: string;
  doc: string;
  secret?: boolean;
}

function entry<T>(key: string, spec: Spec<T>): Entry<T> {
  const upper = key.toUpperCase();
  return {
    key,
    type: spec.check.type,
    check: spec.check.check,
    env: `KVTIER_${upper}`,
    lmcacheEnv: `LMCACHE_${upper}`,
    lmcacheAlias: spec.lmcache ?? null,
    default: spec.default,
    defaultText: spec.defaultText ?? JSON.stringify(spec.default),
    doc: spec.doc,
    secret: spec.secret ?? false,
  };
}

/** setTimeout's ceiling; timeouts above it fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const REMOTE_SCHEMES = ['valkey', 'valkeys', 'redis', 'rediss', 'valkey-cluster', 'valkeys-cluster'] as const;

export const SCHEMA: { readonly [F in Field]: Entry<KvtierConfig[F]> } = {
  chunkSize: entry('chunk_size', {
    check: c.integer(16, 65536, 16), default: 256, lmcache: 'chunk_size',
    doc: 'Tokens per chunk; the unit of hashing, storage and lookup.',
  }),
  localCpu: entry('local_cpu', {
    check: c.boolean(), default: true, lmcache: 'local_cpu',
    doc: 'Keep chunks in the host tier (pinned host RAM).',
  }),
  maxLocalCpuSize: entry('max_local_cpu_size', {
    check: c.positive(65536, 'GB'), default: 5, lmcache: 'max_local_cpu_size',
    doc: 'Host tier capacity in GB (float). The pinned pool is mapped at start and warmed (faulted in, mlocked) in the background while the daemon serves; more than MemAvailable stops the daemon (exit 2) unless shrink_local_cpu_to_available.',
  }),
  shrinkLocalCpuToAvailable: entry('shrink_local_cpu_to_available', {
    check: c.boolean({ strict: true }), default: false,
    doc: 'When max_local_cpu_size is more than MemAvailable at start, take 90% of MemAvailable instead of exiting, with a warning saying by how much the pool shrank.',
  }),
  localDisk: entry('local_disk', {
    check: c.nullable(c.directory()), default: null, lmcache: 'local_disk',
    doc: 'Disk tier directory (file:///path/ as LMCache writes it, or an absolute path); chunks there outlive a daemon restart. Checked at start with a real file write (and an O_DIRECT one when disk_direct_io asks): missing, not a directory, read-only, or locked by another kvtier daemon stops the daemon (exit 2). null: no disk tier. docs/disk.md has the file format.',
  }),
  maxLocalDiskSize: entry('max_local_disk_size', {
    check: c.positive(1 << 30, 'GB'), default: 5, lmcache: 'max_local_disk_size',
    doc: 'Disk tier capacity in GB (float), headers and padding included; the least recently used chunks are deleted to stay under it.',
  }),
  diskIoThreads: entry('disk_io_threads', {
    check: c.integer(1, 64), default: 4,
    doc: "Threads of the disk tier's own I/O pool (one pwritev/preadv per chunk, O_DIRECT where taken), and as many more for its checksums, so hashing never empties the device queue; never the JS thread or the copy threads.",
  }),
  diskDirectIo: entry('disk_direct_io', {
    check: c.autoBoolean(), default: 'auto', defaultText: 'auto',
    doc: 'O_DIRECT for disk tier files: true (required: a filesystem that refuses it stops the daemon), false (page cache), or auto (O_DIRECT when the start-up probe takes it).',
  }),
  remoteUrl: entry('remote_url', {
    check: c.nullable(c.url(REMOTE_SCHEMES, 'kvtier speaks only the Valkey/Redis protocol')),
    default: null, lmcache: 'remote_url',
    doc: 'Valkey tier address; valkeys://, rediss:// and valkeys-cluster:// use TLS; valkey-cluster:// and valkeys-cluster:// list cluster seeds; null: host tier only.',
  }),
  remoteSerde: entry('remote_serde', {
    check: c.oneOf(['naive', 'lz4', 'lz4-shuffle'] as const, {
      refused: {
        cachegen: "'cachegen' is LMCache's GPU codec, which kvtier does not implement",
        torch: 'kvtier stores raw bytes, not torch pickles',
        safetensor: 'kvtier stores raw bytes, not safetensors',
      },
    }),
    default: 'naive', lmcache: 'remote_serde',
    doc: 'Encoding of values in the Valkey tier: raw bytes, or LZ4 (after byte shuffle).',
  }),
  saveUnfullChunk: entry('save_unfull_chunk', {
    check: c.boolean(), default: false, lmcache: 'save_unfull_chunk',
    doc: 'Also store the last, partial chunk of a prompt.',
  }),
  blockingTimeoutSecs: entry('blocking_timeout_secs', {
    check: c.positive(MAX_TIMER_MS / 1000, 'seconds'), default: 10, lmcache: 'blocking_timeout_secs',
    doc: 'Longest a blocking call (a Lookup, Retrieve or write-behind store) waits on the Valkey tier before it counts as a miss; an upper cap, not a per-request timeout. Requests get a 1 s base (plus time for their bytes); a cap below the hung-server bound (2 x that, 2.28 s at defaults) lowers the base until the bound fits, to at least 0.1 s per request.',
  }),
  valkeyMode: entry('valkey_mode', {
    check: c.oneOf(['single', 'cluster'] as const), default: 'single', lmcache: 'extra_config.valkey_mode',
    doc: 'Valkey topology; a valkey-cluster:// or valkeys-cluster:// URL implies cluster. Also read from extra_config.',
  }),
  valkeyUsername: entry('valkey_username', {
    check: c.nullable(c.text()), default: null, lmcache: 'extra_config.valkey_username',
    doc: 'Valkey ACL user. Also read from extra_config.valkey_username or extra_config.username.',
  }),
  valkeyPassword: entry('valkey_password', {
    check: c.nullable(c.text()), default: null, lmcache: 'extra_config.valkey_password', secret: true,
    doc: 'Valkey password. Also read from extra_config.valkey_password or extra_config.password.',
  }),
  valkeyTlsCaFile: entry('valkey_tls_ca_file', {
    check: c.nullable(c.text()), default: null,
    doc: "PEM file of the CA certificate(s) that signed the Valkey server's certificate, for valkeys:// and rediss://; trusted instead of the system store. Read at start: missing, unreadable or not PEM stops the daemon. Also read from extra_config. No client certificates (mutual TLS): glide 2.5.2 has no option for them.",
  }),
  valkeyTlsInsecure: entry('valkey_tls_insecure', {
    check: c.boolean({ strict: true }), default: false,
    doc: "Do not verify the Valkey server's certificate (valkeys://, rediss://): anyone on the path can read and forge chunks; for tests. Only true or false; not with valkey_tls_ca_file. Also read from extra_config.",
  }),
  valkeyConnections: entry('valkey_connections', {
    check: c.integer(1, 64), default: 4,
    doc: 'Client connections to Valkey (per node in cluster mode).',
  }),
  valkeyDataPath: entry('valkey_data_path', {
    check: c.oneOf(['auto', 'native', 'glide'] as const), default: 'auto',
    doc: "What moves segment bytes: the native addon's own connections (plain TCP or TLS on node's OpenSSL; single node or cluster, one link per master), or valkey-glide; auto picks native where it can serve the URL. kvtier stats and doctor say which and why.",
  }),
  valkeySegmentBytes: entry('valkey_segment_bytes', {
    check: c.integer(65536, 67108864), default: 1048576,
    doc: 'Largest single Valkey value; bigger chunks are split into segments.',
  }),
  keyPrefix: entry('key_prefix', {
    check: c.text({ pattern: /^[A-Za-z0-9_.-]+$/, patternText: '[A-Za-z0-9_.-]', maxBytes: 128 }),
    default: 'kvtier',
    doc: 'Prefix of every Valkey key, so fleets can share one Valkey.',
  }),
  ttlSecs: entry('ttl_secs', {
    check: c.integer(0, MAX_TIMER_MS), default: 0,
    doc: 'Expiry of Valkey entries in seconds; 0: no TTL.',
  }),
  writeBehindQueueBytes: entry('write_behind_queue_bytes', {
    check: c.integer(1, Number.MAX_SAFE_INTEGER), default: 1073741824,
    doc: 'Bytes of chunks queued for the Valkey tier, and separately for the disk tier; a store that would exceed it skips that tier (counted as dropped). Queued chunks stay pinned in host RAM until written.',
  }),
  pinBudgetBytes: entry('pin_budget_bytes', {
    check: c.integer(0, Number.MAX_SAFE_INTEGER), default: 1073741824,
    doc: 'Host tier bytes `kvtier pin` may keep from eviction (a system prompt, say); a pin past it pins nothing more and says so. 0: pinning is off.',
  }),
  socketPath: entry('socket_path', {
    check: c.text({ maxBytes: 107 }), default: '/tmp/kvtier.sock',
    doc: 'Unix socket the workers connect to (107 bytes: the sun_path limit).',
  }),
  socketMode: entry('socket_mode', {
    check: c.fileMode(), default: 0o600, defaultText: "'0600'",
    doc: 'Permissions of the socket file; 0660 lets a group of workers connect.',
  }),
  metricsPort: entry('metrics_port', {
    check: c.integer(0, 65535), default: 0,
    doc: 'Prometheus /metrics HTTP port; 0: off.',
  }),
  metricsHost: entry('metrics_host', {
    check: c.text({ pattern: /^\S+$/, patternText: 'non-space characters' }), default: '127.0.0.1',
    doc: 'Address the metrics server binds.',
  }),
  maxFrameBytes: entry('max_frame_bytes', {
    check: c.integer(MAX_FRAME_BYTES_MIN, MAX_FRAME_BYTES_MAX), default: MAX_FRAME_BYTES_DEFAULT,
    doc: 'Largest protocol frame accepted; bigger frames close the connection.',
  }),
  leaseTtlMs: entry('lease_ttl_ms', {
    check: c.integer(1, MAX_TIMER_MS), default: 30000,
    doc: 'How long a lease pins chunks before it expires unreleased.',
  }),
  prefetchWindowMb: entry('prefetch_window_mb', {
    check: c.nullable(c.integer(1, 1 << 20)), default: null,
    doc: "MiB of one Lookup's disk and Valkey fetches into the host tier that may be in flight, or landed and not yet retrieved, at once; the rest start in position order as Retrieves read chunks out, so a context larger than the host pool loads in one lease. null: a quarter of max_local_cpu_size, at most 1024.",
  }),
  prefetchBudgetMb: entry('prefetch_budget_mb', {
    check: c.nullable(c.integer(1, 1 << 20)), default: null,
    doc: "MiB of every Lookup's disk and Valkey fetches, in flight or landed and not yet retrieved, summed over the Lookups of the daemon; a Lookup's fetches past it wait, in the order they came, for bytes to be read out, so concurrent large Lookups do not fill the host pool with chunks nobody reads yet. null: half of max_local_cpu_size.",
  }),
  chainMemoMb: entry('chain_memo_mb', {
    check: c.integer(0, 4096), default: 32,
    doc: 'MiB of the memo of prefix-hash steps (native addon only): a chunk this daemon hashed before is recognised by its parent hash and a byte comparison of its tokens instead of two SHA-256 calls; 32 MiB holds 16384 chunks of 256 tokens. 0: hash every chunk.',
  }),
  idleConnectionTimeoutMs: entry('idle_connection_timeout_ms', {
    check: c.integer(0, MAX_TIMER_MS), default: 0,
    doc: 'Close a client connection after this many ms without I/O, when it has nothing in flight and no registered KV memory (counted in stats); 0: never.',
  }),
  recomputeTokensPerS: entry('recompute_tokens_per_s', {
    check: c.nullable(c.positive(1e9, 'tokens per second')), default: null,
    doc: "The workers' prefill speed, tokens/s (one number for the daemon's models). Set, a Lookup reports chunks found only in Valkey as hits only while the Valkey read rate this daemon measures makes loading them faster than recomputing them; the rest the worker recomputes (counted). null: always load.",
  }),
  hostMemory: entry('host_memory', {
    check: c.oneOf(['auto', 'native', 'heap'] as const), default: 'auto',
    doc: 'Host tier memory: native pinned pool, JS heap, or auto (native when the addon loads).',
  }),
  logLevel: entry('log_level', {
    check: c.oneOf(['debug', 'info', 'warn', 'error'] as const, { aliases: { warning: 'warn' } }),
    default: 'info',
    doc: 'Least severe log level written.',
  }),
  extraConfig: entry('extra_config', {
    check: c.mapping(), default: {}, lmcache: 'extra_config',
    doc: "LMCache's free-form map; valkey_* sub-keys are read, others kept as is.",
  }),
};

export const FIELDS = Object.keys(SCHEMA) as Field[];

/** YAML key -> field. */
export const FIELD_BY_KEY: ReadonlyMap<string, Field> = new Map(FIELDS.map((f) => [SCHEMA[f].key, f]));
