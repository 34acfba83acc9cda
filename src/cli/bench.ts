/**
 * `kvtier bench <name>`: each bench prints a table for a person, or one JSON
 * object with --json. The benches themselves live in bench/. A bad flag or
 * value is a usage error (UsageError: exit 2, as for every command), not a
 * failure (1). Bench modules are imported inside each command's action, never
 * at the top: `kvtier start` must not load them (bench/throughput-valkey.ts
 * pulls in valkey-glide; test/cli/lazy-bench.test.ts checks).
 */
import { InvalidArgumentError, type Command } from 'commander';
import { UsageError } from '../errors.js';
import { registerTtft } from './bench-ttft.js';

function progress(json: boolean): (msg: string) => void {
  return (msg) => {
    if (process.stderr.isTTY || !json) process.stderr.write(`bench: ${msg}\n`);
  };
}

function int(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer for ${name}, got ${v}`);
    return n;
  };
}

export function registerBench(program: Command): void {
  const bench = program.command('bench').description('measure kvtier on this machine (JSON with --json)');

  bench
    .command('lookup')
    .description('socket round trip and full-prefix lookup latency')
    .option('--tokens <n>', 'prompt length in tokens', int('--tokens'), 131072)
    .option('--iterations <n>', 'measured lookups', int('--iterations'), 400)
    .option('--ranks <n>', 'TP ranks of the one multi-rank Lookup measured beside a one-rank one', int('--ranks'), 8)
    .option('-s, --socket <path>', 'use a running daemon instead of starting one')
    .option('--json', 'print one JSON object')
    .action(async (opts: { tokens: number; iterations: number; ranks: number; socket?: string; json?: boolean }) => {
      const { runLookupBench } = await import('../../bench/lookup.js');
      const r = await runLookupBench(opts, progress(opts.json === true));
      if (opts.json === true) process.stdout.write(`${JSON.stringify(r)}\n`);
      else {
        process.stdout.write(`lookup of ${r.tokens} tokens (${r.chunks_hit} chunks hit), ${r.iterations} iterations\n`);
        process.stdout.write(`  socket rtt      p50 ${r.rtt_us.p50} us   p99 ${r.rtt_us.p99} us\n`);
        process.stdout.write(`  echo floor      p50 ${r.echo_us.p50} us   p99 ${r.echo_us.p99} us  (plain Node Unix-socket echo, ${r.echo_frame_bytes}-byte frame, same run)\n`);
        for (const [where, m] of Object.entries(r.placed_us ?? {})) {
          process.stdout.write(`  pinned, ${where.replace('_', ' ')}: rtt p50 ${m.rtt_us.p50} us, echo p50 ${m.echo_us.p50} us (${m.rtt_over_echo}x)\n`);
        }
        if (r.chain_us !== null) process.stdout.write(`  prompt chain here: SHA-256 p50 ${r.chain_us.sha256.p50} us, from the memo p50 ${r.chain_us.memo.p50} us\n`);
        process.stdout.write(`  lookup (client) p50 ${r.lookup_us.p50} us   p99 ${r.lookup_us.p99} us\n`);
        process.stdout.write(`  lookup (daemon) p50 ${r.daemon_lookup_us.p50} us   p99 ${r.daemon_lookup_us.p99} us\n`);
        process.stdout.write(`  lookup, ${r.ranks_per_lookup} ranks p50 ${r.ranks_lookup_us.p50} us   p99 ${r.ranks_lookup_us.p99} us  (${r.ranks_over_one.p50}x / ${r.ranks_over_one.p99}x one rank, same run)\n`);
        process.stdout.write(r.python_lookup_us === null ? `  lookup (python) not run: ${r.python_error ?? 'unknown'}\n` : `  lookup (python) p50 ${r.python_lookup_us.p50} us   p99 ${r.python_lookup_us.p99} us\n`);
      }
    });

  registerTtft(bench);

  bench
    .command('stall')
    .description('decode steps of the reference engine while a long prompt loads from a Valkey stopped with SIGSTOP, beside the same batch\'s steps without the load')
    .option('--context <n>', 'the long prompt\'s tokens', int('--context'), 8192)
    .option('--kv-heads <n>', 'KV heads of the reference model (8: 4 MiB float32 chunks)', int('--kv-heads'), 8)
    .option('--shorts <n>', 'short requests decoding all along', int('--shorts'), 4)
    .option('--baseline-s <n>', 'seconds of decode steps before the load', int('--baseline-s'), 3)
    .option('--pause-ms <ms>', 'each SIGSTOP of valkey-server (a pause above the Valkey tier\'s ~1.1 s request ceiling fails the fetches)', int('--pause-ms'), 800)
    .option('--pauses <n>', 'SIGSTOPs during the load', int('--pauses'), 3)
    .option('--gap-ms <ms>', 'valkey-server running between two SIGSTOPs', int('--gap-ms'), 200)
    .option('--json', 'print one JSON object')
    .action(async (opts: { context: number; kvHeads: number; shorts: number; baselineS: number; pauseMs: number; pauses: number; gapMs: number; json?: boolean }) => {
      if (opts.context <= 256) throw new UsageError(`bench stall: expected more than one 256-token chunk for --context, got ${opts.context}`);
      if (![1, 2, 4, 8].includes(opts.kvHeads)) throw new UsageError(`bench stall: expected 1, 2, 4 or 8 (a divisor of the model's 8 query heads) for --kv-heads, got ${opts.kvHeads}`);
      const { runStallBench } = await import('../../bench/stall.js');
      const r = await runStallBench({ contextTokens: opts.context, kvHeads: opts.kvHeads, shorts: opts.shorts, baselineS: opts.baselineS, pauseMs: opts.pauseMs, pauses: opts.pauses, gapMs: opts.gapMs }, progress(opts.json === true));
      const d = r.during_load;
      if (opts.json === true) process.stdout.write(`${JSON.stringify(r)}\n`);
      else {
        const row = (s: { p50: number; p99: number; max: number; steps: number }): string => `p50 ${s.p50} ms   p99 ${s.p99} ms   max ${s.max} ms  (${s.steps} steps)`;
        process.stdout.write(`${opts.shorts} short requests decoding; a ${opts.context}-token prompt loaded from Valkey (${d.chunks_loaded} chunks, ${d.failed_blocks} failed blocks) in ${d.load_ms ?? '-'} ms, valkey-server stopped ${d.valkey_stops} times, ${d.valkey_stopped_ms} ms in all\n`);
        process.stdout.write(`  step, baseline     ${row(r.baseline.step_ms)}\n`);
        process.stdout.write(`  step, during load  ${row(d.step_ms)}\n`);
        process.stdout.write(`  longest step during the load / (1.25 x longest baseline step + 5 ms) = ${r.target.ratio} (met at <= 1)\n`);
        process.stdout.write(`  logits after the load ${r.logits_match ? 'equal' : 'DIFFER from'} the recompute's\n`);
      }
      if (!r.logits_match) process.exitCode = 1;
    });

  bench
    .command('valkey-restart')
    .description('kill -9 a local valkey-server mid-run and restart it: time to recover, skipped stores, wrong bytes (must be 0)')
    .option('--down-ms <ms>', 'how long Valkey stays down', int('--down-ms'), 1000)
    .option('--json', 'print one JSON object')
    .action(async (opts: { downMs: number; json?: boolean }) => {
      progress(opts.json === true)(`valkey restart: busy and idle cases, ${opts.downMs} ms down each`);
      const { runValkeyRestart } = await import('../../bench/valkey-restart.js');
      const r = await runValkeyRestart(opts.downMs);
      if (opts.json === true) process.stdout.write(`${JSON.stringify(r)}\n`);
      else for (const c of r.cases) process.stdout.write(`${c.case}: first store ${c.first_store_after_restart_ms ?? 'never'} ms after the restart; ${c.puts_ok}/${c.puts} stores ok, ${c.hits} hits, ${c.misses} misses, ${c.wrong_bytes} wrong\n`);
      if (r.cases.some((c) => c.wrong_bytes > 0 || c.first_store_after_restart_ms === null)) process.exitCode = 1;
    });

  const throughput = bench.command('throughput');
  const usage: (message: string) => never = (message) => {
    throw new UsageError(`bench throughput: ${message}`);
  };
  throughput
    .description('chunk store/retrieve GB/s beside memcpy (host), plain file I/O (disk) or valkey-benchmark (valkey), measured in the same run')
    .requiredOption('--tier <tier>', 'host, disk or valkey')
    .option('--dir <dir>', 'disk tier: where the scratch directory goes (default: the OS temp dir)')
    .option('--url <url>', 'valkey tier: use this Valkey instead of starting one on a free loopback port')
    .option('--sizes <mib>', 'valkey and disk tiers: chunk sizes in MiB, comma separated', '4,32')
    .option('--tls', 'valkey tier: start the bench Valkey TLS-only (a throwaway CA); both data paths and valkey-benchmark use TLS')
    .option('--cluster', 'valkey tier: start a 3-master loopback cluster; both data paths and valkey-benchmark --cluster run against it')
    .option('--source <source>', 'host tier: where the worker KV lives: cuda (device memory via CUDA IPC), shm, sglang (an SGLang host pool through the HiCache backend), or auto (cuda when a device is visible)', 'auto')
    .option('--cuda-copy <mode>', 'host tier with --source cuda: staged or kernel (default: KVTIER_CUDA_COPY, else staged)')
    .option('--json', 'print one JSON object')
    .action(async (opts: { tier: string; url?: string; dir?: string; sizes: string; source: string; cudaCopy?: string; tls?: boolean; cluster?: boolean; json?: boolean }) => {
      const log = progress(opts.json === true);
      if (opts.tier !== 'host' && opts.tier !== 'valkey' && opts.tier !== 'disk') usage(`expected host, disk or valkey for --tier, got ${opts.tier}`);
      if (!['auto', 'shm', 'cuda', 'sglang'].includes(opts.source)) usage(`expected auto, shm, cuda or sglang for --source, got ${opts.source}`);
      if (opts.cudaCopy !== undefined && opts.cudaCopy !== 'kernel' && opts.cudaCopy !== 'staged') usage(`expected staged or kernel for --cuda-copy, got ${opts.cudaCopy}`);
      const native = opts.tier === 'host' ? await import('../../native/index.js') : undefined;
      const source = opts.source !== 'auto' ? opts.source : native?.nativeAvailable() === true && native.nativeInfo().backend === 'cuda' ? 'cuda' : 'shm';
      if (opts.tier === 'host' && source === 'cuda') {
        log('host tier: gather/scatter of Llama-3.1-8B chunks between device memory (CUDA IPC) and the pinned pool vs cudaMemcpy');
        const { runCudaThroughput } = await import('../../bench/throughput-cuda.js');
        const r = await runCudaThroughput({ mode: opts.cudaCopy as 'staged' | 'kernel' | undefined });
        const out = {
          bench: 'throughput', tier: 'host', source: 'cuda', model: r.shape, chunk_bytes: r.chunk_bytes,
          store_gbps: r.gather_gbps, retrieve_gbps: r.scatter_gbps,
          reference: { what: r.reference.what, store_gbps: r.reference.d2h_gbps, retrieve_gbps: r.reference.h2d_gbps },
          ratio: { store: r.ratio.gather, retrieve: r.ratio.scatter },
          verified: r.verified,
          detail: r,
        };
        process.stdout.write(opts.json === true ? `${JSON.stringify(out)}\n` : `host tier from CUDA device memory (${r.cuda_copy}), ${out.model}, ${out.chunk_bytes >> 20} MiB chunks, bytes verified: ${r.verified}\n  store (gather D2H)     ${out.store_gbps} GB/s  (${out.ratio.store} of cudaMemcpy ${out.reference.store_gbps})\n  retrieve (scatter H2D) ${out.retrieve_gbps} GB/s  (${out.ratio.retrieve} of cudaMemcpy ${out.reference.retrieve_gbps})\n`);
        if (!r.verified) process.exitCode = 1;
      } else if (opts.tier === 'host' && source === 'sglang') {
        log('host tier from an SGLang host pool: KVTierHiCacheStorage block form vs inline form vs two memcpys');
        const { runSglangThroughput } = await import('../../bench/throughput-sglang.js');
        const r = await runSglangThroughput();
        const block = r.rows.find((x) => x.form === 'block')!;
        const inline = r.rows.find((x) => x.form === 'inline')!;
        const out = {
          bench: 'throughput', tier: 'host', source: 'sglang', model: r.model, layout: r.layout, chunk_bytes: r.page_bytes,
          store_gbps: block.store_gbps, retrieve_gbps: block.retrieve_gbps, inline, reference: r.reference, ratio: r.ratio,
          verified: r.rows.every((x) => x.verified), detail: r,
        };
        process.stdout.write(opts.json === true ? `${JSON.stringify(out)}\n` : `SGLang host pages, ${r.model}, ${r.layout}, ${r.page_bytes >> 20} MiB pages, bytes verified: ${out.verified}\n  block form   store ${block.store_gbps} GB/s, retrieve ${block.retrieve_gbps} GB/s  (${r.ratio.block_vs_reference.store} / ${r.ratio.block_vs_reference.retrieve} of the two-copy reference ${r.reference.store_gbps} / ${r.reference.retrieve_gbps})\n  inline form  store ${inline.store_gbps} GB/s, retrieve ${inline.retrieve_gbps} GB/s  (block is ${r.ratio.block_vs_inline.store}x / ${r.ratio.block_vs_inline.retrieve}x)\n  CPU per GB   inline costs ${r.ratio.inline_vs_block_cpu.store}x / ${r.ratio.inline_vs_block_cpu.retrieve}x what block form costs (client + daemon)\n`);
        if (!out.verified) process.exitCode = 1;
      } else if (opts.tier === 'host') {
        log('host tier: gather/scatter of Llama-3.1-8B chunks vs memcpy');
        const { runHostThroughput } = await import('../../bench/throughput-host.js');
        const r = await runHostThroughput({});
        const out = {
          bench: 'throughput', tier: 'host', source: 'shm', model: r.shape, chunk_bytes: r.chunk_bytes,
          store_gbps: r.gather_gbps, retrieve_gbps: r.scatter_gbps,
          reference: { what: r.reference.what, store_gbps: r.reference.memcpy_gbps, retrieve_gbps: r.reference.memcpy_gbps },
          ratio: { store: r.ratio.gather, retrieve: r.ratio.scatter },
          // memcpy's stores go through the cache at these sizes here and the addon's do not: this is the ceiling for the addon's copies.
          stream_copy_reference: { what: r.reference.stream_copy_what, store_gbps: r.reference.stream_copy_gather_gbps, retrieve_gbps: r.reference.stream_copy_scatter_gbps },
          ratio_to_stream_copy: { store: r.ratio_to_stream_copy.gather, retrieve: r.ratio_to_stream_copy.scatter },
          layouts: r.layouts.map((l) => ({
            layout: l.layout, pieces_per_block: l.pieces_per_block, store_gbps: l.gather_gbps, retrieve_gbps: l.scatter_gbps,
            ratio: { store: l.ratio.gather, retrieve: l.ratio.scatter }, ratio_to_stream_copy: { store: l.ratio_to_stream_copy.gather, retrieve: l.ratio_to_stream_copy.scatter },
          })),
          detail: r,
        };
        const rows = out.layouts.map((l) => `  ${l.layout.padEnd(11)} (${l.pieces_per_block} pieces per block) store ${l.store_gbps} GB/s (${l.ratio.store} of memcpy, ${l.ratio_to_stream_copy.store} of the addon's contiguous copy), retrieve ${l.retrieve_gbps} GB/s (${l.ratio.retrieve} / ${l.ratio_to_stream_copy.retrieve})\n`).join('');
        process.stdout.write(opts.json === true ? `${JSON.stringify(out)}\n` : `host tier, ${out.model}, ${out.chunk_bytes >> 20} MiB chunks, memcpy ${out.reference.store_gbps} GB/s, the addon's contiguous copy ${out.stream_copy_reference.store_gbps} / ${out.stream_copy_reference.retrieve_gbps} GB/s in the same run\n${rows}`);
      } else if (opts.tier === 'disk') {
        const sizes = opts.sizes.split(',').map((v) => Math.round(Number(v) * (1 << 20)));
        if (sizes.some((n) => !Number.isSafeInteger(n) || n <= 0)) usage(`expected MiB sizes like 4,32 for --sizes, got ${opts.sizes}`);
        log(`disk tier: ${opts.sizes} MiB chunks between pinned slabs and files vs plain file I/O`);
        const { runDiskThroughput } = await import('../../bench/throughput-disk.js');
        const r = await runDiskThroughput({ dir: opts.dir, sizes });
        if (opts.json === true) process.stdout.write(`${JSON.stringify(r)}\n`);
        else for (const row of r.rows) process.stdout.write(`${row.chunk_bytes >> 20} MiB chunks (${r.direct ? 'O_DIRECT' : 'buffered'}, ${r.io_threads} threads): store ${row.store_gbps} GB/s (${row.ratio.store} of ${row.reference.store_gbps}), retrieve ${row.retrieve_gbps} GB/s (${row.ratio.retrieve} of ${row.reference.retrieve_gbps}), verified ${row.verified}\n`);
        if (r.rows.some((row) => !row.verified)) process.exitCode = 1;
      } else if (opts.tier === 'valkey') {
        const sizes = opts.sizes.split(',').map((v) => Math.round(Number(v) * (1 << 20)));
        if (sizes.some((n) => !Number.isSafeInteger(n) || n <= 0)) usage(`expected MiB sizes like 4,32 for --sizes, got ${opts.sizes}`);
        log(`valkey tier: ${opts.sizes} MiB chunks vs valkey-benchmark`);
        // The tier runs here as it runs in kvtierd: with the daemon's malloc settings.
        const native = await import('../../native/index.js').catch(() => null);
        if (native !== null && native.nativeAvailable()) native.tuneMalloc();
        const { runValkeyThroughput } = await import('../../bench/throughput-valkey.js');
        if (opts.tls === true && opts.url !== undefined) usage('--tls starts its own TLS Valkey: give it without --url');
        if (opts.cluster === true && (opts.url !== undefined || opts.tls === true)) usage('--cluster starts its own plain 3-master cluster: give it without --url or --tls');
        const rows = await runValkeyThroughput({ url: opts.url, sizes, tls: opts.tls === true, cluster: opts.cluster === true });
        if (opts.json === true) process.stdout.write(`${JSON.stringify(rows.length === 1 ? rows[0] : { bench: 'throughput', tier: 'valkey', rows })}\n`);
        else for (const r of rows) process.stdout.write(`${(r.chunk_bytes / (1 << 20)).toFixed(0)} MiB chunks, ${r.path}: store ${r.store_gbps} GB/s, retrieve ${r.retrieve_gbps} GB/s; best valkey-benchmark SET ${r.best_reference?.store_gbps ?? '-'} GET ${r.best_reference?.retrieve_gbps ?? '-'} GB/s\n`);
      }
    });
}
