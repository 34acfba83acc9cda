/**
 * A small parser of the Prometheus text format for the metrics tests: HELP
 * and TYPE per metric family, and the value of a sample by name and labels
 * (a missing sample reads as 0, so deltas of fresh series work).
 */

export interface Scrape {
  help: Map<string, string>;
  type: Map<string, string>;
  value(name: string, labels?: Record<string, string>): number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Scrape {
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  const samples: Array<{ name: string; labels: Map<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('# HELP ')) {
      const [name, ...rest] = line.slice(7).split(' ');
      help.set(name, rest.join(' ').replace(/\\\\/g, '\\').replace(/\\n/g, '\n'));
    } else if (line.startsWith('# TYPE ')) {
      const [name, t] = line.slice(7).split(' ');
      type.set(name, t);
    } else if (line !== '' && !line.startsWith('#')) {
      const m = SAMPLE.exec(line);
      if (m === null) throw new Error(`unparsable sample line: ${line}`);
      const labels = new Map<string, string>();
      for (const l of (m[2] ?? '').matchAll(LABEL)) labels.set(l[1], l[2]);
      samples.push({ name: m[1], labels, value: Number(m[3]) });
    }
  }
  return {
    help,
    type,
    value: (name, want = {}) => {
      const hit = samples.find((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels.get(k) === v));
      return hit?.value ?? 0;
    },
  };
}
