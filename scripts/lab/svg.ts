// Pure SVG line chart for storm timelines (pps over time, with event markers). No deps: the
// demo writes the string to a file that any browser opens.

export interface ChartSeries {
  name: string;
  tMs: readonly number[];
  pps: readonly number[];
}

export interface ChartMarker {
  tMs: number;
  label: string;
}

export interface ChartSpec {
  title: string;
  series: readonly ChartSeries[];
  markers?: readonly ChartMarker[];
  width?: number;
  height?: number;
  /** Log y axis: a storm (1e5 pps) and its leftovers (1e1) on one chart. Values <= 0 sit on the floor. */
  yLog?: boolean;
  xLabel?: string;
  yLabel?: string;
}

const PALETTE = ['#d62728', '#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const M = { left: 72, right: 16, top: 36, bottom: 46 };

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string);
}

/** Compact tick label: 1500 -> 1.5k, 2000000 -> 2M. */
export function fmtNum(v: number): string {
  const a = Math.abs(v);
  const trim = (x: number): string => String(Number(x.toPrecision(3)));
  if (a >= 1e6) return `${trim(v / 1e6)}M`;
  if (a >= 1e3) return `${trim(v / 1e3)}k`;
  return trim(v);
}

/** Ticks at 1, 2 or 5 times a power of ten, about `count` of them, covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p) as number;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function finitePairs(s: ChartSeries): Array<[number, number]> {
  const n = Math.min(s.tMs.length, s.pps.length);
  const out: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) {
    const x = s.tMs[i] as number;
    const y = s.pps[i] as number;
    if (Number.isFinite(x) && Number.isFinite(y)) out.push([x, y]);
  }
  // Sorted by time so each line reads left to right whatever order the caller used.
  return out.sort((a, b) => a[0] - b[0]);
}

export function chartSvg(spec: ChartSpec): string {
  const width = spec.width ?? 800;
  const height = spec.height ?? 360;
  const markers = (spec.markers ?? []).filter((m) => Number.isFinite(m.tMs));
  const data = spec.series.map(finitePairs);
  const xs = [...data.flat().map((p) => p[0]), ...markers.map((m) => m.tMs)];
  const ys = data.flat().map((p) => p[1]);
  const x0 = xs.length ? Math.min(...xs) : 0;
  let x1 = xs.length ? Math.max(...xs) : 1;
  if (x1 <= x0) x1 = x0 + 1;
  const pw = width - M.left - M.right;
  const ph = height - M.top - M.bottom;

  let yTicks: number[];
  let yOf: (v: number) => number;
  if (spec.yLog) {
    const pos = ys.filter((v) => v > 0);
    const lo = 10 ** Math.floor(Math.log10(pos.length ? Math.min(...pos) : 1));
    const hi = Math.max(10 ** Math.ceil(Math.log10(pos.length ? Math.max(...pos) : 10)), lo * 10);
    yTicks = [];
    for (let v = lo; v <= hi * 1.0001; v *= 10) yTicks.push(v);
    const l0 = Math.log10(lo);
    const l1 = Math.log10(hi);
    yOf = (v) => M.top + ph - ((Math.log10(Math.max(v, lo)) - l0) / (l1 - l0)) * ph;
  } else {
    const max = ys.length ? Math.max(...ys, 0) : 1;
    const min = ys.length ? Math.min(...ys, 0) : 0;
    yTicks = niceTicks(min, max > min ? max : min + 1);
    // Extend the axis to the tick above the peak so the top of a storm is not cut by the frame.
    const top = yTicks[yTicks.length - 1] as number;
    if (top < max && yTicks.length > 1) yTicks.push(Number((top + top - (yTicks[yTicks.length - 2] as number)).toPrecision(12)));
    const lo = Math.min(min, yTicks[0] as number);
    const hi = Math.max(max, yTicks[yTicks.length - 1] as number);
    yOf = (v) => M.top + ph - ((v - lo) / (hi - lo || 1)) * ph;
  }
  const xTicks = niceTicks(x0, x1);
  const xOf = (v: number): number => M.left + ((v - x0) / (x1 - x0)) * pw;
  const f = (v: number): string => v.toFixed(1);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text class="title" x="${f(width / 2)}" y="20" text-anchor="middle" font-size="14">${escapeXml(spec.title)}</text>`,
  );
  out.push('<g class="grid" stroke="#e5e5e5">');
  for (const t of yTicks) out.push(`<line x1="${M.left}" y1="${f(yOf(t))}" x2="${M.left + pw}" y2="${f(yOf(t))}"/>`);
  out.push('</g>');
  out.push('<g class="axis" stroke="#333333">');
  out.push(`<line x1="${M.left}" y1="${M.top + ph}" x2="${M.left + pw}" y2="${M.top + ph}"/>`);
  out.push(`<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + ph}"/>`);
  out.push('</g>');
  out.push('<g class="ticks" fill="#333333">');
  for (const t of yTicks) {
    out.push(`<text x="${M.left - 6}" y="${f(yOf(t) + 4)}" text-anchor="end">${escapeXml(fmtNum(t))}</text>`);
  }
  for (const t of xTicks) {
    if (t > x1) continue;
    out.push(`<text x="${f(xOf(t))}" y="${M.top + ph + 16}" text-anchor="middle">${escapeXml(fmtNum(t))}</text>`);
  }
  out.push('</g>');
  out.push(
    `<text class="xlabel" x="${f(M.left + pw / 2)}" y="${height - 8}" text-anchor="middle">${escapeXml(spec.xLabel ?? 'time (ms)')}</text>`,
    `<text class="ylabel" x="14" y="${f(M.top + ph / 2)}" text-anchor="middle" transform="rotate(-90 14 ${f(M.top + ph / 2)})">${escapeXml(
      (spec.yLabel ?? 'packets/s') + (spec.yLog ? ' (log)' : ''),
    )}</text>`,
  );
  data.forEach((pts, i) => {
    if (pts.length === 0) return;
    const color = PALETTE[i % PALETTE.length] as string;
    const points = pts.map(([x, y]) => `${f(xOf(x))},${f(yOf(y))}`).join(' ');
    out.push(`<polyline class="series" data-name="${escapeXml(spec.series[i]?.name ?? '')}" fill="none" stroke="${color}" stroke-width="1.5" points="${points}"/>`);
  });
  for (const m of markers) {
    const x = f(xOf(m.tMs));
    out.push(
      `<g class="marker"><line x1="${x}" y1="${M.top}" x2="${x}" y2="${M.top + ph}" stroke="#000000" stroke-dasharray="4 3"/>` +
        `<text x="${x}" y="${M.top - 4}" text-anchor="middle">${escapeXml(m.label)}</text></g>`,
    );
  }
  out.push('<g class="legend">');
  // Wide enough for the longest name (~6.5 px a character at the default font size).
  const legendW = 30 + 6.5 * Math.max(0, ...spec.series.map((s) => s.name.length));
  spec.series.forEach((s, i) => {
    const y = M.top + 8 + i * 15;
    const x = M.left + Math.max(0, pw - legendW);
    const color = PALETTE[i % PALETTE.length] as string;
    out.push(
      `<line x1="${x}" y1="${y}" x2="${x + 18}" y2="${y}" stroke="${color}" stroke-width="3"/>`,
      `<text x="${x + 24}" y="${y + 4}">${escapeXml(s.name)}</text>`,
    );
  });
  out.push('</g>', '</svg>');
  return `${out.join('\n')}\n`;
}
