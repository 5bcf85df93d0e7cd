/**
 * The lab S3 (lab/s3): its own conformance (SigV4, payload hashes, aws-chunked, ranges, conditional GETs,
 * versioning and noncurrent versions, listing, deletes, multipart with S3's checks, 501 NotImplemented for
 * what it does not serve), a 1 GiB object by multipart with bounded memory (≈ 35 s of the suite), then the kit's real clients against it with the stack's own
 * policies: Litestream 0.3.13 replicating a database through a 120 MiB single-transaction write
 * (multipart) and restoring it, curl --aws-sigv4 as s3-put.sh calls it, and the refusals AWS gives.
 */
import { createCipheriv, createHash, createHmac, randomBytes } from "node:crypto";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { shippedEnvironment } from "../lab/environments.ts";
import { LITESTREAM_DIR } from "../lab/local/local-kit.ts";
import { s3Request } from "../lab/s3/client.ts";
import { startKitLabS3, type KitLabS3 } from "../lab/s3/kit.ts";
import { startLabS3, type LabS3 } from "../lab/s3/server.ts";
import { chunkSignature, signRequest, STREAMING_PAYLOAD, UNSIGNED_PAYLOAD } from "../lab/s3/sigv4.ts";
import { MIN_PART_SIZE } from "../lab/s3/store.ts";
import { text } from "../lab/s3/xml.ts";

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
    // GetObject ?partNumber serves one part as S3 does (206, the part's range, the object's part count).
    const part2 = await call("GET", `/${bucket}/mp?partNumber=2`);
    const part4 = await call("GET", `/${bucket}/mp?partNumber=4`);
    expect([part2.status, part2.headers["content-range"], part2.headers["x-amz-mp-parts-count"]]).toEqual([206, `bytes ${MIN_PART_SIZE}-${2 * MIN_PART_SIZE - 1}/${2 * MIN_PART_SIZE + 1000}`, "3"]);
    expect(part2.body.equals(parts[1])).toBe(true);
    expect([part4.status, text(part4.text, "Code")]).toEqual([416, "InvalidPartNumber"]);
    expect((await call("DELETE", `/${bucket}/small?uploadId=${small}`)).status).toBe(204);
    expect(text((await call("GET", `/${bucket}/small?uploadId=${small}`)).text, "Code")).toBe("NoSuchUpload");
  });

  test("conditional GETs: If-Match / If-Unmodified-Since fail with 412, If-None-Match / If-Modified-Since answer 304; response-* overrides", async () => {
    const put = await call("PUT", `/${bucket}/cond`, { body: "conditional" });
    const etag = String(put.headers.etag);
    const get = (headers: Record<string, string>, query = "") => call("GET", `/${bucket}/cond${query}`, { headers });
    const later = new Date(Date.now() + 60_000).toUTCString();
    const earlier = new Date(Date.now() - 60_000).toUTCString();
    expect((await get({ "if-match": etag })).text).toBe("conditional");
    const failed = await get({ "if-match": '"0123"' });
    expect([failed.status, text(failed.text, "Code"), text(failed.text, "Condition")]).toEqual([412, "PreconditionFailed", "If-Match"]);
    expect((await get({ "if-unmodified-since": earlier })).status).toBe(412);
    expect((await get({ "if-match": etag, "if-unmodified-since": earlier })).status).toBe(200); // a matching If-Match wins
    const notModified = await get({ "if-none-match": etag });
    expect([notModified.status, notModified.body.length, notModified.headers.etag]).toEqual([304, 0, etag]);
    expect((await get({ "if-modified-since": later })).status).toBe(304);
    expect((await get({ "if-modified-since": earlier })).status).toBe(200);
    const renamed = await get({}, "?response-content-type=text/plain&response-content-disposition=attachment%3B%20filename%3Dx.txt");
    expect([renamed.headers["content-type"], renamed.headers["content-disposition"]]).toEqual(["text/plain", "attachment; filename=x.txt"]);
  });

  test("versions: noncurrent versions paged by key-marker / version-id-marker; DeleteObjects removes one version for good, or adds markers", async () => {
    const ids: string[] = [];
    for (const body of ["v1", "v2", "v3"]) ids.push(String((await call("PUT", `/${bucket}/ver/a`, { body })).headers["x-amz-version-id"]));
    await call("PUT", `/${bucket}/ver/b`, { body: "b" });
    const seen: { key: string; id: string; latest: string }[] = [];
    let markers = "";
    for (let pages = 0; pages < 5; pages++) {
      const page = await call("GET", `/${bucket}?versions&prefix=ver/&max-keys=2${markers}`);
      for (const v of page.text.matchAll(/<Version><Key>([^<]+)<\/Key>.*?<VersionId>([^<]+)<\/VersionId><IsLatest>(\w+)<\/IsLatest><\/Version>/g)) seen.push({ key: v[1], id: v[2], latest: v[3] });
      if (text(page.text, "IsTruncated") !== "true") break;
      markers = `&key-marker=${encodeURIComponent(text(page.text, "NextKeyMarker")!)}&version-id-marker=${encodeURIComponent(text(page.text, "NextVersionIdMarker")!)}`;
    }
    // Newest first within a key, each version exactly once across the pages.
    expect(seen.filter((v) => v.key === "ver/a").map((v) => [v.id, v.latest])).toEqual([[ids[2], "true"], [ids[1], "false"], [ids[0], "false"]]);
    expect(seen.filter((v) => v.key === "ver/b")).toHaveLength(1);
    const xml = `<Delete><Object><Key>ver/a</Key><VersionId>${ids[0]}</VersionId></Object><Object><Key>ver/b</Key></Object></Delete>`;
    const withoutMd5 = await call("POST", `/${bucket}?delete`, { body: xml });
    expect([withoutMd5.status, text(withoutMd5.text, "Code")]).toEqual([400, "InvalidRequest"]);
    const deleted = await call("POST", `/${bucket}?delete`, { body: xml, headers: { "content-md5": createHash("md5").update(xml).digest("base64") } });
    expect(deleted.status).toBe(200);
    expect(deleted.text).toContain(`<Deleted><Key>ver/a</Key><VersionId>${ids[0]}</VersionId></Deleted>`);
    expect(deleted.text).toMatch(/<Deleted><Key>ver\/b<\/Key><DeleteMarker>true<\/DeleteMarker><DeleteMarkerVersionId>[^<]+<\/DeleteMarkerVersionId><\/Deleted>/);
    expect(text((await call("GET", `/${bucket}/ver/a?versionId=${encodeURIComponent(ids[0])}`)).text, "Code")).toBe("NoSuchVersion");
    expect((await call("GET", `/${bucket}/ver/a?versionId=${encodeURIComponent(ids[1])}`)).text).toBe("v2");
    expect((await call("GET", `/${bucket}/ver/b`)).status).toBe(404);
    expect((await call("GET", `/${bucket}?list-type=2&prefix=ver/`)).text).not.toContain("<Key>ver/b</Key>");
  });

  test("what the lab does not serve is 501 NotImplemented naming it, and nothing is stored", async () => {
    await call("PUT", `/${bucket}/ni`, { body: "original" });
    const upload = text((await call("POST", `/${bucket}/ni-mp?uploads`)).text, "UploadId")!;
    const cases: [string, string, Parameters<typeof call>[2], RegExp][] = [
      ["GET", `/${bucket}/ni?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x&X-Amz-Signature=0`, {}, /Presigned URLs/],
      ["PUT", `/${bucket}/ni`, { headers: { "x-amz-copy-source": `/${bucket}/range` } }, /CopyObject/],
      ["PUT", `/${bucket}/ni-mp?partNumber=1&uploadId=${upload}`, { headers: { "x-amz-copy-source": `/${bucket}/range` } }, /UploadPartCopy/],
      ["PUT", `/${bucket}/ni?tagging`, { body: "<Tagging/>" }, /\?tagging subresource/],
      ["GET", `/${bucket}/ni?acl`, {}, /\?acl subresource/],
      ["PUT", `/${bucket}/ni`, { body: "x", headers: { "x-amz-checksum-crc32": "AAAAAA==", "x-amz-sdk-checksum-algorithm": "CRC32" } }, /Additional checksums/],
      ["PUT", `/${bucket}/ni`, { body: "x", headers: { "if-none-match": "*" } }, /Conditional writes/],
      ["PUT", `/${bucket}/ni`, { body: "x", payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER" }, /trailing checksums/],
      ["PUT", `/${bucket}/ni`, { body: "x", headers: { "x-amz-server-side-encryption-customer-algorithm": "AES256" } }, /SSE-C/],
      ["PUT", `/${bucket}/ni`, { body: "x", headers: { "x-amz-server-side-encryption": "aws:kms" } }, /aws:kms/],
      ["PUT", `/${bucket}/ni`, { body: "x", headers: { "x-amz-storage-class": "GLACIER" } }, /GLACIER/],
      ["GET", `/${bucket}?uploads`, {}, /not served/],
      ["POST", `/${bucket}/ni?restore`, { body: "<RestoreRequest/>" }, /\?restore subresource/],
    ];
    for (const [method, url, o, message] of cases) {
      const answer = method === "GET" && url.includes("X-Amz-Signature")
        ? await s3Request(lab.endpoint, lab.caFile, undefined, method, url)
        : await call(method, url, o);
      expect({ url, status: answer.status, code: text(answer.text, "Code") }).toEqual({ url, status: 501, code: "NotImplemented" });
      expect(text(answer.text, "Message")).toMatch(message);
    }
    expect((await call("GET", `/${bucket}/ni`)).text).toBe("original");
    expect((await call("GET", `/${bucket}/ni-mp?uploadId=${upload}`)).text).not.toContain("<Part>");
    // An AWS SDK's x-id and x-amz-checksum-mode (send me stored checksums: there are none) are fine.
    expect((await call("GET", `/${bucket}/ni?x-id=GetObject`, { headers: { "x-amz-checksum-mode": "ENABLED" } })).text).toBe("original");
  });
});

