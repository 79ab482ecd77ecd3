/** Time-series charts: uPlot, fed with the points of metrics.API/Query. */
import uPlot from "uplot";
import { h } from "./dom.js";
import { formatBytes, formatNumber, formatPercent, formatRate } from "./format.js";

export type Unit = "percent" | "bytes" | "bytes/s" | "number" | "seconds" | "celsius";

/** One line: a label and its points (times in ms). */
export interface Line {
  label: string;
  points: { t: number; v: number }[];
  /** A dash pattern (canvas lengths in px), to tell lines apart by more than colour. */
  dash?: number[];
  /** Diameter of the points uPlot draws where they are sparse (5 px). */
  pointSize?: number;
}

const palette = ["#2f7ef5", "#e8590c", "#2b8a3e", "#ae3ec9", "#f08c00", "#0c8599", "#c92a2a", "#5c940d", "#364fc7", "#862e9c", "#d6336c", "#495057"];

/** Axis steps for bytes: 1, 2, 5, 10, … of B, KiB, MiB, … so that ticks read 8 GiB, not 9.3 GiB. */
const binaryIncrements = [0, 1, 2, 3, 4, 5].flatMap((power) => [1, 2, 5, 10, 20, 50, 100, 200, 500].map((m) => m * 1024 ** power));

export const formatValue: Record<Unit, (v: number) => string> = {
  percent: (v) => formatPercent(v),
  bytes: formatBytes,
  "bytes/s": formatRate,
  number: formatNumber,
  seconds: (v) => `${formatNumber(v)} s`,
  celsius: (v) => `${formatNumber(v)} °C`,
};

/** The axes' font (uPlot's default), set explicitly so that labels can be measured. */
const axisFont = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif';
let measure: CanvasRenderingContext2D | null | undefined;

/** Room for the y axis: its widest label plus the ticks and gap, so that no label is cut. */
function axisWidth(values: string[] | undefined): number {
  measure ??= document.createElement("canvas").getContext("2d");
  if (!measure) return 70;
  measure.font = axisFont;
  const widest = Math.max(0, ...(values ?? []).map((v) => measure!.measureText(v).width));
  return Math.ceil(widest) + 10 + 5 + 6; // tick length, gap, margin
}

/** The last non-null value of a column. */
function latest(column: uPlot.AlignedData[number] | undefined): number | null {
  for (let i = (column?.length ?? 0) - 1; i >= 0; i--) if (column![i] != null) return column![i] as number;
  return null;
}

