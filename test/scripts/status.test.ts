/**
 * The fleet view's judgments, each at its edge: what a server's answer becomes in a row (the integration
 * test, test/scripts/status.int.test.ts, reads real verdicts over real SSH; here the cases it cannot make
 * happen on this machine: a verdict cut short, another schema, the 180 s boundary, a key the outputs do not
 * list, a binary that does not answer), the parallel bound, and when the terminal gets color.
 */
import { WATCH_CHECKS, WATCH_STALE_SECONDS, type WatchVerdict } from "../../cloud-init/watch-verdict.ts";
import { errors, OpsError } from "../../scripts/lib/errors.ts";
import { buildRow, failedRow, mapBounded, parseReading, type Reading } from "../../scripts/lib/status.ts";
import { escapeHtml, lagChart, useColor } from "../../scripts/lib/status-render.ts";

const NOW = Date.parse("2026-12-03T12:00:00Z");
const names = { stack: "acme-prod", client: "acme", environment: "prod" };
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

function verdict(ageSeconds: number): WatchVerdict {
  const checks = Object.fromEntries(WATCH_CHECKS.map((name) => [name, { state: "ok", value: "fine" }]));
  return {
    schema: 1,
    ...names,
    checkedAt: iso(NOW - ageSeconds * 1000),
    durationMs: 1200,
    state: "ok",
    checks,
    facts: { release: "20261203T100000Z-abc1234", deno: "2.9.6", litestream: "0.3.13", replicationLagSeconds: 2, litestreamErrors: 0, fallbackAgeSeconds: 3600, drill: null, volumeUsedPercent: 10, rootUsedPercent: 20, inodesUsedPercent: 1, certDaysLeft: 60, updatesPending: 0, rebootRequired: false },
  } as unknown as WatchVerdict;
}

const reading = (over: Partial<Reading> = {}): Reading => ({ now: NOW / 1000, verdictText: JSON.stringify(verdict(30)), historyLines: [], deno: "deno 2.9.6", litestream: "v0.3.13", keyId: "AKIAKEYA", ...over });
const keys = { keys: [{ slot: "a" as const, id: "AKIAKEYA", created: iso(NOW - 10 * 86_400_000) }] };
const row = (over: Partial<Reading> = {}, k: Parameters<typeof buildRow>[3] = keys) => buildRow(names, "deploy@203.0.113.5", reading(over), k, NOW);

test("the read step's output: key=value lines, then the history after its mark (a history line is never a value)", () => {
  const r = parseReading("now=1764763200\nverdict={\"a\":\"b=c\"}\ndeno=deno 2.9.6\nlitestream=v0.3.13\nkey=AKIA1\n--history--\n{\"x\":\"key=evil\"}\n\n{\"y\":1}\n");
  expect(r).toEqual({ now: 1764763200, verdictText: '{"a":"b=c"}', historyLines: ['{"x":"key=evil"}', '{"y":1}'], deno: "deno 2.9.6", litestream: "v0.3.13", keyId: "AKIA1" });
});

test("a verdict 180 s old is current; 181 s is a silent watcher, red, naming since when", () => {
  expect(row({ verdictText: JSON.stringify(verdict(WATCH_STALE_SECONDS)) }).cells.health).toEqual({ state: "ok", text: "ok" });
  const silent = row({ verdictText: JSON.stringify(verdict(WATCH_STALE_SECONDS + 1)) });
  expect(silent.state).toBe("critical");
  expect(silent.cells.health).toMatchObject({ state: "critical", text: "silent 3 min" });
  expect(silent.error).toBe(`watcher silent since ${iso(NOW - 181_000)} (3 min ago): the values below are from then`);
});

test("no verdict file, a verdict cut short, another schema: each a red row saying which", () => {
  expect(row({ verdictText: "" })).toMatchObject({ state: "critical", cells: { health: { text: "no verdict" } }, error: expect.stringContaining("does not exist (the watcher is not installed, or never ran)") });
  expect(row({ verdictText: '{"schema":1,"stack":"acme-pr' })).toMatchObject({ state: "critical", cells: { health: { text: "bad verdict" } }, error: expect.stringMatching(/^the verdict cannot be read: /) });
  expect(row({ verdictText: JSON.stringify({ ...verdict(5), schema: 2 }) }).error).toBe("the verdict cannot be read: schema 2, not the kit's schema 1");
});

