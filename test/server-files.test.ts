/**
 * The server-file declarations (cloud-init/server-files.ts) are complete: every file says what a change to it
 * needs, every unit comes to run, every template is declared, and the templates take every server path and
 * unit name from the layout. The first boot's and the push's commands are assembled from them.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { FIRST_BOOT_FETCHER_TEMPLATE, renderUserData } from "../cloud-init/render.ts";
import { LAYOUT } from "../cloud-init/layout.ts";
import { SERVER_FILES, serverFiles, UNITS } from "../cloud-init/server-files.ts";
import { TEMPLATES_DIR } from "../cloud-init/template.ts";
import { pushFiles } from "../scripts/lib/server-steps.ts";
import { base64, concreteServerValues, shippedEnvironment } from "../lab/environments.ts";

const env = shippedEnvironment("example-prod");
const files = serverFiles(env, concreteServerValues(env));
const fileAt = (path: string) => files.find((f) => f.path === path)!;
const bootstrap = fileAt(`${LAYOUT.libDir}/bootstrap.sh`).content;
const push = pushFiles(files).script.text;
const enables = (script: string, unit: string) =>
  script.split("\n").some((line) => /systemctl enable /.test(line) && line.split(/\s+/).includes(unit));

test("every declared file says what a change to it needs (none, with why, where nothing is right)", () => {
  for (const file of SERVER_FILES) {
    expect({ path: file.path, effects: file.onChange.length }).toEqual({ path: file.path, effects: expect.any(Number) });
    expect(file.onChange.length).toBeGreaterThan(0);
    for (const effect of file.onChange) if (effect.kind === "none") expect(effect.why).toMatch(/\w{4}/);
  }
});

describe.each(Object.entries(UNITS))("unit %s", (unit, activation) => {
  test("comes to run: started by cloud-init, enabled by a bootstrap step, by its timer, or at the end of every boot and push", () => {
    if (activation.by === "cloud-init") {
      const userData = renderUserData(env, concreteServerValues(env), { base64 });
      expect(userData).toContain(`systemctl start ${unit} ||`);
    } else if (activation.by === "bootstrap-step") {
      const instance = unit.replace("@.service", "@$APP_PORT.service");
      expect(enables(bootstrap.replace(/"/g, ""), instance)).toBe(true);
    } else if (activation.by === "timer") {
      expect(UNITS[activation.timer]).toEqual({ by: "enabled-now" });
      const timer = fileAt(`${LAYOUT.unitDir}/${activation.timer}`).content;
      // A timer starts the service of its own name unless it says Unit=.
      expect(timer.match(/^Unit=(.*)$/m)?.[1] ?? activation.timer.replace(/\.timer$/, ".service")).toBe(unit);
    } else {
      expect(enables(bootstrap, unit)).toBe(true);
      expect(enables(push, unit)).toBe(true);
    }
  });
});

test("every template is declared as a server file (an undeclared one would never reach a server), but the user data's fetcher", () => {
  // The watcher's templates are in cloud-init/watch/, beside its contract: named from the templates folder.
  const templates = [TEMPLATES_DIR, join(TEMPLATES_DIR, "..", "watch")].flatMap((dir) =>
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((d) => d.isFile())
      .map((d) => relative(TEMPLATES_DIR, join(d.parentPath, d.name))),
  );
  const declared = SERVER_FILES.flatMap((f) => ("template" in f.source ? [f.source.template] : []));
  expect(templates.sort()).toEqual([...declared, FIRST_BOOT_FETCHER_TEMPLATE].sort());
});

test("templates take every server path and unit name from the layout, never a literal copy", () => {
  const paths: string[] = [];
  const units = Object.values(LAYOUT.units);
  const collect = (value: unknown) => {
    if (typeof value === "string" && value.startsWith("/")) paths.push(value);
    else if (value && typeof value === "object") Object.values(value).forEach(collect);
  };
  collect(LAYOUT);
  const copies: string[] = [];
  for (const template of SERVER_FILES.flatMap((f) => ("template" in f.source ? [f.source.template] : []))) {
    const lines = readFileSync(join(TEMPLATES_DIR, template), "utf8").split("\n");
    lines.forEach((line, i) => {
      for (const path of paths) if (new RegExp(`${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?![\\w.-])`).test(line)) copies.push(`${template}:${i + 1}: ${path}`);
      // Comments may name a unit for the reader; commands and settings take it from the layout.
      if (!line.trimStart().startsWith("#")) for (const unit of units) if (line.includes(unit)) copies.push(`${template}:${i + 1}: ${unit}`);
    });
  }
  expect(copies).toEqual([]);
});

test("a push runs the effects of what changed, once each, daemon-reload before any restart", () => {
  const lines = push.split("\n");
  const effect = (command: string) => lines.filter((line) => line.startsWith("if has ") && line.endsWith(`then ${command}; fi`));
  expect(effect("systemctl daemon-reload")).toHaveLength(1);
  expect(effect("systemctl daemon-reload")[0]).toContain(`${LAYOUT.unitDir}/${LAYOUT.units.litestream}`);
  const restart = effect(`systemctl try-restart ${LAYOUT.units.litestream}`);
  expect(restart).toEqual([`if has ${LAYOUT.s3CredentialsFile} ${LAYOUT.litestreamConfig}; then systemctl try-restart ${LAYOUT.units.litestream}; fi`]);
  expect(lines.indexOf(effect("systemctl daemon-reload")[0])).toBeLessThan(lines.indexOf(restart[0]));
  expect(effect(`systemctl reload ${LAYOUT.units.caddy}`)).toEqual([`if has ${LAYOUT.caddyfile}; then systemctl reload ${LAYOUT.units.caddy}; fi`]);
  expect(effect(`sshd -t && systemctl reload ${LAYOUT.units.ssh}`)).toEqual([`if has ${LAYOUT.sshdConfig}; then sshd -t && systemctl reload ${LAYOUT.units.ssh}; fi`]);
  // Files whose declared effect is none or the app's next start add no command.
  expect(push).not.toMatch(new RegExp(`if has [^;]*${LAYOUT.appEnvFile}`));
});