/** Lines on a shared time axis: every distinct time, each line null where it has no point. */
export function align(lines: Line[]): uPlot.AlignedData {
  const times = [...new Set(lines.flatMap((l) => l.points.map((p) => p.t)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = lines.map((line) => {
    const column: (number | null)[] = new Array<number | null>(times.length).fill(null);
    for (const p of line.points) column[index.get(p.t)!] = p.v;
    return column;
  });
  return [times.map((t) => t / 1000), ...columns];
}

/**
 * A titled chart that keeps its size with its container. `update` redraws with new lines; the
 * element's data-points attribute says how many points are drawn (for people and tests alike).
 */
export class TimeChart {
  readonly element: HTMLElement;
  private readonly plotArea: HTMLElement;
  private readonly empty: HTMLElement;
  private plot: uPlot | undefined;
  private labels = "";
  private range: [number, number] = [0, 1];
  private limit: number | undefined;
  private readonly limitText: HTMLElement;
  private readonly resize: ResizeObserver;

  constructor(
    readonly title: string,
    readonly unit: Unit,
    private readonly height = 180,
    /** Draw each value until the next (a gauge holds its value), rather than a line between points. */
    private readonly stepped = false,
  ) {
    this.plotArea = h("div", { class: "plot" });
    this.empty = h("div", { class: "empty" }, "Waiting for data…");
    this.limitText = h("span", { class: "limit" });
    this.element = h(
      "section",
      { class: "chart", "data-title": title, "data-points": 0 },
      h("h3", {}, title, this.limitText),
      this.plotArea,
      this.empty,
    );
    this.resize = new ResizeObserver(() => this.plot?.setSize(this.size()));
    this.resize.observe(this.plotArea);
  }

  update(lines: Line[], startMs: number, endMs: number): void {
    this.range = [startMs / 1000, endMs / 1000];
    const shown = lines.filter((l) => l.points.length > 0);
    const points = shown.reduce((n, l) => n + l.points.length, 0);
    this.element.dataset.points = String(points);
    this.empty.hidden = points > 0;
    const labels = shown.map((l) => l.label).join("\u0000");
    const data = align(shown);
    if (this.plot && labels === this.labels) {
      this.plot.setData(data);
    } else {
      // A different set of lines: a new plot (uPlot's series are fixed at creation).
      this.plot?.destroy();
      this.labels = labels;
      this.plot = new uPlot(this.options(shown), data, this.plotArea);
    }
    // The legend's latest values, unless the cursor is on a point.
    if (this.plot.cursor.idx == null) this.plot.setLegend({ idxs: data.map(() => null) });
  }

  /**
   * A ceiling the lines cannot pass (a host's memory): named in the title and drawn as a dashed
   * line when the lines come near it, instead of a line that squeezes the others to the bottom.
   */
  setLimit(value: number | undefined, label: string): void {
    this.limit = value !== undefined && value > 0 ? value : undefined;
    this.limitText.textContent = this.limit === undefined ? "" : ` · ${label} ${formatValue[this.unit](this.limit)}`;
    this.element.dataset.limit = this.limit === undefined ? "" : String(this.limit);
  }

  /** What the chart says while it has no points (it waits for data until told otherwise). */
  setEmpty(text: string): void {
    this.empty.textContent = text;
    // Not a wait but an answer: shown in place of an empty plot.
    this.element.classList.add("unavailable");
  }

  destroy(): void {
    this.resize.disconnect();
    this.plot?.destroy();
  }

  private size(): { width: number; height: number } {
    return { width: Math.max(200, this.plotArea.clientWidth), height: this.height };
  }

  private options(lines: Line[]): uPlot.Options {
    const format = formatValue[this.unit];
    return {
      ...this.size(),
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      scales: {
        x: { time: true, range: () => this.range },
        y: {
          range: (_u, min, max) => {
            if (this.unit === "percent") return [0, Math.max(1, max)];
            const top = max > 0 ? max * 1.1 : 1;
            return [Math.min(0, min), this.limit === undefined ? top : Math.min(top, this.limit)];
          },
        },
      },
      axes: [
        { font: axisFont },
        {
          font: axisFont,
          size: (_u, values) => axisWidth(values),
          values: (_u, splits) => splits.map(format),
          ...(this.unit.startsWith("bytes") ? { incrs: binaryIncrements } : {}),
        },
      ],
      hooks: { draw: [(u) => this.drawLimit(u)] },
      series: [
        // Without the cursor on the chart, the legend shows each line's latest value.
        {
          value: (_u, v, _s, idx) => (idx == null ? "latest" : v == null ? "–" : new Date(v * 1000).toLocaleTimeString(undefined, { hour12: false })),
        },
        ...lines.map((line, i) => ({
          label: line.label,
          stroke: palette[i % palette.length]!,
          width: 1.5,
          spanGaps: true,
          ...(line.dash ? { dash: line.dash } : {}),
          ...(this.stepped ? { paths: uPlot.paths.stepped!({ align: 1 }) } : {}),
          // uPlot shows the points themselves only where they are sparse, e.g. a new host's first minutes.
          points: { size: line.pointSize ?? 5 },
          value: (u: uPlot, v: number | null, seriesIdx: number, idx: number | null) => {
            const shown = idx == null ? latest(u.data[seriesIdx]) : v;
            return shown == null ? "–" : format(shown);
          },
        })),
      ],
    };
  }

  /** The limit as a dashed line, when it is within the drawn range. */
  private drawLimit(u: uPlot): void {
    if (this.limit === undefined) return;
    const max = u.scales.y?.max;
    if (max === undefined || this.limit > max) return;
    const y = Math.round(u.valToPos(this.limit, "y", true));
    const { ctx } = u;
    ctx.save();
    ctx.strokeStyle = "#868e96";
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 1 * devicePixelRatio;
    ctx.beginPath();
    ctx.moveTo(u.bbox.left, y);
    ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke();
    ctx.restore();
  }
}
