#!/usr/bin/env node
/**
 * `kvtier` command line: start, stats, doctor, bench.
 *
 * Exit codes: 0 ok, 1 failure, 2 bad configuration (ConfigError, DiskLockedError) or usage
 * (commander's own errors and UsageError). Logs go to stderr as JSON lines;
 * command output (tables, --json) to stdout.
 */
import { Command, CommanderError } from 'commander';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { ConfigError, DiskLockedError, UsageError, errorMessage } from '../errors.js';
import { createLogger } from '../log.js';
import { startDaemon, VERSION } from '../daemon.js';
import { runStats } from './stats.js';
import { runDoctor } from './doctor.js';
import { registerBench } from './bench.js';

function configFrom(opts: { config?: string; socket?: string; logLevel?: string }): LoadedConfig {
  return loadConfig({ file: opts.config ?? null, overrides: { socket_path: opts.socket, log_level: opts.logLevel } });
}

export function buildProgram(): Command {
  const program = new Command('kvtier')
    .description('KV-cache tier manager for LLM inference (host RAM + Valkey)')
    .version(VERSION)
    .exitOverride();

  program
    .command('start')
    .description('run the daemon in the foreground')
    .option('-c, --config <file>', 'YAML config (LMCache-compatible keys); default $KVTIER_CONFIG_FILE or $LMCACHE_CONFIG_FILE')
    .option('-s, --socket <path>', 'Unix socket path (overrides socket_path)')
    .option('--log-level <level>', 'debug, info, warn or error')
    .action(async (opts: { config?: string; socket?: string; logLevel?: string }) => {
      const loaded = configFrom(opts);
      const log = createLogger(loaded.config.logLevel, { svc: 'kvtierd' });
      for (const w of loaded.warnings) log.warn(w);
      // Signal handlers go in before the daemon starts: a SIGTERM that arrives
      // while it starts must still close and unlink the socket.
      let signalled: (signal: string) => void = () => {};
      const stopSignal = new Promise<string>((resolve) => {
        signalled = resolve;
      });
      const onInt = (): void => signalled('SIGINT');
      const onTerm = (): void => signalled('SIGTERM');
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
      try {
        const daemon = await startDaemon({ config: loaded.config, logger: log });
        const signal = await stopSignal;
        log.info('shutting down: finishing in-flight requests', { signal });
        await daemon.close().catch((e: unknown) => log.error('shutdown failed', { error: errorMessage(e) }));
      } finally {
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
      }
      log.info('stopped');
    });

  program
    .command('stats')
    .description("show a running daemon's figures")
    .option('-c, --config <file>', 'config to find the socket in')
    .option('-s, --socket <path>', 'Unix socket path')
    .option('--json', 'print the raw JSON object')
    .action(async (opts: { config?: string; socket?: string; json?: boolean }) => {
      process.exitCode = await runStats(configFrom(opts).config.socketPath, opts.json === true);
    });

  program
    .command('doctor')
    .description('check the socket, the native addon and pinned memory, CUDA and Valkey')
    .option('-c, --config <file>', 'config to check')
    .option('-s, --socket <path>', 'Unix socket path')
    .action(async (opts: { config?: string; socket?: string }) => {
      const loaded = configFrom(opts);
      process.exitCode = await runDoctor(loaded);
    });

  registerBench(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof UsageError) {
      process.stderr.write(`kvtier: ${e.message}\n`);
      return 2;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`kvtier: configuration error: ${e.message}\n`);
      return 2;
    }
    if (e instanceof DiskLockedError) {
      process.stderr.write(`kvtier: ${e.code}: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`kvtier: ${errorMessage(e)}\n`);
    return 1;
  }
}

main(process.argv).then((code) => {
  process.exitCode = code;
});
