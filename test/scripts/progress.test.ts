/** scripts/lib/progress.ts on a fake clock: what a long step prints, tick by tick. */
import { formatBytes, withProgress } from "../../scripts/lib/progress.ts";

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

function step(status?: () => string) {
  let clock = 0;
  const lines: string[] = [];
  let finish!: () => void;
  let fail!: (error: Error) => void;
  const done = withProgress("1/2 restore s3://b/p (latest) into copy.sqlite3", () => new Promise<void>((resolve, reject) => ((finish = resolve), (fail = reject))), () => "1.00 GiB", {
    status,
    write: (line) => lines.push(line),
    now: () => clock,
  });
  const advance = (ms: number) => {
    clock += ms;
    jest.advanceTimersByTime(ms);
  };
  return { lines, done, advance, finish: () => finish(), fail: (e: Error) => fail(e) };
}

test("the step's name at once, then each second the status with the elapsed time, then the total", async () => {
  let bytes = 0;
  const s = step(() => `${formatBytes(bytes)} written (restoring snapshot)`);
  expect(s.lines).toEqual(["▸ 1/2 restore s3://b/p (latest) into copy.sqlite3"]);
  s.advance(999);
  expect(s.lines).toHaveLength(1); // a step shorter than a second prints no tick
  bytes = 312 * 1024 * 1024;
  s.advance(1);
  bytes = 1.5 * 1024 ** 3;
  s.advance(1000);
  s.advance(500);
  s.finish();
  await s.done;
  expect(s.lines).toEqual([
    "▸ 1/2 restore s3://b/p (latest) into copy.sqlite3",
    "    … 312.0 MiB written (restoring snapshot), 1.0 s",
    "    … 1.50 GiB written (restoring snapshot), 2.0 s",
    "  ✓ 1.00 GiB in 2.5 s",
  ]);
});

test("without a status a tick is the elapsed time alone; a failed step prints no total and stops ticking", async () => {
  const s = step();
  s.advance(1000);
  s.fail(new Error("S3 refused"));
  await expect(s.done).rejects.toThrow("S3 refused");
  s.advance(5000);
  expect(s.lines).toEqual(["▸ 1/2 restore s3://b/p (latest) into copy.sqlite3", "    … 1.0 s"]);
});
