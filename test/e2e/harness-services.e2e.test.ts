/**
 * The harness's host-side services, without booting anything: the artifact mirror serves exactly the
 * pinned tarballs (and a tampered one on request), and the git server serves the fixture app over smart
 * HTTP, read-only.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { ARTIFACTS, DENO } from "../../cloud-init/artifacts.ts";
import { createAppRepo, serveGitRepo } from "../../lab/harness/git-fixture.ts";
import { startArtifactMirror } from "../../lab/harness/mirror.ts";
import { run } from "../../lab/harness/process.ts";
import { Teardown } from "../../lab/harness/teardown.ts";

const sha256 = (bytes: ArrayBuffer) => createHash("sha256").update(Buffer.from(bytes)).digest("hex");

describe("harness services", () => {
  let teardown: Teardown;
  beforeAll(async () => {
    teardown = await Teardown.begin();
  });
  afterAll(() => teardown?.run());

  test("the mirror serves every pinned artifact with the sha256 of cloud-init/artifacts.ts", async () => {
    const mirror = await startArtifactMirror(teardown);
    for (const artifact of ARTIFACTS) {
      const response = await fetch(mirror.urlFor(artifact));
      expect(response.status).toBe(200);
      expect(sha256(await response.arrayBuffer())).toBe(artifact.sha256);
    }
    expect(Object.keys(mirror.artifactOverrides()).sort()).toEqual(ARTIFACTS.map((a) => a.name).sort());
  });

  test("a tampered artifact keeps its URL and size but not its sha256", async () => {
    const mirror = await startArtifactMirror(teardown, { tampered: ["deno"] });
    const tampered = await (await fetch(mirror.urlFor(DENO))).arrayBuffer();
    mirror.setTampered("deno", false);
    const genuine = await (await fetch(mirror.urlFor(DENO))).arrayBuffer();
    expect(tampered.byteLength).toBe(genuine.byteLength);
    expect(sha256(tampered)).not.toBe(DENO.sha256);
    expect(sha256(genuine)).toBe(DENO.sha256);
    expect((await fetch(`${mirror.baseUrl}/not-pinned.tgz`)).status).toBe(404);
  });

  test("the git server serves the fixture app over smart HTTP, new commits included, and refuses pushes", async () => {
    const repo = await createAppRepo(teardown);
    const server = await serveGitRepo(teardown, repo);
    const second = await repo.commit({ "VERSION.txt": "2\n" }, "Second release");
    await repo.tag("v2");

    const clone = join(teardown.workDir, "clone");
    await run(["git", "clone", "--quiet", server.url, clone]);
    expect((await run(["git", "-C", clone, "rev-parse", "HEAD", "v2"])).stdout.split("\n").slice(0, 2)).toEqual([second, second]);
    expect((await run(["git", "-C", clone, "ls-files"])).stdout).toContain("deno.json");
    expect(server.requests.some((line) => line.startsWith("POST /app.git/git-upload-pack 200"))).toBe(true);

    const push = await run(["git", "-C", clone, "push", "origin", "HEAD:refs/heads/other"], { allowFailure: true });
    expect(push.code).not.toBe(0);
    expect(push.stderr).toContain("403");
  });
});
