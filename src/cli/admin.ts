/**
 * `kvtier ls`, `inspect`, `clear`, `pin` and `unpin`: the daemon's admin
 * requests over its socket (src/manager/admin.ts does the work), as a table
 * for a person or one JSON object with --json.
 *
 * A token file (inspect --tokens-file, pin, unpin) holds a prompt's token
 * ids: a JSON array of integers, or integers separated by whitespace or
 * commas. Tokens are hashed in the namespace of the fingerprint given with
 * --model / --fingerprint (the fields of proto NamespaceFingerprint, as the
 * engine's connector sends them), so it must match the engine's exactly.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { packTokens } from '../chunking/tokens.js';
import { loadConfig } from '../config/load.js';
import { UsageError, errorMessage } from '../errors.js';
import { KvtierClient, type ClientOptions } from '../protocol/client.js';

interface Common {
  config?: string;
  socket?: string;
  json?: boolean;
  model?: string;
  fingerprint?: string;
}

const TIERS = ['host', 'disk', 'valkey', 'all'];
const NAMESPACE_ID = /^[A-Za-z0-9_.-]{1,128}$/;

/** Token ids from a token file's text: a JSON array, or integers separated by whitespace or commas. */
export function parseTokenFile(text: string, file: string): Buffer {
  const t = text.trim();
  let values: unknown[];
  if (t.startsWith('[')) {
    try {
      values = JSON.parse(t) as unknown[];
    } catch (e) {
      throw new UsageError(`${file}: not a JSON array of token ids: ${errorMessage(e)}`);
    }
    if (!Array.isArray(values)) throw new UsageError(`${file}: expected a JSON array of token ids`);
  } else {
    values = t === '' ? [] : t.split(/[\s,]+/).map((w) => (/^\d+$/.test(w) ? Number(w) : w));
  }
  values.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new UsageError(`${file}: expected token ids (unsigned 32-bit integers), got ${JSON.stringify(v)} at position ${i}`);
    }
  });
  if (values.length === 0) throw new UsageError(`${file}: no token ids`);
  return packTokens(values as number[]);
}

function readTokens(file: string): Buffer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read token file ${file}: ${errorMessage(e)}`);
  }
  return parseTokenFile(text, file);
}

function fingerprintOf(o: Common): ClientOptions['fingerprint'] {
  let fp: Record<string, unknown> = {};
  if (o.fingerprint !== undefined) {
    try {
      fp = JSON.parse(o.fingerprint) as Record<string, unknown>;
    } catch (e) {
      throw new UsageError(`--fingerprint: expected a JSON object of NamespaceFingerprint fields: ${errorMessage(e)}`);
    }
    if (fp === null || typeof fp !== 'object' || Array.isArray(fp)) throw new UsageError('--fingerprint: expected a JSON object');
  }
  if (o.model !== undefined) fp.model = o.model;
  return fp as ClientOptions['fingerprint'];
}

function tierOption(t: string | undefined): string {
  if (t === undefined) return 'all';
  if (!TIERS.includes(t)) throw new UsageError(`--tier: expected one of ${TIERS.join(', ')}, got "${t}"`);
  return t;
}

function namespaceOption(n: string | undefined): string {
  if (n === undefined) return '';
  if (!NAMESPACE_ID.test(n)) throw new UsageError(`--namespace: expected a namespace id as kvtier ls prints it, got "${n}"`);
  return n;
}

async function withClient<T>(o: Common, fn: (c: KvtierClient) => Promise<T>): Promise<T> {
  const socket = loadConfig({ file: o.config ?? null, overrides: { socket_path: o.socket } }).config.socketPath;
  const client = await KvtierClient.connect({ path: socket, clientKind: 'cli', timeoutMs: 30_000, fingerprint: fingerprintOf(o) });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

const MiB = 1024 ** 2;
const fmtBytes = (v: number | null | undefined): string => fmtB(v ?? 0);
const fmtB = (n: number): string => (n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(2)} GiB` : `${(n / MiB).toFixed(1)} MiB`);
const out = (o: Common, obj: unknown, text: string): void => {
  process.stdout.write(o.json === true ? `${JSON.stringify(obj)}\n` : text);
};

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return `${rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd()).join('\n')}\n`;
}

const common = (cmd: Command): Command => cmd
  .option('-c, --config <file>', 'config to find the socket in')
  .option('-s, --socket <path>', 'Unix socket path')
  .option('--json', 'print one JSON object');
const withFingerprint = (cmd: Command): Command => cmd
  .option('--model <name>', 'the fingerprint model (namespace of the tokens)')
  .option('--fingerprint <json>', 'the namespace fingerprint as JSON, e.g. {"model":"m","dtype":"bfloat16","tpSize":2}');

