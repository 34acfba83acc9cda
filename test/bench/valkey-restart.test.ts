/**
 * The restart bench as a fault test: a real valkey-server is SIGKILLed while
 * a tier writes and reads 4 MiB chunks, and restarted empty on the same
 * port. Stores resume by themselves and no read ever returns bytes other
 * than those stored. (How fast is the bench's business, not this test's.)
 */
import { afterAll, describe, expect, it } from 'vitest';
import { runValkeyRestart } from '../../bench/valkey-restart.js';
import { stopAllValkey } from '../../bench/valkey-server.js';

afterAll(() => stopAllValkey());

describe('bench valkey-restart', () => {
  it('recovers in both cases and never serves wrong bytes', async () => {
    const r = await runValkeyRestart(300);
    expect(r.cases.map((c) => c.case)).toEqual(['busy', 'idle']);
    for (const c of r.cases) {
      expect(c.wrong_bytes).toBe(0);
      expect(c.first_store_after_restart_ms).not.toBeNull();
      expect(c.hits).toBeGreaterThan(0);
      expect(c.puts_ok).toBeGreaterThan(0);
    }
  }, 90_000);
});
