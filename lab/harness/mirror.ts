/**
 * A local stand-in for registry.npmjs.org: serves the exact tarballs pinned in cloud-init/artifacts.ts, so
 * a booted server downloads and sha256-checks the real files without leaving the test network.
 *
 * The tarballs come from `npm pack <pkg>@<version>` (the same registry the kit pins them from), are cached
 * outside the checkout, and are checked against artifacts.ts before they are served. A "tampered" artifact
 * is served with its last byte flipped: same size, same URL, wrong sha256 (for the mismatch fault test).
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { type AddressInfo } from "node:net";
import { join } from "node:path";
import { ARTIFACTS, type Artifact } from "../../cloud-init/artifacts.ts";
import { log, run } from "./process.ts";
import { type Teardown } from "./teardown.ts";

export const ARTIFACT_CACHE_DIR = join(process.env.KIT_E2E_CACHE ?? "/var/cache/kit-e2e", "artifacts");

export type ArtifactName = (typeof ARTIFACTS)[number]["name"];

export interface MirrorOptions {
  /** Address to listen on: 127.0.0.1 for host-side use, the lab network's host address for containers. */
  readonly host?: string;
  /** Artifacts served tampered from the start (see `setTampered`). @default none */
  readonly tampered?: readonly ArtifactName[];
  /**
   * Other records served beside the pinned ones, genuine only (`setTampered` acts on the pinned record): an
   * older pin to boot a server with, which scripts/upgrade.ts then moves to the pinned one. Verified like them.
   */
  readonly extra?: readonly Artifact[];
}

export interface MirrorRequest {
  readonly method: string;
  readonly path: string;
  readonly status: number;
}

export interface ArtifactMirror {
  /** e.g. http://10.213.0.1:41234 */
  readonly baseUrl: string;
  /** Where the mirror serves `artifact` (the registry's path, on the mirror). */
  urlFor(artifact: Artifact): string;
  /** The `overrides.artifacts` a renderer needs to point a server at this mirror. */
  artifactOverrides(): Record<ArtifactName, { url: string }>;
  /** Serve the tampered (or, with `false`, the genuine) tarball of `name` from now on. */
  setTampered(name: ArtifactName, tampered: boolean): void;
  /** Every request served so far, in order (to assert what a server downloaded). */
  readonly requests: readonly MirrorRequest[];
}

/** Downloads (once) and verifies every pinned tarball, then serves them until teardown. */
export async function startArtifactMirror(teardown: Teardown, options: MirrorOptions = {}): Promise<ArtifactMirror> {
  const files = new Map<string, { artifact: Artifact; genuine: string; tampered: string }>();
  for (const artifact of ARTIFACTS) {
    const genuine = await fetchTarball(artifact);
    files.set(new URL(artifact.url).pathname, { artifact, genuine, tampered: tamperedCopy(genuine) });
  }
  for (const artifact of options.extra ?? []) {
    const genuine = await fetchTarball(artifact);
    files.set(new URL(artifact.url).pathname, { artifact, genuine, tampered: genuine });
  }
  const tampered = new Set<string>(options.tampered ?? []);
  const requests: MirrorRequest[] = [];

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://mirror").pathname;
    const entry = files.get(path);
    const status = !entry ? 404 : req.method === "GET" || req.method === "HEAD" ? 200 : 405;
    requests.push({ method: req.method ?? "?", path, status });
    if (!entry || status !== 200) {
      res.writeHead(status, { "content-type": "text/plain" }).end(`kit-e2e mirror: nothing served at ${path}\n`);
      return;
    }
    const file = tampered.has(entry.artifact.name) ? entry.tampered : entry.genuine;
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": statSync(file).size });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  });
  const baseUrl = await listen(server, options.host ?? "127.0.0.1");
  teardown.defer("artifact mirror", () => closeServer(server));

  return {
    baseUrl,
    requests,
    urlFor: (artifact) => `${baseUrl}${new URL(artifact.url).pathname}`,
    artifactOverrides: () =>
      Object.fromEntries(ARTIFACTS.map((artifact) => [artifact.name, { url: `${baseUrl}${new URL(artifact.url).pathname}` }])) as Record<
        ArtifactName,
        { url: string }
      >,
    setTampered: (name, on) => void (on ? tampered.add(name) : tampered.delete(name)),
  };
}

/** The cached tarball of `artifact`, fetched with `npm pack` on first use; fails if its sha256 is not the pin. */
export async function fetchTarball(artifact: Artifact): Promise<string> {
  mkdirSync(ARTIFACT_CACHE_DIR, { recursive: true });
  const file = join(ARTIFACT_CACHE_DIR, new URL(artifact.url).pathname.split("/").pop()!);
  if (!existsSync(file)) {
    const spec = packSpec(artifact);
    log(`npm pack ${spec} (cached in ${ARTIFACT_CACHE_DIR})`);
    const packed = await run(["npm", "pack", spec, "--pack-destination", ARTIFACT_CACHE_DIR, "--json"], { timeoutMs: 5 * 60_000 });
    // npm names scoped tarballs "<scope>-<name>-<version>.tgz"; keep the registry's file name instead.
    const [{ filename }] = JSON.parse(packed.stdout) as [{ filename: string }];
    renameSync(join(ARTIFACT_CACHE_DIR, filename), file);
  }
  const actual = sha256File(file);
  if (actual !== artifact.sha256) {
    throw new Error(
      `${artifact.name}: the registry's tarball ${file} has sha256 ${actual}, but cloud-init/artifacts.ts pins ` +
        `${artifact.sha256}. If you just bumped the version, paste the new hash into artifacts.ts; otherwise ` +
        `delete the cached file and retry.`,
    );
  }
  return file;
}

export function sha256File(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** `npm pack` spec: artifacts.ts's npmPackage may already carry the package version (Litestream's does). */
function packSpec(artifact: Artifact): string {
  return artifact.npmPackage.lastIndexOf("@") > 0 ? artifact.npmPackage : `${artifact.npmPackage}@${artifact.version}`;
}

/** Same size, last byte flipped: a download that only the sha256 check can catch. */
function tamperedCopy(file: string): string {
  const copy = `${file}.tampered`;
  if (!existsSync(copy)) {
    const bytes = readFileSync(file);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(copy, bytes);
  }
  return copy;
}

/** Listens on `host`, a free port; resolves with the base URL. */
export function listen(server: Server, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      resolve(`http://${host}:${port}`);
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