export function registerAdmin(program: Command): void {
  common(program.command('ls').description('namespaces with chunk counts and bytes per tier'))
    .option('--namespace <id>', 'only this namespace')
    .option('--tier <tier>', 'host, disk, valkey or all (default all)')
    .action(async (o: Common & { namespace?: string; tier?: string }) => {
      const req = { namespaceId: namespaceOption(o.namespace), tier: tierOption(o.tier) };
      const r = await withClient(o, (c) => c.listNamespaces(req));
      // Disk columns where the disk tier holds something (or was asked for).
      const disk = req.tier === 'disk' || r.namespaces.some((n) => (n.diskChunks ?? 0) > 0);
      const rows = [['namespace', 'host chunks', 'host bytes', 'pinned', 'valkey chunks', 'valkey bytes', ...(disk ? ['disk chunks', 'disk bytes'] : [])]];
      for (const n of r.namespaces) {
        const vk = r.valkeyListed ? [String(n.valkeyChunks), fmtBytes(n.valkeyBytes)] : ['-', '-'];
        const dk = disk ? [String(n.diskChunks), fmtBytes(n.diskBytes)] : [];
        rows.push([n.namespaceId ?? '', String(n.hostChunks), fmtBytes(n.hostBytes), String(n.pinnedChunks), ...vk, ...dk]);
      }
      const note = r.valkeyListed || req.tier === 'host' || req.tier === 'disk' ? '' : 'valkey not listed (not configured or down)\n';
      out(o, { namespaces: r.namespaces, valkeyListed: r.valkeyListed }, r.namespaces.length === 0 ? `no chunks\n${note}` : table(rows) + note);
    });

  withFingerprint(common(program.command('inspect').description('where a chunk lives, its size and age, pinned or not')))
    .argument('[hash]', 'chunk hash (64 hex, as kvtier inspect --tokens-file prints)')
    .option('--namespace <id>', 'the chunk hash is in this namespace (default: wherever it is)')
    .option('--tokens-file <file>', "every chunk of this prompt (in --model/--fingerprint's namespace)")
    .action(async (hash: string | undefined, o: Common & { namespace?: string; tokensFile?: string }) => {
      if ((hash === undefined) === (o.tokensFile === undefined)) throw new UsageError('inspect: give a chunk hash or --tokens-file, exactly one');
      if (hash !== undefined && !/^[A-Za-z0-9_.-]{1,128}$/.test(hash)) throw new UsageError(`inspect: "${hash}" is not a chunk hash`);
      const req = o.tokensFile !== undefined ? { tokens: readTokens(o.tokensFile) } : { chunkHash: hash, namespaceId: namespaceOption(o.namespace) };
      const r = await withClient(o, (c) => c.inspect(req));
      const lines = r.chunks.map((ch) => {
        const where = [
          ch.inHost ? `host ${fmtBytes(ch.hostBytes)}, ${(ch.hostAgeS ?? 0).toFixed(1)} s old, ${ch.pinned ? 'pinned' : 'not pinned'} (${ch.pins} pins)` : 'host -',
          ch.inDisk ? `disk ${fmtBytes(ch.diskBytes)}` : 'disk -',
          ch.inValkey ? `valkey ${fmtBytes(ch.valkeyBytes)}` : 'valkey -',
        ];
        return `${req.tokens !== undefined ? `#${ch.index} ` : ''}${ch.namespaceId} ${ch.chunkHash}  ${where.join('; ')}`;
      });
      out(o, { chunks: r.chunks }, lines.length === 0 ? 'not found in any tier\n' : `${lines.join('\n')}\n`);
    });

  common(program.command('clear').description("remove chunks: a namespace's or every namespace's, from a tier or all"))
    .option('--namespace <id>', 'only this namespace (default: every namespace)')
    .option('--tier <tier>', 'host, disk, valkey or all (default all)')
    .action(async (o: Common & { namespace?: string; tier?: string }) => {
      const req = { namespaceId: namespaceOption(o.namespace), tier: tierOption(o.tier) };
      const r = await withClient(o, (c) => c.clear(req));
      const what = req.namespaceId === '' ? 'every namespace' : `namespace ${req.namespaceId}`;
      const skipped = r.valkeySkipped ? '; valkey is down: its chunks were NOT cleared\n' : '\n';
      const disk = (r.diskChunks ?? 0) > 0 || req.tier === 'disk' ? `, ${r.diskChunks} disk chunks` : '';
      out(o, { hostChunks: r.hostChunks, diskChunks: r.diskChunks, valkeyChunks: r.valkeyChunks, valkeySkipped: r.valkeySkipped }, `cleared ${r.hostChunks} host chunks${disk} and ${r.valkeyChunks} valkey chunks of ${what}${skipped}`);
      if (r.valkeySkipped) process.exitCode = 1;
    });

  for (const unpin of [false, true]) {
    const name = unpin ? 'unpin' : 'pin';
    withFingerprint(common(program.command(name).description(unpin ? 'let a pinned prefix be evicted again' : 'keep a prefix from eviction (up to pin_budget_bytes)')))
      .argument('<tokens-file>', 'the prefix: token ids as a JSON array or separated by whitespace')
      .action(async (file: string, o: Common) => {
        const tokens = readTokens(file);
        const r = await withClient(o, (c) => c.pin({ tokens }, unpin));
        const text = unpin
          ? `unpinned ${r.pinnedChunks} of ${r.chunks} chunks (${r.alreadyChunks} were not pinned); ${fmtBytes(r.pinnedBytes)} of ${fmtBytes(r.budgetBytes)} budget pinned\n`
          : `pinned ${r.pinnedChunks} of ${r.chunks} chunks (${r.alreadyChunks} already pinned, ${r.missingChunks} in no tier, ${r.overBudgetChunks} over budget); ${fmtBytes(r.pinnedBytes)} of ${fmtBytes(r.budgetBytes)} budget pinned\n`;
        out(o, r, text);
        if (!unpin && (r.missingChunks > 0 || r.overBudgetChunks > 0)) process.exitCode = 1;
      });
  }
}