describe("lab S3 at scale: a 1 GiB object by multipart with bounded memory, read back by parallel ranged GETs", () => {
  const MiB = 1024 * 1024;
  const SIZE = 1024 * MiB;
  const PART = 64 * MiB;
  const region = "eu-central-1";
  const bucket = "lab-scale";
  const admin = { userName: "lab-admin", accessKeyId: "AKIALABADMIN0001", secretAccessKey: "lab-admin-secret-0123456789abcdefghijklmn" };
  const creds = { ...admin, region };
  let lab: LabS3;
  beforeAll(async () => {
    lab = await startLabS3({
      users: [{ ...admin, policies: [{ name: "all", document: { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "s3:*", Resource: "*" }] } }] }],
      buckets: [{ name: bucket, region }],
    });
  });
  afterAll(() => lab?.stop());

  // The object's bytes are AES-CTR keystream: any range can be regenerated from its offset, so neither
  // side ever holds the object, and every byte read back is compared with what was sent.
  const aesKey = randomBytes(16);
  const content = (offset: number, length: number): Buffer => {
    const out = Buffer.alloc(length);
    for (let done = 0; done < length;) {
      const within = (offset + done) % PART;
      const n = Math.min(length - done, PART - within);
      const iv = Buffer.alloc(16);
      iv.writeUInt32BE(Math.floor((offset + done) / PART), 4);
      iv.writeBigUInt64BE(BigInt(Math.floor(within / 16)), 8);
      const skip = within % 16;
      createCipheriv("aes-128-ctr", aesKey, iv).update(Buffer.alloc(n + skip)).copy(out, done, skip);
      done += n;
    }
    return out;
  };

  /** One request with a streamed body and a streamed answer: only a small answer is kept as text. */
  const stream = (method: string, url: string, o: { body?: () => AsyncGenerator<Buffer>; length?: number; headers?: Record<string, string>; onData?: (chunk: Buffer) => void } = {}) => {
    const target = new URL(lab.endpoint);
    const signed = signRequest({ method, url, host: target.host, headers: { ...o.headers, "content-length": String(o.length ?? 0) }, payloadHash: UNSIGNED_PAYLOAD }, creds);
    return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string; size: number }>((resolve, reject) => {
      const req = httpsRequest({ host: target.hostname, port: target.port, method, path: url, headers: signed, ca: readFileSync(lab.caFile) }, (res) => {
        let size = 0;
        let small = "";
        res.on("data", (chunk: Buffer) => {
          if (o.onData) o.onData(chunk);
          else if (small.length < 65_536) small += chunk.toString("utf8");
          size += chunk.length;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: small, size }));
        res.on("error", reject);
      });
      req.on("error", reject);
      if (o.body) pipeline(Readable.from(o.body()), req).catch(reject);
      else req.end();
    });
  };

  test("upload 1 GiB in 16 parts of 64 MiB (4 at a time), read it back by 4 parallel unaligned ranges: every byte equal, RSS growth bounded", async () => {
    const rss: number[] = [];
    const baseline = process.memoryUsage().rss;
    const sampler = setInterval(() => rss.push(process.memoryUsage().rss), 50);
    const started = Date.now();
    try {
      const id = text((await stream("POST", `/${bucket}/big?uploads`)).text, "UploadId")!;
      const etags: string[] = [];
      const parts = [...Array(SIZE / PART).keys()];
      const uploadOne = async (i: number) => {
        async function* body() {
          for (let at = 0; at < PART; at += MiB) yield content(i * PART + at, MiB);
        }
        const up = await stream("PUT", `/${bucket}/big?partNumber=${i + 1}&uploadId=${id}`, { body, length: PART });
        expect(up.status).toBe(200);
        etags[i] = String(up.headers.etag);
      };
      await Promise.all([0, 1, 2, 3].map(async (lane) => {
        for (const i of parts.filter((p) => p % 4 === lane)) await uploadOne(i);
      }));
      const xml = `<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join("")}</CompleteMultipartUpload>`;
      const done = await s3Request(lab.endpoint, lab.caFile, creds, "POST", `/${bucket}/big?uploadId=${id}`, { body: xml });
      expect([done.status, text(done.text, "ETag")]).toEqual([200, expect.stringMatching(/-16"$/)]);
      const uploadedMs = Date.now() - started;

      // Four GETs at once over ranges that start and end inside parts.
      const cuts = [0, 256 * MiB + 12_345, 512 * MiB - 777, 768 * MiB + 1, SIZE];
      const mismatches: string[] = [];
      await Promise.all(cuts.slice(0, -1).map(async (start, i) => {
        const end = cuts[i + 1] - 1;
        let at = start;
        const got = await stream("GET", `/${bucket}/big`, {
          headers: { range: `bytes=${start}-${end}` },
          onData: (chunk) => {
            if (!chunk.equals(content(at, chunk.length))) mismatches.push(`bytes ${at}-${at + chunk.length - 1}`);
            at += chunk.length;
          },
        });
        expect([got.status, got.headers["content-range"], got.size]).toEqual([206, `bytes ${start}-${end}/${SIZE}`, end - start + 1]);
      }));
      expect(mismatches).toEqual([]);
      const growth = Math.max(...rss) - baseline;
      console.log(`lab S3: 1 GiB uploaded in ${uploadedMs} ms, read back in ${Date.now() - started - uploadedMs} ms; RSS growth (server and client in this process) ${(growth / MiB).toFixed(0)} MiB`);
      // Buffering one 64 MiB part per upload in flight would grow RSS by 4 × 64 = 256 MiB; buffering the
      // object, by 1 GiB. Streaming needs only stream buffers and TLS records (26 MiB measured, 2026-12-03,
      // client included): the bound is half of the four buffered parts, with room for a late GC.
      expect(growth).toBeLessThan(128 * MiB);
      expect(lab.store.getObject(bucket, "big").segments).toHaveLength(16);
    } finally {
      clearInterval(sampler);
    }
  }, 180_000);
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

  test("IAM access keys: a second key works at once with the same policy, a third is refused (two per user), a deleted key is refused", async () => {
    const key = `${prod.names.bucketPrefix}/rotation`;
    const put = (keys: { accessKeyId: string; secretAccessKey: string }) =>
      s3Request(lab.endpoint, lab.caFile, { ...keys, region: prod.backups.region }, "PUT", `/${prod.names.bucket}/${key}`, { body: "x" });
    const first = user("example-prod");
    const second = lab.createAccessKey("example-prod");
    expect(second.accessKeyId).not.toBe(first.accessKeyId);
    expect((await put(second)).status).toBe(200);
    const elsewhere = await s3Request(lab.endpoint, lab.caFile, { ...second, region: prod.backups.region }, "PUT", `/${prod.names.bucket}/${staging.names.bucketPrefix}/x`, { body: "x" });
    expect(text(elsewhere.text, "Code")).toBe("AccessDenied");
    expect(() => lab.createAccessKey("example-prod")).toThrow(/LimitExceeded.*AccessKeysPerUser: 2/);
    // The later tests use the first key: retire the second.
    lab.deleteAccessKey("example-prod", second.accessKeyId);
    expect(lab.accessKeys("example-prod").map((k) => k.accessKeyId)).toEqual([first.accessKeyId]);
    const retired = await put(second);
    expect([retired.status, text(retired.text, "Code")]).toEqual([403, "InvalidAccessKeyId"]);
    expect((await put(first)).status).toBe(200);
    expect(() => lab.deleteAccessKey("example-prod", second.accessKeyId)).toThrow(/NoSuchEntity/);
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
