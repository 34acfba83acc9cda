/**
 * The endpoint-mode client of `kvtier bench ttft` against a tiny fake
 * OpenAI-compatible streaming server on 127.0.0.1 started here. This tests
 * the client code (request shape, SSE parsing, TTFT at the first streamed
 * content, rounds, flush, medians), not an engine: the fake server sleeps a
 * fixed time before its first token, longer for prompts it has not seen.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chatUrl, runEndpointMode, synthesizeDocument, timeToFirstToken } from '../../bench/ttft-endpoint.js';

const COLD_MS = 120;
const WARM_MS = 20;

interface Seen {
  bodies: Array<{ model: string; stream: boolean; max_tokens: number; messages: Array<{ role: string; content: string }> }>;
  flushes: number;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let s = '';
    req.on('data', (d: Buffer) => (s += d.toString()));
    req.on('end', () => resolve(s));
  });
}

/** Streams a role-only chunk at once, then content after a delay: TTFT must wait for content. */
function fakeServer(seen: Seen): Server {
  const cached = new Set<string>();
  return createServer(async (req, res) => {
    if (req.method === 'POST' && req.url === '/reset_prefix_cache') {
      seen.flushes++;
      cached.clear();
      res.writeHead(200).end();
      return;
    }
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
      res.writeHead(404).end();
      return;
    }
    const body = JSON.parse(await readBody(req)) as Seen['bodies'][number];
    seen.bodies.push(body);
    const doc = body.messages[0].content.split('\n\n')[0];
    const delay = cached.has(doc) ? WARM_MS : COLD_MS;
    cached.add(doc);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const send = (delta: Record<string, string>): boolean => res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta }] })}\n\n`);
    send({ role: 'assistant' });
    setTimeout(() => {
      send({ content: 'The' });
      setTimeout(() => {
        send({ content: ' answer' });
        res.end('data: [DONE]\n\n');
      }, 30);
    }, delay);
  });
}

describe('bench ttft endpoint mode (client against a fake local server, not an engine)', () => {
  const seen: Seen = { bodies: [], flushes: 0 };
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = fakeServer(seen);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('builds the chat URL from a base or a /v1 URL', () => {
    expect(chatUrl('http://h:8000')).toBe('http://h:8000/v1/chat/completions');
    expect(chatUrl('http://h:8000/v1/')).toBe('http://h:8000/v1/chat/completions');
  });

  it('synthesizes documents of about the asked length, unique per call', () => {
    const a = synthesizeDocument(1000, 1);
    expect(a.split(' ').length).toBe(1000 + 3);
    expect(synthesizeDocument(1000, 1)).not.toBe(a);
  });

  it('measures TTFT at the first streamed content, not the role chunk', async () => {
    const t = await timeToFirstToken(`${base}/v1/chat/completions`, 'm', 'fresh prompt', 4, 5000);
    expect(t.ttftMs).toBeGreaterThanOrEqual(COLD_MS - 5);
    expect(t.totalMs).toBeGreaterThanOrEqual(t.ttftMs + 25);
  });

  it('runs the long-document QA rounds: cold, warm, warm after flush', async () => {
    seen.bodies.length = 0;
    const progress: string[] = [];
    const r = await runEndpointMode({ endpoint: base, model: 'fake-model', contexts: [512, 2048], docs: 3, maxTokens: 8, flushUrl: `${base}/reset_prefix_cache`, timeoutMs: 5000 }, (m) => progress.push(m));
    expect(r.rows.map((x) => [x.context_tokens, x.case])).toEqual([
      [512, 'cold'], [512, 'warm'], [512, 'warm_flushed'], [2048, 'cold'], [2048, 'warm'], [2048, 'warm_flushed'],
    ]);
    for (const row of r.rows) {
      expect(row.model).toBe('fake-model');
      expect((row.ttft_ms_each as number[]).length).toBe(3);
      if (row.case === 'warm') expect(row.ttft_ms).toBeLessThan(COLD_MS - 40);
      else expect(row.ttft_ms).toBeGreaterThanOrEqual(COLD_MS - 5);
    }
    expect(seen.flushes).toBe(2);
    expect(seen.bodies.length).toBe(18);
    expect(seen.bodies.every((b) => b.stream && b.model === 'fake-model' && b.max_tokens === 8)).toBe(true);
    // Each document is asked with a different question every round.
    const firstDoc = seen.bodies.filter((b) => b.messages[0].content.startsWith(seen.bodies[0].messages[0].content.split('\n\n')[0]));
    expect(new Set(firstDoc.map((b) => b.messages[0].content.split('\n\n')[1])).size).toBe(3);
    expect(progress.length).toBe(18);
  });

  it('fails with the status when the server refuses', async () => {
    await expect(timeToFirstToken(`${base}/v1/nope`, 'm', 'x', 4, 5000)).rejects.toThrow(/answered 404/);
  });
});
