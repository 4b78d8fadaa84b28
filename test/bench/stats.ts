// Medians, percentiles and the rows the benchmark prints. Timings here are
// reported, never asserted: on a shared machine they drift, ratios less so.

export interface Row {
  section: string;
  label: string;
  median: number;
  p95: number;
  n: number;
  note?: string;
}

export function quantile(samples: readonly number[], q: number): number {
  const s = [...samples].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

export const median = (samples: readonly number[]): number => quantile(samples, 0.5);

export function row(section: string, label: string, samples: readonly number[], note?: string): Row {
  return { section, label, median: median(samples), p95: quantile(samples, 0.95), n: samples.length, ...(note ? { note } : {}) };
}

/** Per-round sums of paired samples (prepare + release of the same round). */
export const sums = (a: readonly number[], b: readonly number[]): number[] => a.map((x, i) => x + (b[i] ?? NaN));

export const ms = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '-');

export function table(rows: readonly Row[]): string {
  const lines = ['| section | measurement | median ms | p95 ms | n | note |', '|---|---|---:|---:|---:|---|'];
  for (const r of rows) lines.push(`| ${r.section} | ${r.label} | ${ms(r.median)} | ${ms(r.p95)} | ${r.n} | ${r.note ?? ''} |`);
  return lines.join('\n');
}
