import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Suites start real daemons and valkey-servers on loopback ports; two
    // cores do not gain from more workers than this.
    maxWorkers: 2,
    pool: 'forks',
  },
});
