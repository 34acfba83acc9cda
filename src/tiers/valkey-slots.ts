/**
 * Which cluster node holds a key, for the native data path.
 *
 *   slot  = CRC16/XMODEM(hash tag or whole key) mod 16384   (Valkey's keyHashSlot)
 *   owner = SlotMap.owner[slot] -> index into SlotMap.nodes ("host:port"), -1 none
 *
 * Every key of a chunk carries the same hash tag `{<ns>:<hash>}`
 * (valkey-format.ts), so a chunk is one slot, one node, one native link. The
 * map itself comes from the control plane (glide's CLUSTER SLOTS); a stale
 * map only costs a MOVED/ASK, which the tier answers by refreshing it and
 * doing that chunk through glide.
 */

export const SLOT_COUNT = 16384;

const CRC16_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let b = 0; b < 8; b++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** CRC16/XMODEM (poly 0x1021, init 0, unreflected), as Valkey's crc16.c. */
export function crc16(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = 0;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ bytes[i]) & 0xff];
  return crc;
}

/** The cluster slot of `key`: only the content of the first {...} counts, when that is non-empty. */
export function keyHashSlot(key: string | Uint8Array): number {
  const b = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  const open = b.indexOf(0x7b);
  if (open >= 0) {
    const close = b.indexOf(0x7d, open + 1);
    if (close > open + 1) return crc16(b, open + 1, close) & (SLOT_COUNT - 1);
  }
  return crc16(b) & (SLOT_COUNT - 1);
}

export interface SlotMap {
  /** Master addresses, "host:port". */
  nodes: string[];
  /** Per slot: index into nodes, or -1 when no master serves it. */
  owner: Int16Array;
}

function text(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return null;
}

function int(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : Number.NaN;
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * A CLUSTER SLOTS reply ([[start, end, [host, port, id, ...], replicas...], ...])
 * as a SlotMap. A range whose master has no usable host ('' or '?': the node
 * does not know its own address) is left without an owner, so its chunks go
 * through glide. Throws on a reply of another shape.
 */
export function parseClusterSlots(reply: unknown): SlotMap {
  if (!Array.isArray(reply)) throw new Error(`expected an array for CLUSTER SLOTS, got ${typeof reply}`);
  const nodes: string[] = [];
  const index = new Map<string, number>();
  const owner = new Int16Array(SLOT_COUNT).fill(-1);
  for (const range of reply) {
    if (!Array.isArray(range) || range.length < 3 || !Array.isArray(range[2])) throw new Error('expected [start, end, [host, port, ...], ...] in CLUSTER SLOTS');
    const start = int(range[0]);
    const end = int(range[1]);
    const host = text(range[2][0]);
    const port = int(range[2][1]);
    if (start === null || end === null || start < 0 || end >= SLOT_COUNT || start > end || port === null || host === null) {
      throw new Error(`expected a slot range and a master address in CLUSTER SLOTS, got ${JSON.stringify(range.slice(0, 2))}`);
    }
    if (host === '' || host === '?' || port <= 0 || port > 65535) continue;
    const addr = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    let i = index.get(addr);
    if (i === undefined) {
      i = nodes.push(addr) - 1;
      index.set(addr, i);
    }
    owner.fill(i, start, end + 1);
  }
  return { nodes, owner };
}

/** "host:port" or "[v6]:port" back into its parts. */
export function splitAddress(addr: string): { host: string; port: number } {
  const at = addr.lastIndexOf(':');
  const host = addr.slice(0, at);
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(addr.slice(at + 1)) };
}
