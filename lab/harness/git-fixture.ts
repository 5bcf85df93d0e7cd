/**
 * The app's git repository, as a server clones it: test/fixtures/app committed into a bare repository in
 * the run's scratch dir, served over git's smart HTTP protocol (git-http-backend behind a small HTTP server).
 *
 * Why smart HTTP: production clones an https URL, which is the same smart HTTP protocol plus TLS; the
 * server runs the same `git clone URL` code path, ref discovery and pack negotiation. `git daemon` would
 * test the git:// protocol instead, and a bind-mounted path would skip the transport altogether.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { basename, dirname, join } from "node:path";
import { closeServer, listen } from "./mirror.ts";
import { FIXTURE_APP_DIR, REPO_ROOT } from "./paths.ts";
import { run } from "./process.ts";
import { type Teardown } from "./teardown.ts";

export interface AppRepoOptions {
  /** Directory whose files make the first commit. @default test/fixtures/app */
  readonly source?: string;
  /** @default "main" */
  readonly branch?: string;
}

export interface AppRepo {
  /** The bare repository (what the server clones). */
  readonly bareDir: string;
  /** A working clone that `commit()` writes to and pushes from. */
  readonly workDir: string;
  readonly branch: string;
  /** Commit id the branch points at. */
  head(): Promise<string>;
  /**
   * Writes files (path -> content; null deletes) in the working clone, commits and pushes to the bare
   * repository. Resolves with the new commit id.
   */
  commit(files: Readonly<Record<string, string | null>>, message: string): Promise<string>;
  /** Tags a commit (default: head) and pushes the tag. */
  tag(name: string, commit?: string): Promise<void>;
}

export interface GitServer {
  /** Clone URL, e.g. http://10.213.0.1:40321/app.git */
  readonly url: string;
  /** Request log ("GET /app.git/info/refs?service=git-upload-pack 200"), to assert a server fetched. */
  readonly requests: readonly string[];
}

const GIT_IDENTITY = {
  GIT_AUTHOR_NAME: "kit-e2e",
  GIT_AUTHOR_EMAIL: "kit-e2e@example.invalid",
  GIT_COMMITTER_NAME: "kit-e2e",
  GIT_COMMITTER_EMAIL: "kit-e2e@example.invalid",
};

