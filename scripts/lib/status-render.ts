/**
 * The fleet view's three outputs: the terminal table (colored only on a terminal without NO_COLOR), the
 * `--json` report (StatusReport as it is) and the `--html` page: one self-contained file, inline CSS and
 * inline SVG, no script and no external asset; every value escaped.
 */
import { type Cell, type CellState, type LagPoint, STATUS_COLUMNS, type StatusReport, type StatusRow } from "./status.ts";

const ANSI: Record<CellState, string> = { ok: "\u001b[32m", warn: "\u001b[33m", critical: "\u001b[31m", none: "" };
const RESET = "\u001b[0m";

/** Whether to color: a terminal, and NO_COLOR unset or empty (no-color.org). */
export const useColor = (stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean => Boolean(stream.isTTY) && !env.NO_COLOR;

/** Marks for a table without color, so the state still reads. */
const MARK: Record<CellState, string> = { ok: "", warn: "!", critical: "✗", none: "" };

/** A server's text as the terminal shows it: control characters (an escape sequence) as "?", never obeyed. */
const shown = (text: string) => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");

/** The table and, under it, what each warn or red cell means. */
export function formatTable(report: StatusReport, color: boolean): string {
  const heads = ["environment", ...STATUS_COLUMNS.map(([, head]) => head)];
  const cellText = (c: Cell) => (color || !MARK[c.state] ? shown(c.text) : `${MARK[c.state]} ${shown(c.text)}`);
  const rows = report.environments.map((r) => [{ state: r.state, text: r.stack } as Cell, ...STATUS_COLUMNS.map(([name]) => r.cells[name])]);
  const widths = heads.map((h, i) => Math.max(h.length, ...rows.map((cells) => [...cellText(cells[i])].length)));
  const pad = (text: string, i: number) => text + " ".repeat(widths[i] - [...text].length);
  const paint = (c: Cell, i: number) => (color && ANSI[c.state] ? `${ANSI[c.state]}${pad(cellText(c), i)}${RESET}` : pad(cellText(c), i));
  const lines = [heads.map(pad).join("  ").trimEnd(), ...rows.map((cells) => cells.map(paint).join("  ").trimEnd())];
  const notes = report.environments.flatMap((r) =>
    STATUS_COLUMNS.filter(([name]) => r.cells[name].detail && (r.cells[name].state === "warn" || r.cells[name].state === "critical")).map(([name, head]) => {
      const c = r.cells[name];
      const line = `${r.stack} ${head}: ${shown(c.detail!)}`;
      return color ? `${ANSI[c.state]}${MARK[c.state]}${RESET} ${line}` : `${MARK[c.state]} ${line}`;
    }),
  );
  const red = report.environments.filter((r) => r.state === "critical").length;
  const summary = red ? `${red} of ${report.environments.length} environment${report.environments.length === 1 ? "" : "s"} red` : `all ${report.environments.length} environment${report.environments.length === 1 ? "" : "s"} without red`;
  return [...lines, ...(notes.length ? ["", ...notes] : []), "", summary].join("\n");
}

/** HTML text: &, <, >, " and ' escaped (values go into text and attributes). */
export const escapeHtml = (value: string): string =>
  value.replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]!);

/** Marks a page as this command's (status.ts overwrites only such a file). */
export const HTML_GENERATOR = '<meta name="generator" content="agency-kit scripts/status.ts">';

const CHART = { width: 240, height: 48, pad: 3 };

/**
 * The replication lag over the day before `end` (Unix s): one circle per watcher run that measured it, red
 * where that run was critical, and a red tick at the bottom for a run that measured none.
 */
