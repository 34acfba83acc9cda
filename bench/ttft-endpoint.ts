/**
 * Endpoint mode of `kvtier bench ttft`: the long-document QA pattern against
 * any OpenAI-compatible server (vLLM, SGLang), measured, nothing modelled.
 *
 *   round cold          every document with question 1   (nothing cached)
 *   round warm          every document with question 2   (document cached)
 *   round warm_flushed  with --flush-url: POST it (e.g. vLLM's
 *                       /reset_prefix_cache), then question 3, so the
 *                       engine's own GPU prefix cache cannot serve it and
 *                       only an external cache such as kvtier can
 *
 * TTFT is the time from sending a streaming /v1/chat/completions request to
 * the first streamed chunk with content. Documents are synthesized words
 * (about one token each) behind a random nonce, so a run is never warm by
 * accident. Rows are medians over the documents of one context length.
 */
import { randomBytes } from 'node:crypto';
import type { TtftRow } from './ttft-types.js';

export interface EndpointOptions {
  endpoint: string;
  model: string;
  contexts: number[];
  docs: number;
  maxTokens: number;
  flushUrl: string | null;
  timeoutMs: number;
}

export interface EndpointResult {
  rows: TtftRow[];
  endpoint: string;
  pattern: string;
}

const WORDS = (
  'the of and to in is was for on that with as by at from his her it an were are which this be or has had not but also ' +
  'first new one two after time year city world state river music film team game party school war house church power ' +
  'north south west east water light line part group place high low small large long early late old young'
).split(' ');
const QUESTIONS = [
  'Summarize the document above in one sentence.',
  'Which word appears most often in the document above?',
  'What is the first line of the document above?',
];

/** About `tokens` tokens of text: a nonce line, then common one-token words. */
export function synthesizeDocument(tokens: number, seed: number): string {
  const words: string[] = [`Document ${seed} ${randomBytes(8).toString('hex')}.`];
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < tokens; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words.push(WORDS[x % WORDS.length]);
  }
  return words.join(' ');
}

export function chatUrl(endpoint: string): string {
  const base = endpoint.replace(/\/+$/, '');
  return `${/\/v1$/.test(base) ? base : `${base}/v1`}/chat/completions`;
}

/** Milliseconds to the first streamed content of one request; reads the stream to its end. */
export async function timeToFirstToken(url: string, model: string, prompt: string, maxTokens: number, timeoutMs: number): Promise<{ ttftMs: number; totalMs: number }> {
  const t0 = performance.now();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: prompt }], stream: true, max_tokens: maxTokens, temperature: 0 }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok || res.body === null) throw new Error(`${url} answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
  let first: number | null = null;
  let buffered = '';
  const decoder = new TextDecoder();
  for await (const part of res.body) {
    buffered += decoder.decode(part, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (first !== null || !line.startsWith('data:')) continue;
      const data = line.slice(5).trim();
      if (data === '[DONE]') continue;
      const ev = JSON.parse(data) as { choices?: Array<{ delta?: { content?: string }; text?: string }> };
      const c = ev.choices?.[0];
      if ((c?.delta?.content ?? c?.text ?? '') !== '') first = performance.now() - t0;
    }
  }
  if (first === null) throw new Error(`${url} streamed no content for model ${model}`);
  return { ttftMs: first, totalMs: performance.now() - t0 };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (v: number): number => Math.round(v * 10) / 10;

export async function runEndpointMode(opts: EndpointOptions, progress: (msg: string) => void): Promise<EndpointResult> {
  const url = chatUrl(opts.endpoint);
  const rows: TtftRow[] = [];
  for (const context of opts.contexts) {
    const docs = Array.from({ length: opts.docs }, (_, i) => synthesizeDocument(context, context + i));
    const rounds: Array<{ case: 'cold' | 'warm' | 'warm_flushed'; question: string }> = [
      { case: 'cold', question: QUESTIONS[0] },
      { case: 'warm', question: QUESTIONS[1] },
    ];
    if (opts.flushUrl !== null) rounds.push({ case: 'warm_flushed', question: QUESTIONS[2] });
    for (const r of rounds) {
      if (r.case === 'warm_flushed') {
        const f = await fetch(opts.flushUrl!, { method: 'POST', signal: AbortSignal.timeout(opts.timeoutMs) });
        if (!f.ok) throw new Error(`--flush-url ${opts.flushUrl} answered ${f.status}`);
      }
      const ttft: number[] = [];
      const total: number[] = [];
      for (const [i, doc] of docs.entries()) {
        progress(`endpoint ${context} tokens, ${r.case}: document ${i + 1}/${docs.length}`);
        const t = await timeToFirstToken(url, opts.model, `${doc}\n\n${r.question}`, opts.maxTokens, opts.timeoutMs);
        ttft.push(t.ttftMs);
        total.push(t.totalMs);
      }
      rows.push({
        model: opts.model, context_tokens: context, case: r.case, ttft_ms: round(median(ttft)),
        ttft_ms_each: ttft.map(round), total_ms_median: round(median(total)), documents: docs.length, compute: 'measured',
      });
    }
  }
  return {
    rows,
    endpoint: url,
    pattern: `long-document QA: ${opts.docs} documents per context length (synthesized words, ~1 token each, random nonce first), each asked ${opts.flushUrl === null ? 'twice' : 'three times (the third after POST --flush-url)'}; streaming, max_tokens ${opts.maxTokens}; TTFT = first streamed content; medians over documents`,
  };
}
