/**
 * The rendered user data, checked with the real tools: cloud-init's own schema validator and shellcheck.
 * (test/e2e boots it for real in a systemd container.)
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { LAYOUT } from "../cloud-init/layout.ts";
import { FIRST_BOOT_FETCHER_TEMPLATE, renderFirstBoot } from "../cloud-init/render.ts";
import { envFileLines, SCRIPTS, serverFiles, templateValues, UNITS } from "../cloud-init/server-files.ts";
import { flattenValues, renderTemplate } from "../cloud-init/template.ts";
import { base64, concreteServerValues, REPO_ROOT, shippedEnvironment, shippedEnvironments } from "../lab/environments.ts";
import { bundleText, landedFiles } from "./support/user-data.ts";

let scratch: string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "kit-cloud-init-"));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const firstBoot = (stackName: string) => {
  const env = shippedEnvironment(stackName);
  return renderFirstBoot(env, concreteServerValues(env), { base64 });
};
const render = (stackName: string) => firstBoot(stackName).userData;

describe.each(shippedEnvironments().map((env) => env.stackName))("user data of %s", (stackName) => {
  let userData: string;
  let boot: ReturnType<typeof firstBoot>;
  beforeAll(() => {
    boot = firstBoot(stackName);
    userData = boot.userData;
  });

  test("passes `cloud-init schema --config-file`", () => {
    const file = join(scratch, `${stackName}.yaml`);
    writeFileSync(file, userData);
    const result = spawnSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8" });
    expect(`${result.stdout}${result.stderr}`).toContain("Valid cloud-config");
    expect(result.status).toBe(0);
  });

  test("leaves room in Hetzner's 32 KiB user data cap (DigitalOcean allows 64 KiB): printed, fails at 90 %", () => {
    const cap = 32 * 1024;
    const size = Buffer.byteLength(userData);
    const largest = [...landedFiles(boot)].filter(([, file]) => file.via === "entry")
      .map(([path, file]) => ({ path, bytes: Buffer.byteLength(file.content) }))
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, 5)
      .map((f) => `${f.path} ${f.bytes} B`);
    const bundled = Buffer.byteLength(bundleText(boot));
    console.log(
      `${stackName}: user data ${size} B = ${((100 * size) / cap).toFixed(1)} % of Hetzner's cap (the bundle object: ${bundled} B, ${boot.bundle.gzip.length} B gzip'd); largest entries: ${largest.join(", ")}`,
    );
    if (size > 0.9 * cap) throw new Error(`${stackName}: user data is ${size} B, over 90 % of ${cap} B; largest files: ${largest.join(", ")}`);
    // Where the kit stands: at most half the cap, so the next server files fit.
    expect(size).toBeLessThanOrEqual(cap / 2);
  });
});

describe("user data of example-prod", () => {
  const env = shippedEnvironment("example-prod");
  const boot = firstBoot("example-prod");
  const config = parse(boot.userData);
  const landed = landedFiles(boot);
  const written = (path: string) => {
    const file = landed.get(path);
    if (!file) throw new Error(`${path} is not in the user data`);
    return file;
  };

  test("SSH: keys only, no root, no passwords, a non-root deploy user with the configured keys", () => {
    expect(config.ssh_pwauth).toBe(false);
    expect(config.disable_root).toBe(true);
    expect(config.users[0]).toMatchObject({
      name: "deploy",
      lock_passwd: true,
      ssh_authorized_keys: env.sshKeys.map((k) => k.publicKey),
    });
    const sshd = written("/etc/ssh/sshd_config.d/10-kit.conf").content;
    // sorts before cloud-init's 50-cloud-init.conf: sshd keeps the first value it reads
    expect(sshd).toMatch(/^PermitRootLogin no$/m);
    expect(sshd).toMatch(/^PasswordAuthentication no$/m);
    expect(sshd).toMatch(/^KbdInteractiveAuthentication no$/m);
  });

  test("SSH keys come only from a root-owned file the kit rewrites, so removing a key and deploying revokes it", () => {
    const sshd = written("/etc/ssh/sshd_config.d/10-kit.conf").content;
    expect(sshd).toMatch(new RegExp(`^AuthorizedKeysFile ${LAYOUT.authorizedKeysDir}/%u$`, "m"));
    const keys = written(`${LAYOUT.authorizedKeysDir}/deploy`);
    // Written at cloud-init's init stage, before sshd first starts.
    expect(keys).toMatchObject({ permissions: "0644", via: "entry" });
    expect(keys.entry?.owner).toBeUndefined(); // cloud-init's default: root:root
    expect(keys.entry?.defer).toBeUndefined();
    const listed = (text: string) => text.split("\n").filter((line) => line && !line.startsWith("#"));
    expect(listed(keys.content)).toEqual(env.sshKeys.map((k) => k.publicKey.trim()));
    // deploy.ts pushes serverFiles: the same file, rendered from the client file as it is now.
    const pushedKeys = (sshKeys: typeof env.sshKeys) => {
      const changed = { ...env, sshKeys };
      return listed(serverFiles(changed, concreteServerValues(changed)).find((f) => f.path === `${LAYOUT.authorizedKeysDir}/deploy`)!.content);
    };
    const leaving = { name: "leaving", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKitLeavingEmployeeKeyForTheTest leaving@laptop" };
    expect(pushedKeys([...env.sshKeys, leaving])).toContain(leaving.publicKey);
    expect(pushedKeys(env.sshKeys)).not.toContain(leaving.publicKey);
  });

  test("unattended security upgrades are installed and enabled", () => {
    expect(config.packages).toContain("unattended-upgrades");
    expect(written("/etc/apt/apt.conf.d/20auto-upgrades").content).toContain('APT::Periodic::Unattended-Upgrade "1";');
  });

  test("credentials are in 0600 root files, base64-encoded, never in plain text in the user data", () => {
    const s3 = written(LAYOUT.s3CredentialsFile);
    expect(s3).toMatchObject({ permissions: "0600", via: "entry", entry: { encoding: "b64" } });
    expect(s3.content).toBe(
      "AWS_ACCESS_KEY_ID=AKIAEXAMPLEEXAMPLE00\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    );
    expect(written(LAYOUT.appSecretsFile)).toMatchObject({ permissions: "0600", entry: { encoding: "b64" } });
    expect(render("example-prod")).not.toContain("wJalrXUtnFEMI");
  });

  test("Litestream replicates the database on the volume to <bucket>/<env>/litestream, 1 h snapshots, WAL checked every 100 ms", () => {
    const litestream = parse(written(LAYOUT.litestreamConfig).content);
    expect(litestream.dbs).toEqual([
      {
        path: "/mnt/data/db/app.sqlite3",
        "monitor-interval": "100ms",
        replicas: [
          {
            name: "s3",
            type: "s3",
            bucket: "pixelco-example-prod-backups",
            path: "prod/litestream",
            region: "eu-central-1",
            "sync-interval": "1s",
            "snapshot-interval": "1h",
            retention: "72h",
          },
        ],
      },
    ]);
    expect(litestream.addr).toBe("127.0.0.1:9090");
  });

  test("an S3-compatible endpoint is configured path-style for Litestream and the fallback upload", () => {
    const files = serverFiles(env, concreteServerValues(env, { s3Endpoint: "http://127.0.0.1:9000" }));
    const litestream = parse(files.find((f) => f.path === LAYOUT.litestreamConfig)!.content);
    expect(litestream.dbs[0].replicas[0]).toMatchObject({ endpoint: "http://127.0.0.1:9000", "force-path-style": true });
    expect(files.find((f) => f.path === LAYOUT.kitEnvFile)!.content).toContain("S3_ENDPOINT=http://127.0.0.1:9000");
  });

  test("the app unit runs unprivileged and sandboxed, writing only to the data directory, never without the volume", () => {
    const unit = written("/etc/systemd/system/app@.service").content;
    expect(unit).toMatch(/^User=app$/m);
    expect(unit).toMatch(/^NoNewPrivileges=yes$/m);
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
    expect(unit).toMatch(/^ReadWritePaths=\/mnt\/data\/db$/m);
    expect(unit).toMatch(/^RequiresMountsFor=\/mnt\/data$/m);
    expect(unit).toMatch(/^ExecStartPre=\/usr\/local\/lib\/kit\/require-volume.sh$/m);
    expect(unit).toMatch(/^EnvironmentFile=-\/etc\/app\/secrets.env$/m);
    expect(unit).toMatch(/^Environment=PORT=%i HOST=127.0.0.1 DATABASE_URL=\/mnt\/data\/db\/app.sqlite3 /m);
    expect(unit).toMatch(/^Requires=db-restore.service$/m);
    // The metadata service serves the user data (backup keys, secrets): out of the app's reach.
    expect(unit).toMatch(/^IPAddressDeny=169\.254\.0\.0\/16$/m);
    // A stop is a stop: `deno task` answering SIGTERM with 143 must not leave the slot in `systemctl --failed`.
    expect(unit).toMatch(/^SuccessExitStatus=143$/m);
  });

  test("the restore on boot may write the database directory and the aside directory, nothing else", () => {
    // A restore that fails its integrity check is moved aside: under ProtectSystem=strict that needs both.
    const unit = written("/etc/systemd/system/db-restore.service").content;
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
    expect(unit.match(/^ReadWritePaths=(.*)$/m)?.[1].split(" ").sort()).toEqual([LAYOUT.asideDir, LAYOUT.dbDir].sort());
  });

  test("Litestream and the restore run as the app user after the volume is mounted", () => {
    for (const unit of ["litestream.service", "db-restore.service"]) {
      const text = written(`/etc/systemd/system/${unit}`).content;
      expect(text).toMatch(/^User=app$/m);
      expect(text).toMatch(/^RequiresMountsFor=\/mnt\/data$/m);
      expect(text).toMatch(/^EnvironmentFile=\/etc\/kit\/s3.env$/m);
    }
  });

  test("Caddy serves the domain (automatic HTTPS), or plain :80 when there is none", () => {
    // Written by the bundle in runcmd, after Caddy's package is installed.
    expect(written(LAYOUT.caddyfile)).toMatchObject({ via: "bundle" });
    expect(written(LAYOUT.caddyfile).content).toMatch(/^app\.example-client\.com \{$/m);
    expect(written(LAYOUT.caddyfile).content).toContain(`reverse_proxy 127.0.0.1:${LAYOUT.ports.upstream} {`);
    // The deploy switch sends that port on to the slot the bootstrap starts (kit-upstream.service loads it, before Caddy).
    expect(written(LAYOUT.upstreamRules)).toMatchObject({ via: "bundle" });
    expect(written(LAYOUT.upstreamRules).content).toContain(`tcp dport ${LAYOUT.ports.upstream} dnat to 127.0.0.1:8000\n`);
    expect(landedFiles(firstBoot("example-staging")).get(LAYOUT.caddyfile)?.content).toMatch(/^:80 \{$/m);
  });

  test("the pinned artifacts are downloaded with their sha256; a mirror can override the URL", () => {
    const kitEnv = written(LAYOUT.kitEnvFile).content;
    expect(kitEnv).toContain("DENO_URL=https://registry.npmjs.org/@deno/linux-x64-glibc/-/linux-x64-glibc-2.9.6.tgz");
    expect(kitEnv).toMatch(/^DENO_SHA256=[0-9a-f]{64}$/m);
    expect(kitEnv).toMatch(/^LITESTREAM_SHA256=[0-9a-f]{64}$/m);
    const mirrored = serverFiles(env, concreteServerValues(env), { artifacts: { deno: { url: "http://127.0.0.1:8080/deno.tgz" } } });
    expect(mirrored.find((f) => f.path === LAYOUT.kitEnvFile)!.content).toContain("DENO_URL=http://127.0.0.1:8080/deno.tgz");
  });

  test("every server file lands exactly as rendered, with its mode: the bundle, run for real, writes the same files", () => {
    const files = serverFiles(env, concreteServerValues(env));
    // Besides the server files, only the fetcher (first boot only: it is no server file).
    expect([...landed.keys()].sort()).toEqual([...files.map((f) => f.path), LAYOUT.firstBootFetcher].sort());
    for (const file of files) expect(written(file.path)).toMatchObject({ content: file.content, permissions: file.mode });
    // Only secrets (encoded at apply time) and sshd's files travel in the user data; the rest in the bundle object.
    const outside = files.filter((f) => written(f.path).via === "entry").map((f) => f.path);
    expect(outside.sort()).toEqual(files.filter((f) => f.secret || f.early).map((f) => f.path).sort());
  });

  test("runcmd fetches the bundle, runs it, then starts the bootstrap unit; each stops the first boot when it fails", () => {
    expect(config.runcmd).toEqual([
      `bash ${LAYOUT.firstBootFetcher} || exit 1`,
      `bash ${LAYOUT.firstBootBundle} || exit 1`,
      ["systemctl", "daemon-reload"],
      expect.stringMatching(/^systemctl start kit-bootstrap.service \|\| /),
    ]);
    expect(written(LAYOUT.firstBootFetcher)).toMatchObject({ permissions: "0700", via: "entry", entry: { defer: true } });
  });

  test("the user data holds the bundle's key and sha256, not the bundle: the object's key is its own content's hash", () => {
    const fetcher = written(LAYOUT.firstBootFetcher).content;
    expect(boot.bundle.key).toBe(`${env.names.bucketPrefix}/kit/first-boot/${boot.bundle.sha256}.sh.gz`);
    expect(boot.bundle.sha256).toBe(createHash("sha256").update(gunzipSync(boot.bundle.gzip)).digest("hex"));
    expect(fetcher).toContain(`key=${boot.bundle.key} `);
    expect(fetcher).toMatch(new RegExp(`^want=${boot.bundle.sha256}$`, "m"));
    expect(fetcher).toContain("bucket=pixelco-example-prod-backups ");
    // No file of the bundle is in the user data: not as text, not compressed.
    expect(boot.userData).not.toContain("H4sI");
    expect(boot.userData).not.toContain("bootstrap.sh");
    expect(boot.bundle.script).toContain(`put ${LAYOUT.libDir}/bootstrap.sh 0755`);
  });

  test("the fetcher passes shellcheck as rendered", () => {
    const path = join(scratch, "fetch-server-files.sh");
    writeFileSync(path, written(LAYOUT.firstBootFetcher).content);
    const result = spawnSync("shellcheck", ["--severity=style", "--shell=bash", path], { encoding: "utf8" });
    expect(result.stdout).toBe("");
    expect(result.status).toBe(0);
    expect(FIRST_BOOT_FETCHER_TEMPLATE).toBe("first-boot/fetch-server-files.sh");
  });
});

describe("environment files", () => {
  test("plain words stay bare, anything else is single-quoted; bash and systemd read both", () => {
    expect(envFileLines({ A: "x/y:z", B: "two words", C: "" })).toBe("A=x/y:z\nB='two words'\nC=''\n");
  });

  test("a value with a single quote is refused, naming the variable and never printing the value (it may be a secret)", () => {
    const secret = "hunter2's-real-secret";
    let message = "";
    try {
      envFileLines({ STRIPE_KEY: secret });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toBe("STRIPE_KEY contains a single quote ('), which an environment file cannot hold; change that value");
    expect(message).not.toContain("hunter2");
  });
});

describe("server scripts", () => {
  const env = shippedEnvironment("example-prod");
  const files = serverFiles(env, concreteServerValues(env));

  test.each([...SCRIPTS, "watch.sh"].map((s) => [s]))("%s passes shellcheck as rendered", (script) => {
    const file = files.find((f) => f.path === `${LAYOUT.libDir}/${script}`)!;
    const path = join(scratch, script);
    writeFileSync(path, file.content);
    const result = spawnSync("shellcheck", ["--severity=style", "--shell=bash", path], { encoding: "utf8" });
    expect(result.stdout).toBe("");
    expect(result.status).toBe(0);
    expect(file.content.split("\n")[1]).toMatch(/^#/); // a comment saying what it is for
    // The watcher alone runs on after a failing command: a failing check is a verdict, not an abort.
    expect(file.content).toContain(script === "watch.sh" ? "set -uo pipefail # no -e: a failing check is a verdict" : "set -euo pipefail");
  });

  test("the rendered kit.env is valid shell (sourced by every script)", () => {
    const kitEnv = files.find((f) => f.path === LAYOUT.kitEnvFile)!.content;
    const out = execFileSync("bash", ["-c", `set -eu; ${kitEnv}\necho "$DB_FILE $S3_BUCKET $APP_PORT"`], { encoding: "utf8" });
    expect(out.trim()).toBe("/mnt/data/db/app.sqlite3 pixelco-example-prod-backups 8000");
  });

  test("every unit template renders with the layout's values (no stray placeholder)", () => {
    for (const unit of Object.keys(UNITS)) {
      const content = files.find((f) => f.path === `/etc/systemd/system/${unit}`)!.content;
      expect(content).not.toMatch(/\{\{|\}\}/);
    }
  });

  test("a template placeholder without a value is an error, not an empty setting", () => {
    const values = { siteAddress: ":80", caddyfile: LAYOUT.caddyfile, healthPath: "/healthz", lbDrainFile: LAYOUT.lbDrainFile, upstreamRules: LAYOUT.upstreamRules };
    expect(() => renderTemplate("config/Caddyfile", values)).toThrow("template config/Caddyfile: no value for {{upstreamPort}}");
    expect(renderTemplate("config/Caddyfile", { ...values, upstreamPort: 7999 })).toContain("127.0.0.1:7999");
  });
});

describe("templates reach the client's resolved config by dotted names", () => {
  const env = shippedEnvironment("example-prod");
  const values = templateValues(env, concreteServerValues(env));
  test("{{config.<field path>}} is the field's resolved value; layout paths stay flat names (the labs override them)", () => {
    expect(values["config.backups.fallback.keepDays"]).toBe(env.backups.fallback.keepDays);
    expect(values["config.app.privateRepo"]).toBe("false");
    expect(Object.keys(values).filter((name) => name.startsWith("layout."))).toEqual([]);
    // Lists are built for the template that needs them, never flattened.
    expect(Object.keys(values).filter((name) => name.startsWith("config.sshKeys"))).toEqual([]);
  });
  test("the fallback timer takes its schedule straight from the field; a dotted name without a value is an error naming it", () => {
    const onCalendar = "Mon *-*-* 04:00:00";
    const timer = renderTemplate("systemd/fallback-backup.timer", { ...values, ...flattenValues("config", { ...env, backups: { ...env.backups, fallback: { ...env.backups.fallback, onCalendar } } }) });
    expect(timer).toContain(`OnCalendar=${onCalendar}\n`);
    const { ["config.backups.fallback.onCalendar"]: _dropped, ...without } = values;
    expect(() => renderTemplate("systemd/fallback-backup.timer", without)).toThrow("template systemd/fallback-backup.timer: no value for {{config.backups.fallback.onCalendar}}");
  });
});

describe("docs/server-layout.md", () => {
  test("names every path, user and unit of the layout (one source of truth, written down once)", () => {
    const doc = readFileSync(join(REPO_ROOT, "docs", "server-layout.md"), "utf8");
    const facts: string[] = [];
    const collect = (value: unknown) => {
      if (typeof value === "string") facts.push(value);
      else if (typeof value === "number") facts.push(String(value));
      else if (value && typeof value === "object") Object.values(value).forEach(collect);
    };
    collect(LAYOUT);
    const missing = facts.filter((fact) => !doc.includes(fact));
    expect(missing).toEqual([]);
  });
});