export function lagChart(points: readonly LagPoint[], end: number): string {
  const { width, height, pad } = CHART;
  const start = end - 86_400;
  const lags = points.map((p) => p.replicationLagSeconds).filter((v): v is number => v !== null);
  const top = Math.max(10, ...lags);
  const x = (p: LagPoint) => (pad + ((Date.parse(p.checkedAt) / 1000 - start) / 86_400) * (width - 2 * pad)).toFixed(1);
  const y = (lag: number) => (height - pad - (lag / top) * (height - 2 * pad)).toFixed(1);
  const measured = points.filter((p) => p.replicationLagSeconds !== null);
  const line = measured.length > 1 ? `<polyline class="lag" points="${measured.map((p) => `${x(p)},${y(p.replicationLagSeconds!)}`).join(" ")}"/>` : "";
  const dots = measured.map((p) => `<circle class="point ${p.state}" cx="${x(p)}" cy="${y(p.replicationLagSeconds!)}" r="2"><title>${escapeHtml(`${p.checkedAt}: ${p.replicationLagSeconds} s`)}</title></circle>`);
  const gaps = points.filter((p) => p.replicationLagSeconds === null).map((p) => `<line class="gap" x1="${x(p)}" x2="${x(p)}" y1="${height - pad}" y2="${height - pad - 8}"><title>${escapeHtml(`${p.checkedAt}: not measured (${p.state})`)}</title></line>`);
  return (
    `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="replication lag, last 24 h, up to ${top} s">` +
    `<rect class="frame" x="0.5" y="0.5" width="${width - 1}" height="${height - 1}"/>` +
    `<text class="scale" x="${width - pad}" y="11" text-anchor="end">${top} s</text>${line}${dots.join("")}${gaps.join("")}</svg>`
  );
}

const CSS = `body{font:14px system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top;max-width:13rem;overflow-wrap:break-word}
td.chart{max-width:none}
th{background:#f4f4f4}td.ok{background:#e6f4e6}td.warn{background:#fff3cd}td.critical{background:#f8d7da;color:#7a1018;font-weight:600}
td.none{color:#555}.detail{white-space:normal;max-width:60rem}
svg.chart .frame{fill:#fff;stroke:#bbb}svg.chart .lag{fill:none;stroke:#36c;stroke-width:1}svg.chart .point{fill:#36c}
svg.chart .point.warn{fill:#c90}svg.chart .point.critical{fill:#c00}svg.chart .gap{stroke:#c00;stroke-width:1.5}svg.chart .scale{font-size:9px;fill:#777}`;

/** The page: the table (with the lag chart as its last column), then what each warn or red cell means. */
export function formatHtml(report: StatusReport): string {
  const end = Date.parse(report.generatedAt) / 1000;
  const td = (c: Cell, extra = "") => `<td class="${c.state}"${extra}${c.detail ? ` title="${escapeHtml(c.detail)}"` : ""}>${escapeHtml(c.text)}</td>`;
  // The chart ends at the server's own "now" (its clock judged the verdict's age), else at the report's.
  const rowEnd = (r: StatusRow) => (r.checkedAt !== null && r.verdictAgeSeconds !== null ? Date.parse(r.checkedAt) / 1000 + r.verdictAgeSeconds : end);
  const rows = report.environments.map(
    (r) =>
      `<tr data-stack="${escapeHtml(r.stack)}" class="${r.state}">${td({ state: r.state, text: r.stack }, ' data-column="environment"')}` +
      STATUS_COLUMNS.map(([name]) => td(r.cells[name], ` data-column="${name}"`)).join("") +
      `<td class="chart" data-column="chart">${r.lagHistory.length ? lagChart(r.lagHistory, rowEnd(r)) : "no history"}</td></tr>`,
  );
  const notes = report.environments.flatMap((r) =>
    STATUS_COLUMNS.filter(([name]) => r.cells[name].detail && r.cells[name].state !== "ok" && r.cells[name].state !== "none").map(
      ([name, head]) => `<li class="${r.cells[name].state}">${escapeHtml(`${r.stack} ${head}: ${r.cells[name].detail}`)}</li>`,
    ),
  );
  const red = report.environments.filter((r) => r.state === "critical").length;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">${HTML_GENERATOR}<title>Fleet status ${escapeHtml(report.generatedAt)}</title><style>${CSS}</style></head>
<body><h1>Fleet status</h1>
<p class="summary">${escapeHtml(report.generatedAt)}: ${red ? `${red} of ${report.environments.length} red` : `${report.environments.length} without red`}</p>
<table><thead><tr><th>environment</th>${STATUS_COLUMNS.map(([, head]) => `<th>${escapeHtml(head)}</th>`).join("")}<th>replication lag, last 24 h</th></tr></thead>
<tbody>
${rows.join("\n")}
</tbody></table>
${notes.length ? `<ul class="detail">${notes.join("")}</ul>` : ""}
</body></html>
`;
}
