// Generates the static protobuf module and its TypeScript declarations from
// proto/kvtier.proto (the single source of truth). Run by `npm run build`.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'src/protocol/gen');
mkdirSync(outDir, { recursive: true });
const bin = (name) => join(root, 'node_modules/protobufjs-cli/bin', name);
const js = join(outDir, 'kvtier.js');

execFileSync(process.execPath, [
  bin('pbjs'), '-t', 'static-module', '-w', 'es6', '--force-number', '--no-beautify',
  '--no-delimited', '--no-verify', '--no-convert', '--no-service',
  '-o', js, join(root, 'proto/kvtier.proto'),
], { stdio: 'inherit' });
// protobufjs/minimal is CommonJS without an ESM entry: import its module.exports
// as the default export, by its file name.
writeFileSync(js, readFileSync(js, 'utf8').replace(/import \* as \$protobuf from "protobufjs\/minimal";|import \$protobuf from "protobufjs\/minimal";/, 'import $protobuf from "protobufjs/minimal.js";'));
execFileSync(process.execPath, [bin('pbts'), '-o', join(outDir, 'kvtier.d.ts'), js], { stdio: 'inherit' });