/** Creates the bare repository with one commit of `source` on `branch`. */
export async function createAppRepo(teardown: Teardown, options: AppRepoOptions = {}): Promise<AppRepo> {
  const branch = options.branch ?? "main";
  const root = join(teardown.workDir, "git");
  const bareDir = join(root, "app.git");
  const workDir = join(root, "work");
  await mkdir(root, { recursive: true });
  await cp(options.source ?? FIXTURE_APP_DIR, workDir, { recursive: true });
  await vendorNpmPackages(workDir);

  // Ignore the host's ~/.gitconfig and /etc/gitconfig: the fixture must not depend on who runs the tests.
  const env = { ...process.env, ...GIT_IDENTITY, GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1" };
  const git = (...args: string[]) => run(["git", "-C", workDir, ...args], { env });
  await run(["git", "init", "--quiet", "--bare", `--initial-branch=${branch}`, bareDir], { env });
  await git("init", "--quiet", `--initial-branch=${branch}`);
  await git("add", "--all");
  await git("commit", "--quiet", "-m", "Sample app (test/fixtures/app)");
  await git("remote", "add", "origin", bareDir);
  await git("push", "--quiet", "origin", branch);

  const head = async () => (await git("rev-parse", "HEAD")).stdout.trim();
  return {
    bareDir,
    workDir,
    branch,
    head,
    commit: async (files, message) => {
      for (const [path, content] of Object.entries(files)) {
        if (content === null) {
          await git("rm", "--quiet", "-f", "--", path);
        } else {
          await mkdir(dirname(join(workDir, path)), { recursive: true });
          await writeFile(join(workDir, path), content);
          await git("add", "--", path);
        }
      }
      await git("commit", "--quiet", "--allow-empty", "-m", message);
      await git("push", "--quiet", "origin", branch);
      return head();
    },
    tag: async (name, commit) => {
      await git("tag", name, commit ?? "HEAD");
      await git("push", "--quiet", "origin", name);
    },
  };
}

/**
 * The npm packages the fixture app imports (its PostgreSQL client), committed into the app's repository as
 * vendor/<name>, which its deno.json maps the bare name to: lab servers cannot reach the npm registry. In
 * the kit's checkout vendor/<name> is a symlink into the kit's node_modules; here it becomes the files
 * themselves. So the version is the one the root package.json declares and package-lock.json pins, and it
 * is declared nowhere else.
 */
export const FIXTURE_NPM_PACKAGES = ["postgres"] as const;

async function vendorNpmPackages(workDir: string): Promise<void> {
  for (const name of FIXTURE_NPM_PACKAGES) {
    const from = join(REPO_ROOT, "node_modules", name);
    if (!existsSync(join(from, "package.json"))) {
      throw new Error(`the fixture app's npm package ${name} is not installed in ${from}: run npm ci in the kit's checkout`);
    }
    const to = join(workDir, "vendor", name);
    await rm(to, { recursive: true, force: true }); // the checkout's symlink (cp copied it as one)
    await cp(from, to, { recursive: true, dereference: true });
  }
}

/** Serves `repo` read-only over smart HTTP on `host` (a free port) until teardown. */
export async function serveGitRepo(teardown: Teardown, repo: AppRepo, options: { host?: string } = {}): Promise<GitServer> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    httpBackend(req, res, dirname(repo.bareDir), (status) => requests.push(`${req.method} ${req.url} ${status}`));
  });
  const baseUrl = await listen(server, options.host ?? "127.0.0.1");
  teardown.defer("git server", () => closeServer(server));
  return { url: `${baseUrl}/${basename(repo.bareDir)}`, requests };
}

/** Runs git-http-backend (CGI) for one request. Pushes are refused: the server only ever clones. */
function httpBackend(req: IncomingMessage, res: ServerResponse, projectRoot: string, record: (status: number) => void): void {
  const url = new URL(req.url ?? "/", "http://git");
  if (url.searchParams.get("service") === "git-receive-pack" || url.pathname.endsWith("/git-receive-pack")) {
    record(403);
    res.writeHead(403).end("kit-e2e git server is read-only\n");
    return;
  }
  const cgi = spawn("git", ["http-backend"], {
    env: {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: projectRoot,
      GIT_HTTP_EXPORT_ALL: "1",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      REQUEST_METHOD: req.method ?? "GET",
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers["content-type"] ?? "",
      REMOTE_ADDR: req.socket.remoteAddress ?? "",
      ...(req.headers["content-length"] ? { CONTENT_LENGTH: req.headers["content-length"] } : {}),
      ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: req.headers["content-encoding"] } : {}),
      ...(req.headers["git-protocol"] ? { HTTP_GIT_PROTOCOL: String(req.headers["git-protocol"]) } : {}),
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  req.pipe(cgi.stdin);
  cgi.stdin.on("error", () => undefined);
  let head = Buffer.alloc(0);
  let headersSent = false;
  cgi.stdout.on("data", (chunk: Buffer) => {
    if (headersSent) return void res.write(chunk);
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) return;
    const { status, headers } = parseCgiHeaders(head.subarray(0, end).toString("latin1"));
    record(status);
    res.writeHead(status, headers);
    headersSent = true;
    res.write(head.subarray(end + 4));
  });
  cgi.on("close", (code) => {
    if (!headersSent) {
      record(502);
      res.writeHead(502).end(`git http-backend exited with ${code} before answering\n`);
    } else {
      res.end();
    }
  });
}

function parseCgiHeaders(text: string): { status: number; headers: Record<string, string> } {
  let status = 200;
  const headers: Record<string, string> = {};
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === "status") status = parseInt(value, 10);
    else headers[name] = value;
  }
  return { status, headers };
}
