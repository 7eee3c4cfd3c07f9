import { describe, expect, it } from 'vitest';
import { chartSvg, escapeXml, fmtNum, niceTicks } from '../../scripts/lab/svg.js';

/**
 * Minimal XML well-formedness check: balanced tags, quoted attributes without raw '<' or '&',
 * only the five predefined entities (or numeric ones) in text. Enough for SVG we generate.
 */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  const token = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>|<|>/g;
  let last = 0;
  let roots = 0;
  const checkText = (text: string): void => {
    const bad = text.replace(/&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, '');
    if (bad.includes('&')) throw new Error(`raw & in text: ${text}`);
  };
  for (let m = token.exec(xml); m; m = token.exec(xml)) {
    checkText(xml.slice(last, m.index));
    last = token.lastIndex;
    if (m[0] === '<' || m[0] === '>') throw new Error(`stray ${m[0]} at ${m.index}: ${xml.slice(m.index - 20, m.index + 20)}`);
    const [, close, name, attrs, selfClose] = m as unknown as [string, string, string, string, string];
    checkText(attrs);
    const names = [...attrs.matchAll(/([\w:.-]+)=/g)].map((a) => a[1]);
    if (new Set(names).size !== names.length) throw new Error(`duplicate attribute in <${name}>`);
    if (close) {
      if (stack.pop() !== name) throw new Error(`mismatched </${name}>`);
    } else if (!selfClose) {
      if (stack.length === 0) roots++;
      stack.push(name);
    } else if (stack.length === 0) roots++;
  }
  checkText(xml.slice(last));
  if (stack.length) throw new Error(`unclosed: ${stack.join(',')}`);
  if (roots !== 1) throw new Error(`expected one root element, got ${roots}`);
}

function xsOfPolyline(svg: string): number[][] {
  return [...svg.matchAll(/<polyline[^>]*points="([^"]*)"/g)].map((m) =>
    (m[1] as string).split(' ').map((p) => Number(p.split(',')[0])),
  );
}

const storm = {
  name: 'prod eth0 <rx>',
  tMs: [0, 10, 20, 30, 40, 50],
  pps: [0, 120_000, 130_000, 125_000, 10, 0],
};

describe('chartSvg', () => {
  it('is well-formed XML with title, axes labels, legend and one line per marker', () => {
    const svg = chartSvg({
      title: 'Loop storm: stormbreaker vs storm-control & co',
      series: [storm, { name: 'up1', tMs: [0, 25, 50], pps: [5, 6, 7] }],
      markers: [
        { tMs: 5, label: 'inject' },
        { tMs: 35, label: 'break <up2>' },
      ],
      width: 640,
      height: 300,
    });
    assertWellFormed(svg);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('storm-control &amp; co');
    expect(svg).toContain('break &lt;up2&gt;');
    expect(svg).toContain('prod eth0 &lt;rx&gt;');
    expect(svg).toContain('time (ms)');
    expect(svg).toContain('packets/s');
    expect(svg.match(/<g class="marker">/g)?.length).toBe(2);
    expect(svg.match(/<polyline /g)?.length).toBe(2);
    // the linear axis reaches above the 130k peak
    expect(svg).toContain('>150k</text>');
  });

  it('puts markers at increasing x for increasing times and inside the plot', () => {
    const svg = chartSvg({ title: 't', series: [storm], markers: [{ tMs: 5, label: 'a' }, { tMs: 35, label: 'b' }] });
    const mx = [...svg.matchAll(/<g class="marker"><line x1="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(mx).toHaveLength(2);
    expect(mx[0]).toBeLessThan(mx[1] as number);
    for (const x of mx) expect(x).toBeGreaterThan(0);
    for (const x of mx) expect(x).toBeLessThan(800);
  });

  it('draws x monotone even when the input is unsorted, skipping non-finite points', () => {
    const svg = chartSvg({
      title: 'unsorted',
      series: [{ name: 's', tMs: [30, 10, 20, NaN, 0], pps: [3, 1, 2, 9, Infinity] }],
    });
    assertWellFormed(svg);
    const [xs] = xsOfPolyline(svg);
    expect(xs).toHaveLength(3);
    for (let i = 1; i < (xs as number[]).length; i++) expect((xs as number[])[i]).toBeGreaterThan((xs as number[])[i - 1] as number);
  });

  it('log axis has decade ticks and keeps zeros on the floor', () => {
    const svg = chartSvg({ title: 'log', series: [storm], yLog: true, height: 300 });
    assertWellFormed(svg);
    for (const label of ['10', '100', '1k', '10k', '100k', '1M']) expect(svg).toContain(`>${label}</text>`);
    expect(svg).toContain('packets/s (log)');
    const ys = [...(svg.match(/<polyline[^>]*points="([^"]*)"/)?.[1] ?? '').split(' ')].map((p) => Number(p.split(',')[1]));
    // zero and 10 pps both sit at the bottom of the plot; 130k is highest (smallest y)
    expect(ys[0]).toBe(ys[4]);
    expect(Math.min(...ys)).toBe(ys[2]);
  });

  it('survives empty input', () => {
    const svg = chartSvg({ title: 'empty', series: [] });
    assertWellFormed(svg);
    expect(svg).not.toContain('NaN');
  });

  it('never emits NaN coordinates for flat series', () => {
    const svg = chartSvg({ title: 'flat', series: [{ name: 'z', tMs: [5, 5], pps: [0, 0] }], markers: [{ tMs: 5, label: 'm' }] });
    assertWellFormed(svg);
    expect(svg).not.toContain('NaN');
  });
});

describe('the well-formedness check itself', () => {
  it('rejects broken XML', () => {
    expect(() => assertWellFormed('<svg><g></svg>')).toThrow();
    expect(() => assertWellFormed('<svg><text>a & b</text></svg>')).toThrow();
    expect(() => assertWellFormed('<svg a="1" a="2"/>')).toThrow();
    expect(() => assertWellFormed('<svg/><svg/>')).toThrow();
    expect(() => assertWellFormed('<svg><text>1 < 2</text></svg>')).toThrow();
    expect(() => assertWellFormed('<svg><g class="x"><text>a &amp; b</text></g></svg>')).not.toThrow();
  });
});

describe('svg helpers', () => {
  it('escapes, formats and ticks', () => {
    expect(escapeXml(`<a b="c" & 'd'>`)).toBe('&lt;a b=&quot;c&quot; &amp; &apos;d&apos;&gt;');
    expect(fmtNum(1500)).toBe('1.5k');
    expect(fmtNum(2_000_000)).toBe('2M');
    expect(fmtNum(12)).toBe('12');
    expect(niceTicks(0, 130_000)).toEqual([0, 50_000, 100_000]);
    expect(niceTicks(0, 1000, 5)).toEqual([0, 200, 400, 600, 800, 1000]);
  });
});