test("history: lines older than a day and a line cut short are left out; the rest in order", () => {
  const line = (agoS: number, lag: number | null) => JSON.stringify({ checkedAt: iso(NOW - agoS * 1000), state: lag === null ? "critical" : "ok", replicationLagSeconds: lag, volumeUsedPercent: 10, failing: [] });
  const r = row({ historyLines: [line(90_000, 1), line(80_000, 3), '{"checkedAt":"2026-12-03T11:', line(60, null)] });
  expect(r.lagHistory).toEqual([
    { checkedAt: iso(NOW - 80_000_000), replicationLagSeconds: 3, state: "ok" },
    { checkedAt: iso(NOW - 60_000), replicationLagSeconds: null, state: "critical" },
  ]);
});

test("versions: against the pins; a binary that does not answer falls back to the watcher's reading, else warns", () => {
  expect(row().cells.deno).toEqual({ state: "ok", text: "2.9.6" });
  expect(row({ litestream: "v0.3.11" }).cells.litestream).toMatchObject({ state: "warn", text: "0.3.11 ≠ 0.3.13" });
  expect(row({ deno: "" }).cells.deno).toEqual({ state: "ok", text: "2.9.6" });
  expect(row({ deno: "", verdictText: JSON.stringify({ ...verdict(5), facts: { ...verdict(5).facts, deno: null } }) }).cells.deno).toMatchObject({ state: "warn", text: "?" });
});

test("backup key: its age from the outputs; a key the outputs do not list warns; no outputs file: unknown, not red", () => {
  expect(row().cells.backupKey).toEqual({ state: "ok", text: "10 d (slot a)" });
  expect(row({ keyId: "AKIAOTHER" }).cells.backupKey).toMatchObject({ state: "warn", text: "not in outputs", detail: expect.stringContaining("AKIAOTHER") });
  expect(row({}, { unknown: "no outputs file outputs/acme-prod.json" }).cells.backupKey).toEqual({ state: "none", text: "unknown", detail: "no outputs file outputs/acme-prod.json" });
  expect(row({}, { unknown: "x" }).state).toBe("ok");
});

test("a failure is a red row: no address, unreachable, anything else 'not read'; the fix is kept", () => {
  expect(failedRow(names, "", errors.noHost("acme-prod", "outputs/acme-prod.json")).cells.health.text).toBe("no address");
  const gone = failedRow(names, "deploy@h", new OpsError("cannot reach deploy@h: ssh: connect to host h port 22: Connection timed out", "check the address"));
  expect(gone).toMatchObject({ state: "critical", cells: { health: { state: "critical", text: "unreachable" } }, error: "cannot reach deploy@h: ssh: connect to host h port 22: Connection timed out (fix: check the address)" });
  expect(failedRow(names, "deploy@h", new Error("boom")).cells.health.text).toBe("not read");
});

test("at most `limit` servers at once, results in the targets' order", async () => {
  let inFlight = 0;
  let most = 0;
  const out = await mapBounded([50, 10, 30, 20, 5, 40, 15], 3, async (ms) => {
    most = Math.max(most, ++inFlight);
    await new Promise((r) => setTimeout(r, ms));
    inFlight--;
    return ms * 2;
  });
  expect(most).toBe(3);
  expect(out).toEqual([100, 20, 60, 40, 10, 80, 30]);
});

test("color only on a terminal without NO_COLOR (an empty NO_COLOR counts as unset)", () => {
  expect(useColor({ isTTY: true }, {})).toBe(true);
  expect(useColor({ isTTY: true }, { NO_COLOR: "" })).toBe(true);
  expect(useColor({ isTTY: true }, { NO_COLOR: "1" })).toBe(false);
  expect(useColor({ isTTY: false }, {})).toBe(false);
  expect(useColor({}, {})).toBe(false);
});

test("html: every special character escaped; the chart marks an unmeasured run with a red tick, a critical one red", () => {
  expect(escapeHtml(`<a href="x">'&'</a>`)).toBe("&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  const svg = lagChart(
    [
      { checkedAt: iso(NOW - 43_200_000), replicationLagSeconds: 40, state: "critical" },
      { checkedAt: iso(NOW - 60_000), replicationLagSeconds: null, state: "critical" },
      { checkedAt: iso(NOW), replicationLagSeconds: 1, state: "ok" },
    ],
    NOW / 1000,
  );
  expect([...svg.matchAll(/<circle class="point (\w+)" cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => [m[1], Number(m[2]), Number(m[3])])).toEqual([
    ["critical", 120, 3], // half the day, the top of the scale (40 s)
    ["ok", 237, 44], // now: 1 s of 40 above the bottom (45 − 1.05)
  ]);
  expect(svg).toContain(`<line class="gap" x1="236.8"`);
  expect(svg).toContain(">40 s</text>");
});
