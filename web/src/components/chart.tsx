import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

export interface ChartSeries {
  label: string;
  values: Array<number | null>;
  /** Line dash (canvas units): each series of a chart has its own, so the lines differ without colour. */
  dash: number[];
  color: string;
}

/** Reads a CSS custom property of the page (the charts follow the light or dark palette). */
const cssVar = (name: string, fallback: string) => getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;

/**
 * A uPlot time series chart sized to its container (it follows the container's width). The
 * legend uPlot draws shows each series' name and its value under the cursor.
 */
export function TimeChart({ title, unit, x, series, id }: { title: string; unit: string; x: number[]; series: ChartSeries[]; id: string }) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = (): uPlot.AlignedData => [x, ...series.map((s) => s.values)] as uPlot.AlignedData;

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const fg = cssVar('--muted', '#555');
    const grid = cssVar('--grid', '#ddd');
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: 150,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [{ ...axis }, { ...axis, size: 56, values: (_u, v) => v.map((n) => `${+n.toPrecision(3)}`) }],
      series: [{}, ...series.map((s) => ({ label: `${s.label} (${unit})`, stroke: s.color, width: 2, dash: s.dash, spanGaps: false, points: { show: false } }))],
    };
    const u = new uPlot(opts, data(), el);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height: 150 }));
    ro.observe(el);
    return () => { ro.disconnect(); u.destroy(); plot.current = null; };
  }, []);

  useEffect(() => { plot.current?.setData(data()); }, [x, series]);

  return (
    <figure class="chart" aria-labelledby={`${id}-title`}>
      <figcaption id={`${id}-title`}>{title}</figcaption>
      <div ref={host} class="chart-host" aria-hidden="true" />
    </figure>
  );
}
