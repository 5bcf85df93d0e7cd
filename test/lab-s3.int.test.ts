/**
 * The lab S3 (lab/s3): its own conformance (SigV4, payload hashes, aws-chunked, ranges, versioning,
 * listing, multipart with S3's checks), then the kit's real clients against it with the stack's own
 * policies: Litestream 0.3.13 replicating a database through a 120 MiB single-transaction write
 * (multipart) and restoring it, curl --aws-sigv4 as s3-put.sh calls it, and the refusals AWS gives.
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { shippedEnvironment } from "../lab/environments";
import { LITESTREAM_DIR } from "../lab/local/local-kit";
import { s3Request } from "../lab/s3/client";
import { startKitLabS3, type KitLabS3 } from "../lab/s3/kit";
import { startLabS3, type LabS3 } from "../lab/s3/server";
import { chunkSignature, signRequest, STREAMING_PAYLOAD } from "../lab/s3/sigv4";
import { MIN_PART_SIZE } from "../lab/s3/store";
import { text } from "../lab/s3/xml";

const LITESTREAM = join(LITESTREAM_DIR, "litestream");
const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

describe("lab S3 conformance", () => {
  const region = "eu-central-1";
  const bucket = "lab-conformance";
  const admin = { userName: "lab-admin", accessKeyId: "AKIALABADMIN0000", secretAccessKey: "lab-admin-secret-0123456789abcdefghijklmn" };
  const creds = { ...admin, region };
  let lab: LabS3;
  const call = (method: string, url: string, o: Parameters<typeof s3Request>[5] = {}) => s3Request(lab.endpoint, lab.caFile, creds, method, url, o);

  beforeAll(async () => {
    lab = await startLabS3({
      users: [{ ...admin, policies: [{ name: "all", document: { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "s3:*", Resource: "*" }] } }] }],
      buckets: [{ name: bucket, region }],
    });
  });
  afterAll(() => lab?.stop());

  test("unknown key: 403 InvalidAccessKeyId; wrong secret: 403 SignatureDoesNotMatch; XML bodies carry the request id", async () => {
    const unknown = await s3Request(lab.endpoint, lab.caFile, { ...creds, accessKeyId: "AKIANOSUCHKEY000" }, "GET", `/${bucket}/x`);
    expect(unknown.status).toBe(403);
    expect(text(unknown.text, "Code")).toBe("InvalidAccessKeyId");
    expect(text(unknown.text, "RequestId")).toBe(unknown.headers["x-amz-request-id"]);
    const wrong = await s3Request(lab.endpoint, lab.caFile, { ...creds, secretAccessKey: "not-the-secret" }, "GET", `/${bucket}/x`);
    expect(wrong.status).toBe(403);
    expect(text(wrong.text, "Code")).toBe("SignatureDoesNotMatch");
    expect(text(wrong.text, "RequestId")).toMatch(/^[0-9A-F]{16}$/);
    const otherRegion = await s3Request(lab.endpoint, lab.caFile, { ...creds, region: "us-west-2" }, "GET", `/${bucket}/x`);
    expect(text(otherRegion.text, "Code")).toBe("AuthorizationHeaderMalformed");
    expect(text(otherRegion.text, "Region")).toBe(region);
  });

  test("payload hash: a body that differs from the signed sha256 is refused and not stored; UNSIGNED-PAYLOAD is accepted", async () => {
    const body = Buffer.from("the real body");
    const bad = await call("PUT", `/${bucket}/hash`, { body, payloadHash: createHash("sha256").update("another body").digest("hex") });
    expect(bad.status).toBe(400);
    expect(text(bad.text, "Code")).toBe("XAmzContentSHA256Mismatch");
    expect((await call("GET", `/${bucket}/hash`)).status).toBe(404);
    expect((await call("PUT", `/${bucket}/hash`, { body, unsigned: true })).status).toBe(200);
    expect((await call("GET", `/${bucket}/hash`)).text).toBe("the real body");
    const badMd5 = await call("PUT", `/${bucket}/hash`, { body, headers: { "content-md5": createHash("md5").update("x").digest("base64") } });
    expect(text(badMd5.text, "Code")).toBe("BadDigest");
  });

  test("aws-chunked (STREAMING-AWS4-HMAC-SHA256-PAYLOAD): each chunk's chained signature is checked", async () => {
    const data = randomBytes(150_000);
    const chunks = [data.subarray(0, 65_536), data.subarray(65_536, 131_072), data.subarray(131_072), Buffer.alloc(0)];
    const put = async (tamper: boolean) => {
      const now = new Date();
      const host = new URL(lab.endpoint).host;
      const url = `/${bucket}/chunked`;
      const encode = (seed: string, key: Buffer, amzDate: string) => {
        let previous = seed;
        return Buffer.concat(chunks.map((c, i) => {
          const signature = chunkSignature(key, amzDate, { accessKeyId: creds.accessKeyId, date: amzDate.slice(0, 8), region, service: "s3" }, previous, c);
          previous = signature;
          const sent = tamper && i === 1 ? Buffer.from(c).fill(0, 0, 1) : c;
          return Buffer.concat([Buffer.from(`${c.length.toString(16)};chunk-signature=${signature}\r\n`), sent, Buffer.from("\r\n")]);
        }));
      };
      const headers = { "content-encoding": "aws-chunked", "x-amz-decoded-content-length": String(data.length) };
      const signed = signRequest({ method: "PUT", url, host, headers, payloadHash: STREAMING_PAYLOAD }, creds, now);
      const seed = /Signature=([0-9a-f]+)/.exec(signed.authorization)![1];
      const k = (key: Buffer | string, s: string) => createHmac("sha256", key).update(s).digest();
      const signingKey = k(k(k(k(`AWS4${creds.secretAccessKey}`, signed["x-amz-date"].slice(0, 8)), region), "s3"), "aws4_request");
      const raw = encode(seed, signingKey, signed["x-amz-date"]);
      return s3Request(lab.endpoint, lab.caFile, undefined, "PUT", url, { headers: { ...signed, "content-length": String(raw.length) }, rawBody: raw });
    };
    const good = await put(false);
    expect(good.status).toBe(200);
    expect((await call("GET", `/${bucket}/chunked`)).body.equals(data)).toBe(true);
    const tampered = await put(true).catch((e: Error) => ({ status: -1, text: e.message }));
    expect(tampered.status === 403 || tampered.status === -1).toBe(true); // refused (the lab may cut the body short)
    expect((await call("GET", `/${bucket}/chunked`)).body.equals(data)).toBe(true); // the earlier version stays current
    expect(lab.errors.some((e) => e.code === "SignatureDoesNotMatch" && e.url === `/${bucket}/chunked`)).toBe(true);
  });

  test("GetObject ranges: a-b, a-, -n answer 206 with Content-Range; past the end is 416 InvalidRange", async () => {
    const data = Buffer.from("0123456789");
    await call("PUT", `/${bucket}/range`, { body: data });
    const get = (range: string) => call("GET", `/${bucket}/range`, { headers: { range } });
    const mid = await get("bytes=2-5");
    expect([mid.status, mid.text, mid.headers["content-range"]]).toEqual([206, "2345", "bytes 2-5/10"]);
    expect((await get("bytes=7-")).text).toBe("789");
    expect((await get("bytes=-3")).text).toBe("789");
    const past = await get("bytes=10-20");
    expect([past.status, text(past.text, "Code")]).toEqual([416, "InvalidRange"]);
  });

  test("versioning: versions kept, a delete adds a marker (404 with x-amz-delete-marker), old versions readable and listed", async () => {
    const v1 = await call("PUT", `/${bucket}/doc`, { body: "one" });
    await call("PUT", `/${bucket}/doc`, { body: "two" });
    const del = await call("DELETE", `/${bucket}/doc`);
    expect([del.status, del.headers["x-amz-delete-marker"]]).toEqual([204, "true"]);
    const gone = await call("GET", `/${bucket}/doc`);
    expect([gone.status, text(gone.text, "Code"), gone.headers["x-amz-delete-marker"]]).toEqual([404, "NoSuchKey", "true"]);
    const old = await call("GET", `/${bucket}/doc?versionId=${encodeURIComponent(String(v1.headers["x-amz-version-id"]))}`);
    expect(old.text).toBe("one");
    const versions = await call("GET", `/${bucket}?versions&prefix=doc`);
    expect((versions.text.match(/<Version>/g) ?? []).length).toBe(2);
    expect(versions.text).toMatch(/<DeleteMarker><Key>doc<\/Key><VersionId>[^<]+<\/VersionId><IsLatest>true<\/IsLatest>/);
    expect(text((await call("GET", `/${bucket}?versioning`)).text, "Status")).toBe("Enabled");
  });

  test("ListObjectsV2: prefix, delimiter, max-keys with continuation, start-after", async () => {
    for (const key of ["l/a/1", "l/a/2", "l/b", "l/c/1", "l/d"]) await call("PUT", `/${bucket}/${key}`, { body: key });
    const page = (q: string) => call("GET", `/${bucket}?list-type=2&prefix=l/&delimiter=/&${q}`);
    const first = await page("max-keys=2");
    expect(first.text).toContain("<CommonPrefixes><Prefix>l/a/</Prefix></CommonPrefixes>");
    expect(first.text).toContain("<Key>l/b</Key>");
    expect(text(first.text, "IsTruncated")).toBe("true");
    const second = await page(`max-keys=2&continuation-token=${text(first.text, "NextContinuationToken")}`);
    expect(second.text).toContain("<Prefix>l/c/</Prefix>");
    expect(second.text).toContain("<Key>l/d</Key>");
    expect(text(second.text, "KeyCount")).toBe("2");
    expect(text(second.text, "IsTruncated")).toBe("false");
    const after = await call("GET", `/${bucket}?list-type=2&prefix=l/&start-after=l/b`);
    expect([...after.text.matchAll(/<Key>([^<]+)<\/Key>/g)].map((m) => m[1])).toEqual(["l/c/1", "l/d"]);
  });

  test("multipart: S3's ETag; InvalidPartOrder, InvalidPart, EntityTooSmall; ListParts; Abort", async () => {
    const start = async (key: string) => text((await call("POST", `/${bucket}/${key}?uploads`)).text, "UploadId")!;
    const parts = [randomBytes(MIN_PART_SIZE), randomBytes(MIN_PART_SIZE), randomBytes(1000)];
    const id = await start("mp");
    const etags: string[] = [];
    for (const [i, body] of parts.entries()) {
      const up = await call("PUT", `/${bucket}/mp?partNumber=${i + 1}&uploadId=${id}`, { body });
      expect(up.headers.etag).toBe(`"${md5(body)}"`);
      etags.push(String(up.headers.etag));
    }
    expect((await call("GET", `/${bucket}/mp?uploadId=${id}`)).text.match(/<Part>/g)).toHaveLength(3);
    const complete = (list: [number, string][]) =>
      call("POST", `/${bucket}/mp?uploadId=${id}`, { body: `<CompleteMultipartUpload>${list.map(([n, e]) => `<Part><PartNumber>${n}</PartNumber><ETag>${e}</ETag></Part>`).join("")}</CompleteMultipartUpload>` });
    expect(text((await complete([[2, etags[1]], [1, etags[0]]])).text, "Code")).toBe("InvalidPartOrder");
    expect(text((await complete([[1, etags[0]], [2, `"${md5(Buffer.from("x"))}"`]])).text, "Code")).toBe("InvalidPart");
    expect(text((await complete([[1, etags[0]], [3, etags[2]], [4, etags[2]]])).text, "Code")).toBe("InvalidPart");
    const small = await start("small");
    const s1 = await call("PUT", `/${bucket}/small?partNumber=1&uploadId=${small}`, { body: "tiny" });
    const s2 = await call("PUT", `/${bucket}/small?partNumber=2&uploadId=${small}`, { body: "tiny" });
    const tooSmall = await call("POST", `/${bucket}/small?uploadId=${small}`, { body: `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${s1.headers.etag}</ETag></Part><Part><PartNumber>2</PartNumber><ETag>${s2.headers.etag}</ETag></Part></CompleteMultipartUpload>` });
    expect(text(tooSmall.text, "Code")).toBe("EntityTooSmall");
    const done = await complete([[1, etags[0]], [2, etags[1]], [3, etags[2]]]);
    expect(done.status).toBe(200);
    const expected = `"${md5(Buffer.concat(etags.map((e) => Buffer.from(e.replace(/"/g, ""), "hex"))))}-3"`;
    expect(text(done.text, "ETag")).toBe(expected);
    const got = await call("GET", `/${bucket}/mp`);
    expect([got.headers.etag, got.body.equals(Buffer.concat(parts))]).toEqual([expected, true]);
    const across = await call("GET", `/${bucket}/mp`, { headers: { range: `bytes=${MIN_PART_SIZE - 2}-${MIN_PART_SIZE + 1}` } });
    expect(across.body.equals(Buffer.concat(parts).subarray(MIN_PART_SIZE - 2, MIN_PART_SIZE + 2))).toBe(true);
    expect((await call("DELETE", `/${bucket}/small?uploadId=${small}`)).status).toBe(204);
    expect(text((await call("GET", `/${bucket}/small?uploadId=${small}`)).text, "Code")).toBe("NoSuchUpload");
  });
});

describe("the kit's clients against the lab S3 with the stack's own policies", () => {
  const prod = shippedEnvironment("example-prod");
  const staging = shippedEnvironment("example-staging");
  let lab: KitLabS3;
  let work: string;
  const replicator: { child?: ChildProcess } = {};

  beforeAll(async () => {
    lab = await startKitLabS3([prod, staging], { plainHttp: true });
    work = mkdtempSync(join(tmpdir(), "lab-s3-kit-"));
  });
  afterAll(async () => {
    if (replicator.child && replicator.child.exitCode === null) {
      const exited = new Promise((r) => replicator.child!.once("exit", r));
      replicator.child.kill("SIGTERM");
      await exited;
    }
    await lab?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const user = (stack: string) => lab.users.get(stack)!;
  const credsOf = (stack: string, env = prod) => ({ ...user(stack), region: env.backups.region });
  /**
   * curl as s3-put.sh runs it: key pair on stdin, --aws-sigv4, the file's sha256 signed. Asynchronous:
   * the lab serves from this process, so a synchronous child would wait on a server that cannot answer.
   */
  const curlPut = (file: string, url: string, keys: { accessKeyId: string; secretAccessKey: string }) => {
    const sha256 = createHash("sha256").update(readFileSync(file)).digest("hex");
    const child = spawn("curl", ["--config", "-", "--fail-with-body", "--silent", "--show-error", "--cacert", lab.caFile,
      "--aws-sigv4", `aws:amz:${prod.backups.region}:s3`, "--header", `x-amz-content-sha256: ${sha256}`, "--upload-file", file, url]);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    child.stdin.end(`user = "${keys.accessKeyId}:${keys.secretAccessKey}"\n`);
    return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => child.once("close", (status) => resolve({ status, stdout, stderr })));
  };
  const bucketUrl = (key: string) => `${lab.endpoint}/${prod.names.bucket}/${key}`;

  test("curl --aws-sigv4 (s3-put.sh's call) uploads with the environment's key; wrong key and wrong secret are refused", async () => {
    const file = join(work, "fallback.sqlite3.gz");
    writeFileSync(file, randomBytes(200_000));
    const key = `${prod.names.bucketPrefix}/fallback/app-test.sqlite3.gz`;
    const ok = await curlPut(file, bucketUrl(key), user("example-prod"));
    expect(ok.stderr).toBe("");
    expect(ok.status).toBe(0);
    const stored = lab.store.getObject(prod.names.bucket, key);
    expect(stored.etag).toBe(`"${md5(readFileSync(file))}"`);
    const unknown = await curlPut(file, bucketUrl(key), { accessKeyId: "AKIAUNKNOWN00000", secretAccessKey: user("example-prod").secretAccessKey });
    expect(unknown.status).toBe(22);
    expect(text(unknown.stdout, "Code")).toBe("InvalidAccessKeyId");
    const wrong = await curlPut(file, bucketUrl(key), { ...user("example-prod"), secretAccessKey: "wrong-secret" });
    expect(text(wrong.stdout, "Code")).toBe("SignatureDoesNotMatch");
  });

  test("IAM: another environment's prefix, listing outside the prefix, another environment's bucket, DeleteBucket: 403 AccessDenied, logged", async () => {
    const p = credsOf("example-prod");
    const req = (method: string, url: string, c = p, body?: string) => s3Request(lab.endpoint, lab.caFile, c, method, url, { body });
    const otherPrefix = await req("PUT", `/${prod.names.bucket}/${staging.names.bucketPrefix}/x`, p, "x");
    expect([otherPrefix.status, text(otherPrefix.text, "Code")]).toEqual([403, "AccessDenied"]);
    const decision = lab.decisions.find((d) => d.requestId === text(otherPrefix.text, "RequestId"))!;
    expect(decision).toMatchObject({ action: "s3:PutObject", resource: `arn:aws:s3:::${prod.names.bucket}/${staging.names.bucketPrefix}/x`, result: "ImplicitlyDenied", decidedBy: [] });
    expect(text((await req("GET", `/${prod.names.bucket}?list-type=2`)).text, "Code")).toBe("AccessDenied");
    expect(text((await req("GET", `/${prod.names.bucket}?list-type=2&prefix=${staging.names.bucketPrefix}/`)).text, "Code")).toBe("AccessDenied");
    const listed = await req("GET", `/${prod.names.bucket}?list-type=2&prefix=${prod.names.bucketPrefix}/`);
    expect(listed.status).toBe(200);
    expect(lab.decisions.find((d) => d.requestId === listed.headers["x-amz-request-id"])!.decidedBy).toEqual([
      { policy: "backups-of-this-environment-only", sid: "ListThisEnvironmentOnly", effect: "Allow" },
    ]);
    const crossBucket = await req("GET", `/${staging.names.bucket}/${staging.names.bucketPrefix}/x`, credsOf("example-prod", staging));
    expect(text(crossBucket.text, "Code")).toBe("AccessDenied");
    const dropBucket = await req("DELETE", `/${prod.names.bucket}`);
    expect(text(dropBucket.text, "Code")).toBe("AccessDenied");
    expect(lab.decisions.find((d) => d.requestId === dropBucket.headers["x-amz-request-id"])).toMatchObject({ action: "s3:DeleteBucket", result: "ImplicitlyDenied" });
    expect(lab.store.buckets.has(prod.names.bucket)).toBe(true);
  });

  test("plain HTTP with the right key: denied by the bucket policy's DenyInsecureTransport", async () => {
    const key = `${prod.names.bucketPrefix}/plain`;
    const over = (endpoint: string) => s3Request(endpoint, lab.caFile, credsOf("example-prod"), "PUT", `/${prod.names.bucket}/${key}`, { body: "x" });
    const plain = await over(lab.httpEndpoint!);
    expect([plain.status, text(plain.text, "Code")]).toEqual([403, "AccessDenied"]);
    expect(lab.decisions.find((d) => d.requestId === plain.headers["x-amz-request-id"])).toMatchObject({
      result: "ExplicitlyDenied", context: expect.objectContaining({ "aws:SecureTransport": "false" }),
      decidedBy: [{ policy: `bucket policy of ${prod.names.bucket}`, sid: "DenyInsecureTransport", effect: "Deny" }],
    });
    expect((await over(lab.endpoint)).status).toBe(200);
  });

  test("Litestream 0.3.13 replicates a 120 MiB single-transaction write (multipart) over TLS and restores it identically, under least privilege", async () => {
    const db = join(work, "app.sqlite3");
    const sql = (file: string, query: string) => execFileSync("sqlite3", ["-cmd", ".timeout 5000", file, query], { encoding: "utf8" }).trim();
    sql(db, "PRAGMA journal_mode=WAL; CREATE TABLE rows(id INTEGER PRIMARY KEY, body BLOB); INSERT INTO rows(body) VALUES (randomblob(100));");
    const u = user("example-prod");
    const config = join(work, "litestream.yml");
    writeFileSync(config, [
      `access-key-id: ${u.accessKeyId}`, `secret-access-key: ${u.secretAccessKey}`, "dbs:", `  - path: ${db}`, "    replicas:", "      - type: s3",
      `        bucket: ${prod.names.bucket}`, `        path: ${prod.names.bucketPrefix}/litestream`, `        endpoint: ${lab.endpoint}`,
      `        region: ${prod.backups.region}`, "        force-path-style: true", "        sync-interval: 1s", "",
    ].join("\n"));
    // Go trusts the lab CA through SSL_CERT_FILE, as a server would trust a real CA: no skip-verify.
    // aws-sdk-go v1 replaces the roots with AWS_CA_BUNDLE when that is set (it is on this machine).
    const env = { ...process.env, SSL_CERT_FILE: lab.caFile, AWS_CA_BUNDLE: lab.caFile };
    let output = "";
    replicator.child = spawn(LITESTREAM, ["replicate", "-config", config], { env, stdio: ["ignore", "pipe", "pipe"] });
    replicator.child.stdout!.on("data", (d: Buffer) => (output += d));
    replicator.child.stderr!.on("data", (d: Buffer) => (output += d));
    // Asynchronous for the same reason as curl: the lab answers from this process.
    const restore = (out: string) => new Promise<{ status: number | null; output: string }>((resolve) => {
      const child = spawn(LITESTREAM, ["restore", "-config", config, "-o", out, db], { env, stdio: ["ignore", "pipe", "pipe"] });
      let said = "";
      child.stdout.on("data", (d: Buffer) => (said += d));
      child.stderr.on("data", (d: Buffer) => (said += d));
      child.once("close", (status) => resolve({ status, output: said }));
    });
    const waitFor = async (what: string, check: () => boolean | Promise<boolean>, ms: number) => {
      const until = Date.now() + ms;
      while (!(await check())) {
        if (Date.now() > until) throw new Error(`${what} not within ${ms} ms; litestream said:\n${output.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    const replicaKeys = () => [...lab.store.buckets.get(prod.names.bucket)!.keys.keys()].filter((k) => k.startsWith(`${prod.names.bucketPrefix}/litestream/`));
    await waitFor("first snapshot", () => replicaKeys().some((k) => k.includes("/snapshots/")), 20_000);

    // One transaction of 120 MiB of incompressible data: a WAL segment far above the 5 MiB part size.
    const wrote = Date.now();
    sql(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120) INSERT INTO rows(body) SELECT randomblob(1048576) FROM n;");
    sql(db, "INSERT INTO rows(body) VALUES ('sentinel')");
    const expected = sql(db, "SELECT count(*) || ' ' || sha3_query('SELECT * FROM rows ORDER BY id') FROM rows");
    let restored = "";
    let attempts = 0;
    await waitFor("the write and the sentinel restorable from the lab S3", async () => {
      const out = join(work, `restored-${attempts++}.sqlite3`);
      const r = await restore(out);
      if (r.status !== 0) return false;
      restored = sql(out, "SELECT count(*) || ' ' || sha3_query('SELECT * FROM rows ORDER BY id') FROM rows");
      const integrity = sql(out, "PRAGMA integrity_check");
      rmSync(out, { force: true });
      return restored === expected && integrity === "ok";
    }, 90_000);
    const caughtUpMs = Date.now() - wrote;
    const restoreStart = Date.now();
    const timed = await restore(join(work, "timed.sqlite3"));
    const restoreMs = Date.now() - restoreStart;
    expect(timed.status).toBe(0);
    expect(sql(join(work, "timed.sqlite3"), "SELECT count(*) FROM rows")).toBe("122");
    console.log(`lab S3: 120 MiB write restorable after ${caughtUpMs} ms (${attempts} restore attempts); a restore of it takes ${restoreMs} ms`);

    // The large segment went up as multipart, and every request of replicate and restore was allowed.
    const objects = replicaKeys().map((k) => lab.store.getObject(prod.names.bucket, k));
    expect(objects.some((o) => /-\d+"$/.test(o.etag) && o.size > 100 * 1024 * 1024)).toBe(true);
    const mine = lab.decisions.filter((d) => d.principal.endsWith(`user/${prod.names.iamUser}`) && d.context["aws:UserAgent"]?.includes("aws-sdk-go"));
    expect(mine.length).toBeGreaterThan(10);
    expect(mine.filter((d) => d.result !== "Allowed")).toEqual([]);
    expect(new Set(mine.map((d) => d.action))).toEqual(new Set(["s3:ListBucket", "s3:PutObject", "s3:GetObject"]));
  }, 170_000);
});
