/**
 * The lab's S3: path-style, HTTPS with a lab CA (and optionally plain HTTP, so a test can show that the
 * bucket policy's aws:SecureTransport deny holds). Each request is authenticated (SigV4), authorized
 * (policy.ts: the stack's own policies, a real evaluator) and only then served from store.ts.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Transform, type Readable } from "node:stream";
import { makeCertificates } from "./ca.ts";
import { errorXml, S3Error } from "./errors.ts";
import { Authorizer, type Decision, type LabUser, type PolicyDocument } from "./policy.ts";
import {
  AwsChunkedDecoder, parseAuthorization, Sha256Check, STREAMING_PAYLOAD, UNSIGNED_PAYLOAD, verifyHeaderSignature, type Verified,
} from "./sigv4.ts";
import { Store, type ObjectVersion, type Versioning } from "./store.ts";
import { all, document, elements, iso, text } from "./xml.ts";

export interface LabBucket {
  readonly name: string;
  readonly region: string;
  /** @default "Enabled" (the kit's buckets are versioned) */
  readonly versioning?: Versioning;
  readonly policy?: PolicyDocument;
}

export interface LabS3Options {
  readonly users: readonly LabUser[];
  readonly buckets: readonly LabBucket[];
  /** Also listen on plain HTTP (aws:SecureTransport = false there). */
  readonly plainHttp?: boolean;
  /** Address to listen on (its certificate names it too). @default "127.0.0.1" */
  readonly host?: string;
  /** More addresses and DNS names for the certificate (besides 127.0.0.1, localhost and `host`). */
  readonly certIps?: readonly string[];
  readonly certNames?: readonly string[];
  /** S3 refuses requests signed more than 15 minutes off its clock. */
  readonly maxSkewMs?: number;
  /**
   * Object downloads share a link of this many bytes per second, as a restore over the internet does
   * (loopback is far faster than any real link; a test of a long restore's progress needs a long restore).
   * @default - no limit
   */
  readonly downloadBytesPerSecond?: number;
}

export interface LabS3 {
  /** https://<host>:<port> */
  readonly endpoint: string;
  /** http://<host>:<port>, with `plainHttp` */
  readonly httpEndpoint?: string;
  /** The lab CA's PEM: SSL_CERT_FILE for Go, --cacert for curl. */
  readonly caFile: string;
  readonly store: Store;
  /** Every authorization decision, in order. */
  readonly decisions: readonly Decision[];
  /**
   * IAM's CreateAccessKey and DeleteAccessKey: a key added is served at once; a deleted key is refused
   * (InvalidAccessKeyId) from then on. Each key is a LabUser of its own (same user name and policies).
   */
  serveAccessKey(key: LabUser): void;
  refuseAccessKey(accessKeyId: string): void;
  /** Requests answered with an error: code, request id, what was asked. */
  readonly errors: readonly { readonly requestId: string; readonly code: string; readonly method: string; readonly url: string }[];
  stop(): Promise<void>;
}

/** A parsed request: who, what, on which bucket and key. */
interface Call {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly requestId: string;
  readonly secure: boolean;
  readonly bucket: string;
  readonly key?: string;
  readonly query: URLSearchParams;
  readonly user?: LabUser;
  readonly verified?: Verified;
}

/** One link for all downloads: each chunk leaves once the link has carried the chunks before it. */
class Link {
  private freeAt = 0;
  private readonly bytesPerSecond: number;
  constructor(bytesPerSecond: number) {
    this.bytesPerSecond = bytesPerSecond;
  }
  stream(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        const now = performance.now();
        this.freeAt = Math.max(this.freeAt, now) + (chunk.length / this.bytesPerSecond) * 1000;
        setTimeout(() => done(null, chunk), this.freeAt - now);
      },
    });
  }
}

export async function startLabS3(options: LabS3Options): Promise<LabS3> {
  const dir = mkdtempSync(join(tmpdir(), "lab-s3-"));
  const host = options.host ?? "127.0.0.1";
  const certs = makeCertificates(dir, ["localhost", ...(options.certNames ?? [])], [...new Set(["127.0.0.1", host, ...(options.certIps ?? [])])]);
  const store = new Store(join(dir, "store"));
  for (const b of options.buckets) store.createBucket(b.name, b.region, "versioning" in b ? b.versioning : "Enabled");
  const authorizer = new Authorizer(new Map(options.buckets.filter((b) => b.policy).map((b) => [b.name, b.policy!])));
  const users = new Map(options.users.map((u) => [u.accessKeyId, u]));
  const errors: { requestId: string; code: string; method: string; url: string }[] = [];
  const maxSkewMs = options.maxSkewMs ?? 15 * 60_000;
  const link = options.downloadBytesPerSecond ? new Link(options.downloadBytesPerSecond) : undefined;

  const handle = (secure: boolean) => (req: IncomingMessage, res: ServerResponse) => {
    // 16 upper-case hex characters, like S3's x-amz-request-id.
    const requestId = randomBytes(8).toString("hex").toUpperCase();
    res.setHeader("x-amz-request-id", requestId);
    res.setHeader("x-amz-id-2", Buffer.from(requestId).toString("base64"));
    res.setHeader("Server", "AmazonS3");
    serve(req, res, requestId, secure).catch((error: unknown) => {
      const s3Error = error instanceof S3Error ? error : new S3Error("InternalError", String((error as Error)?.stack ?? error));
      errors.push({ requestId, code: s3Error.code, method: req.method ?? "", url: req.url ?? "" });
      if (res.headersSent) return void res.destroy();
      for (const [k, v] of Object.entries(s3Error.headers)) res.setHeader(k, v);
      const body = req.method === "HEAD" ? "" : errorXml(s3Error, requestId, (req.url ?? "").split("?")[0]);
      res.writeHead(s3Error.status, { "Content-Type": "application/xml", "Content-Length": Buffer.byteLength(body) });
      res.end(body);
      // A body we stopped reading must not be parsed as the next request.
      if (!req.complete) req.resume();
    });
  };

  async function serve(req: IncomingMessage, res: ServerResponse, requestId: string, secure: boolean): Promise<void> {
    const url = new URL(req.url ?? "/", "http://lab");
    const [bucket, ...rest] = url.pathname.slice(1).split("/");
    const key = rest.length ? decodeURIComponent(rest.join("/")) : undefined;
    if (!bucket) throw new S3Error("MethodNotAllowed", "ListBuckets is not served by the lab");
    if (PRESIGNED_PARAMS.some((p) => url.searchParams.has(p))) {
      throw new S3Error("NotImplemented", "Presigned URLs (query-string authentication) are not served by the lab: sign the Authorization header instead");
    }
    const { user, verified } = authenticate(req);
    const region = store.bucket(decodeURIComponent(bucket)).region;
    if (verified && verified.credential.region !== region) {
      throw new S3Error("AuthorizationHeaderMalformed", `The authorization header is malformed; the region '${verified.credential.region}' is wrong; expecting '${region}'`, { Region: region });
    }
    const call: Call = { req, res, requestId, secure, bucket: decodeURIComponent(bucket), key: key || undefined, query: url.searchParams, user, verified };
    await route(call);
  }

  /** SigV4 from the Authorization header; no header: an anonymous request (the policies decide). */
  function authenticate(req: IncomingMessage): { user?: LabUser; verified?: Verified } {
    const header = req.headers.authorization;
    if (!header) return {};
    const auth = parseAuthorization(header);
    const user = users.get(auth.credential.accessKeyId);
    if (!user) throw new S3Error("InvalidAccessKeyId", undefined, { AWSAccessKeyId: auth.credential.accessKeyId });
    const payloadHash = req.headers["x-amz-content-sha256"];
    if (typeof payloadHash !== "string") throw new S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
    if (payloadHash.startsWith("STREAMING-") && payloadHash !== STREAMING_PAYLOAD) {
      throw new S3Error("NotImplemented", `x-amz-content-sha256 ${payloadHash} (trailing checksums, ECDSA or unsigned streaming) is not served by the lab; it takes ${STREAMING_PAYLOAD}, UNSIGNED-PAYLOAD or a sha256`);
    }
    if (!/^[0-9a-f]{64}$/.test(payloadHash) && payloadHash !== UNSIGNED_PAYLOAD && payloadHash !== STREAMING_PAYLOAD) {
      throw new S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, or a valid sha256 value.", { ArgumentName: "x-amz-content-sha256", ArgumentValue: payloadHash });
    }
    const amzDate = String(req.headers["x-amz-date"] ?? "");
    const when = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
    if (!when) throw new S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header");
    const time = Date.UTC(+when[1], +when[2] - 1, +when[3], +when[4], +when[5], +when[6]);
    if (Math.abs(Date.now() - time) > maxSkewMs) throw new S3Error("RequestTimeTooSkewed", undefined, { RequestTime: amzDate, ServerTime: new Date().toISOString() });
    if (auth.credential.date !== amzDate.slice(0, 8)) throw new S3Error("AuthorizationHeaderMalformed", `The authorization header is malformed; Invalid credential date "${auth.credential.date}". This date is not the same as X-Amz-Date: "${amzDate.slice(0, 8)}".`);
    if (auth.credential.service !== "s3") throw new S3Error("AuthorizationHeaderMalformed", `The authorization header is malformed; incorrect service "${auth.credential.service}". This endpoint belongs to "s3".`);
    const verified = verifyHeaderSignature({ method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers, payloadHash }, auth, user.secretAccessKey);
    return { user, verified };
  }

  /** The request body, checked against what was signed: a digest, aws-chunked signatures, or unsigned. */
  function body(call: Call): Readable {
    const payloadHash = call.req.headers["x-amz-content-sha256"];
    if (call.verified && payloadHash === STREAMING_PAYLOAD) {
      const decoded = Number(call.req.headers["x-amz-decoded-content-length"]);
      if (!Number.isSafeInteger(decoded)) throw new S3Error("MissingContentLength", "You must provide the x-amz-decoded-content-length header.");
      return call.req.pipe(new AwsChunkedDecoder(call.verified, decoded));
    }
    if (call.req.headers["content-length"] === undefined && call.req.headers["transfer-encoding"] !== undefined) throw new S3Error("MissingContentLength");
    if (call.verified && typeof payloadHash === "string" && payloadHash !== UNSIGNED_PAYLOAD) return call.req.pipe(new Sha256Check(payloadHash));
    return call.req.pipe(new PassThrough());
  }

  async function smallBody(call: Call): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body(call)) {
      size += (chunk as Buffer).length;
      if (size > 2 * 1024 * 1024) throw new S3Error("MalformedXML");
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks).toString("utf8");
  }

  /** Authorizes `action` on the bucket or `key`; a deny is S3's 403 AccessDenied (and is in the log). */
  async function authorize(call: Call, action: string, key: string | undefined, extra: Record<string, string> = {}): Promise<Decision> {
    const context: Record<string, string> = {
      "aws:SecureTransport": String(call.secure),
      "aws:SourceIp": call.req.socket.remoteAddress?.replace(/^::ffff:/, "") ?? "127.0.0.1",
      "aws:CurrentTime": new Date().toISOString(),
      "aws:EpochTime": String(Math.floor(Date.now() / 1000)),
      ...(call.req.headers["user-agent"] ? { "aws:UserAgent": call.req.headers["user-agent"] } : {}),
      ...(call.verified ? { "s3:authType": "REST-HEADER", "s3:signatureversion": "AWS4-HMAC-SHA256", "s3:x-amz-content-sha256": String(call.req.headers["x-amz-content-sha256"]) } : {}),
      ...extra,
    };
    return authorizer.authorize({ requestId: call.requestId, user: call.user, action, bucket: call.bucket, key, context });
  }

  async function require(call: Call, action: string, key: string | undefined, extra: Record<string, string> = {}): Promise<void> {
    const decision = await authorize(call, action, key, extra);
    if (decision.result !== "Allowed") throw new S3Error("AccessDenied");
  }

  function send(call: Call, status: number, xml?: string, headers: Record<string, string | number> = {}): void {
    const payload = xml ?? "";
    call.res.writeHead(status, { ...(xml !== undefined ? { "Content-Type": "application/xml" } : {}), "Content-Length": Buffer.byteLength(payload), ...headers });
    call.res.end(call.req.method === "HEAD" ? undefined : payload);
  }

  const versionHeader = (call: Call, v: { versionId: string }): Record<string, string> =>
    store.bucket(call.bucket).versioning ? { "x-amz-version-id": v.versionId } : {};

  async function route(call: Call): Promise<void> {
    const { req, query, key } = call;
    const method = req.method ?? "GET";
    const has = (name: string) => query.has(name);
    refuseUnserved(call, method);
    /** The query names no parameter but these (and x-id, which AWS SDKs add for their own logs). */
    const only = (...names: string[]) => [...query.keys()].every((k) => k === "x-id" || names.includes(k) || (names.includes("response-*") && k.startsWith("response-")));
    if (key === undefined) {
      if (method === "GET" && has("location")) return getLocation(call);
      if (method === "GET" && has("versioning")) return getVersioning(call);
      if (method === "PUT" && has("versioning")) return putVersioning(call);
      if (method === "GET" && has("versions")) return listVersions(call);
      if (method === "GET" && [...query.keys()].every((k) => LIST_PARAMS.has(k))) return listObjects(call);
      if (method === "HEAD" && [...query.keys()].length === 0) return require(call, "s3:ListBucket", undefined).then(() => send(call, 200, undefined, { "x-amz-bucket-region": store.bucket(call.bucket).region }));
      if (method === "POST" && has("delete")) return deleteObjects(call);
      if (method === "DELETE" && [...query.keys()].length === 0) return deleteBucket(call);
    } else {
      if (method === "PUT" && has("uploadId") && has("partNumber") && only("uploadId", "partNumber")) return uploadPart(call, key);
      if (method === "PUT" && only()) return putObject(call, key);
      if ((method === "GET" || method === "HEAD") && only("versionId", "partNumber", "response-*")) return getObject(call, key);
      if (method === "GET" && has("uploadId") && only("uploadId", "max-parts", "part-number-marker")) return listParts(call, key);
      if (method === "POST" && has("uploads") && only("uploads")) return createUpload(call, key);
      if (method === "POST" && has("uploadId") && only("uploadId")) return completeUpload(call, key);
      if (method === "DELETE" && has("uploadId") && only("uploadId")) return abortUpload(call, key);
      if (method === "DELETE" && only("versionId")) return deleteObject(call, key);
    }
    const subresource = [...query.keys()].find((k) => k !== "x-id" && !SERVED_PARAMS.has(k) && !k.startsWith("response-"));
    throw new S3Error("NotImplemented", subresource === undefined ? `${method} ${req.url} is not served by the lab` : `The ?${subresource} subresource is not served by the lab (${method} ${req.url})`);
  }

  /**
   * Headers that ask for something the lab does not do: answered 501 NotImplemented naming the header,
   * never served as something else (a copy stored as an empty object, a conditional write as a plain one).
   */
  function refuseUnserved(call: Call, method: string): void {
    const h = call.req.headers;
    for (const name of Object.keys(h)) {
      const feature = UNSERVED_HEADERS.find(([pattern]) => pattern.test(name))?.[1];
      if (feature) throw new S3Error("NotImplemented", `${feature} (header ${name}) is not served by the lab`);
    }
    const sse = h["x-amz-server-side-encryption"];
    if (sse !== undefined && sse !== "AES256") throw new S3Error("NotImplemented", `x-amz-server-side-encryption: ${sse} is not served by the lab (the buckets use SSE-S3, AES256)`);
    const storageClass = h["x-amz-storage-class"];
    if (storageClass !== undefined && storageClass !== "STANDARD") throw new S3Error("NotImplemented", `x-amz-storage-class: ${storageClass} is not served by the lab (STANDARD only)`);
    if ((method === "PUT" || method === "POST") && (h["if-match"] !== undefined || h["if-none-match"] !== undefined)) {
      throw new S3Error("NotImplemented", `Conditional writes (header ${h["if-match"] !== undefined ? "If-Match" : "If-None-Match"} on ${method}) are not served by the lab`);
    }
  }

  async function getLocation(call: Call) {
    await require(call, "s3:GetBucketLocation", undefined);
    const region = store.bucket(call.bucket).region;
    // us-east-1 is an empty LocationConstraint, as S3 answers.
    send(call, 200, `<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${region === "us-east-1" ? "" : region}</LocationConstraint>`);
  }

  async function getVersioning(call: Call) {
    await require(call, "s3:GetBucketVersioning", undefined);
    send(call, 200, document("VersioningConfiguration", { Status: store.bucket(call.bucket).versioning }));
  }

  async function putVersioning(call: Call) {
    await require(call, "s3:PutBucketVersioning", undefined);
    const status = text(await smallBody(call), "Status");
    if (status !== "Enabled" && status !== "Suspended") throw new S3Error("MalformedXML");
    store.bucket(call.bucket).versioning = status;
    send(call, 200);
  }

  function listInput(call: Call) {
    const q = call.query;
    const maxKeys = q.has("max-keys") ? Number(q.get("max-keys")) : 1000;
    if (!Number.isInteger(maxKeys) || maxKeys < 0) throw new S3Error("InvalidArgument", "Provided max-keys not an integer or within integer range", { ArgumentName: "max-keys", ArgumentValue: String(q.get("max-keys")) });
    const encodingType = q.get("encoding-type") ?? undefined;
    if (encodingType !== undefined && encodingType !== "url") throw new S3Error("InvalidArgument", "Invalid Encoding Method specified in Request", { ArgumentName: "encoding-type", ArgumentValue: encodingType });
    const prefix = q.get("prefix") ?? "";
    const delimiter = q.get("delimiter") ?? "";
    // Condition keys exist only when the request carries the parameter: a ListBucket without a prefix
    // does not match `StringLike s3:prefix`, which is how the kit's policy confines listing.
    const context: Record<string, string> = {};
    if (q.has("prefix")) context["s3:prefix"] = prefix;
    if (q.has("delimiter")) context["s3:delimiter"] = delimiter;
    if (q.has("max-keys")) context["s3:max-keys"] = String(maxKeys);
    const enc = (s: string) => (encodingType === "url" ? encodeURIComponent(s).replace(/%2F/g, "/") : s);
    return { prefix, delimiter, maxKeys: Math.min(maxKeys, 1000), context, encodingType, enc };
  }

  const contents = (v: ObjectVersion, enc: (s: string) => string) => ({
    Key: enc(v.key), LastModified: iso(v.lastModified), ETag: v.etag, Size: v.size, StorageClass: "STANDARD",
  });

  async function listObjects(call: Call) {
    const q = call.query;
    const i = listInput(call);
    await require(call, "s3:ListBucket", undefined, i.context);
    const v2 = q.get("list-type") === "2";
    let after = q.get(v2 ? "start-after" : "marker") ?? "";
    const token = q.get("continuation-token");
    if (v2 && token !== null) {
      after = Buffer.from(token, "base64url").toString("utf8");
      if (Buffer.from(after, "utf8").toString("base64url") !== token) throw new S3Error("InvalidArgument", "The continuation token provided is incorrect", { ArgumentName: "continuation-token" });
    }
    const page = store.listObjects(call.bucket, { prefix: i.prefix, delimiter: i.delimiter, after, maxKeys: i.maxKeys });
    const common = {
      Name: call.bucket, Prefix: i.enc(i.prefix), Delimiter: i.delimiter ? i.enc(i.delimiter) : undefined, MaxKeys: i.maxKeys, EncodingType: i.encodingType,
    };
    const listed = { Contents: page.items.map((v) => contents(v, i.enc)), CommonPrefixes: page.commonPrefixes.map((p) => ({ Prefix: i.enc(p) })) };
    if (v2) {
      send(call, 200, document("ListBucketResult", {
        ...common, KeyCount: page.items.length + page.commonPrefixes.length, IsTruncated: page.truncated,
        ContinuationToken: token ?? undefined, NextContinuationToken: page.truncated ? Buffer.from(page.last!, "utf8").toString("base64url") : undefined,
        StartAfter: q.has("start-after") ? i.enc(q.get("start-after")!) : undefined, ...listed,
      }));
    } else {
      // v1 sends NextMarker only with a delimiter; clients otherwise go on from the last key.
      send(call, 200, document("ListBucketResult", {
        ...common, Marker: i.enc(after), IsTruncated: page.truncated, NextMarker: page.truncated && i.delimiter ? i.enc(page.last!) : undefined, ...listed,
      }));
    }
  }

  async function listVersions(call: Call) {
    const q = call.query;
    const i = listInput(call);
    await require(call, "s3:ListBucketVersions", undefined, i.context);
    const keyMarker = q.get("key-marker") ?? "";
    const versionIdMarker = q.get("version-id-marker") ?? "";
    const page = store.listVersions(call.bucket, { prefix: i.prefix, delimiter: i.delimiter, keyMarker, versionIdMarker, maxKeys: i.maxKeys });
    const bucket = store.bucket(call.bucket);
    const isLatest = (v: ObjectVersion) => bucket.keys.get(v.key)?.at(-1) === v;
    // S3 lists versions and delete markers interleaved, in key order, newest first within a key.
    const entries = page.items.map((v) => v.deleteMarker
      ? `<DeleteMarker>${elements({ Key: i.enc(v.key), VersionId: v.versionId, IsLatest: isLatest(v), LastModified: iso(v.lastModified) })}</DeleteMarker>`
      : `<Version>${elements({ ...contents(v, i.enc), VersionId: v.versionId, IsLatest: isLatest(v) })}</Version>`);
    const head = document("ListVersionsResult", {
      Name: call.bucket, Prefix: i.enc(i.prefix), KeyMarker: i.enc(keyMarker), VersionIdMarker: versionIdMarker, MaxKeys: i.maxKeys,
      Delimiter: i.delimiter ? i.enc(i.delimiter) : undefined, EncodingType: i.encodingType, IsTruncated: page.truncated,
      NextKeyMarker: page.truncated ? i.enc(page.last!) : undefined, NextVersionIdMarker: page.truncated ? page.lastItem?.versionId : undefined,
    });
    const prefixes = page.commonPrefixes.map((p) => `<CommonPrefixes><Prefix>${i.enc(p)}</Prefix></CommonPrefixes>`).join("");
    send(call, 200, head.replace(/<\/ListVersionsResult>$/, `${entries.join("")}${prefixes}</ListVersionsResult>`));
  }

  function objectInput(call: Call) {
    const h = call.req.headers;
    const metadata = Object.fromEntries(Object.entries(h).filter(([k]) => k.startsWith("x-amz-meta-")).map(([k, v]) => [k, String(v)]));
    return { contentType: h["content-type"], metadata, contentMd5: typeof h["content-md5"] === "string" ? h["content-md5"] : undefined };
  }

  async function putObject(call: Call, key: string) {
    await require(call, "s3:PutObject", key);
    const version = await store.putObject(call.bucket, key, body(call), objectInput(call));
    send(call, 200, undefined, { ETag: version.etag, ...versionHeader(call, version) });
  }

  async function getObject(call: Call, key: string) {
    const q = call.query;
    const versionId = q.get("versionId") ?? undefined;
    await require(call, versionId === undefined ? "s3:GetObject" : "s3:GetObjectVersion", key);
    const v = store.getObject(call.bucket, key, versionId);
    const validators = { ETag: v.etag, "Last-Modified": v.lastModified.toUTCString() };
    const precondition = checkPreconditions(call.req.headers, v);
    if (precondition === 304) return void call.res.writeHead(304, validators).end();
    const headers: Record<string, string | number> = {
      "Content-Type": v.contentType, ...validators, "Accept-Ranges": "bytes", ...versionHeader(call, v), ...v.metadata,
    };
    for (const [param, value] of q) {
      if (!param.startsWith("response-")) continue;
      const header = RESPONSE_OVERRIDES[param];
      if (!header) throw new S3Error("InvalidArgument", `${param} is not a response header override`, { ArgumentName: param, ArgumentValue: value });
      if (!call.verified) throw new S3Error("InvalidRequest", "Request specific response headers cannot be used for anonymous GET requests.");
      headers[header] = value;
    }
    let range = parseRange(call.req.headers.range, v.size);
    if (q.has("partNumber")) {
      if (call.req.headers.range !== undefined) throw new S3Error("InvalidRequest", "Cannot specify both Range header and partNumber query parameter");
      range = partRange(v, q.get("partNumber")!);
      // S3 counts parts only for an object that was uploaded in parts.
      if (/-\d+"$/.test(v.etag)) headers["x-amz-mp-parts-count"] = v.segments.length;
    }
    if (range) {
      headers["Content-Range"] = `bytes ${range.start}-${range.end}/${v.size}`;
      headers["Content-Length"] = range.end - range.start + 1;
    } else headers["Content-Length"] = v.size;
    call.res.writeHead(range ? 206 : 200, headers);
    if (call.req.method === "HEAD" || v.size === 0) return void call.res.end();
    const stream = store.read(v, range?.start, range?.end);
    (link ? stream.pipe(link.stream()) : stream).pipe(call.res);
    await new Promise<void>((resolve) => call.res.once("close", resolve));
  }

  async function deleteObject(call: Call, key: string) {
    const versionId = call.query.get("versionId") ?? undefined;
    await require(call, versionId === undefined ? "s3:DeleteObject" : "s3:DeleteObjectVersion", key);
    const gone = store.deleteObject(call.bucket, key, versionId);
    send(call, 204, undefined, { ...(gone.deleteMarker ? { "x-amz-delete-marker": "true" } : {}), ...(gone.versionId ? { "x-amz-version-id": gone.versionId } : {}) });
  }

  /** DeleteObjects: authorized key by key as s3:DeleteObject, as S3 does; refusals are per-key errors. */
  async function deleteObjects(call: Call) {
    // S3 also takes an x-amz-checksum-* header instead; the lab refuses those (refuseUnserved).
    if (call.req.headers["content-md5"] === undefined) {
      throw new S3Error("InvalidRequest", "Missing required header for this request: Content-Md5");
    }
    const xml = await smallBody(call);
    const md5 = call.req.headers["content-md5"];
    if (md5 !== undefined && createHash("md5").update(xml).digest("base64") !== md5) throw new S3Error("BadDigest");
    const quiet = text(xml, "Quiet") === "true";
    const out: string[] = [];
    for (const object of all(xml, "Object")) {
      const key = text(object, "Key") ?? "";
      const versionId = text(object, "VersionId");
      const decision = await authorize(call, versionId === undefined ? "s3:DeleteObject" : "s3:DeleteObjectVersion", key);
      if (decision.result !== "Allowed") {
        out.push(`<Error>${elements({ Key: key, VersionId: versionId, Code: "AccessDenied", Message: "Access Denied" })}</Error>`);
        continue;
      }
      const gone = store.deleteObject(call.bucket, key, versionId);
      if (!quiet) {
        out.push(`<Deleted>${elements({ Key: key, VersionId: versionId, DeleteMarker: gone.deleteMarker || undefined, DeleteMarkerVersionId: versionId === undefined && gone.deleteMarker ? gone.versionId : undefined })}</Deleted>`);
      }
    }
    send(call, 200, document("DeleteResult", {}).replace(/<\/DeleteResult>$/, `${out.join("")}</DeleteResult>`));
  }

  async function deleteBucket(call: Call) {
    await require(call, "s3:DeleteBucket", undefined);
    const bucket = store.bucket(call.bucket);
    if (bucket.keys.size || bucket.uploads.size) throw new S3Error("BucketNotEmpty", undefined, { BucketName: call.bucket });
    store.buckets.delete(call.bucket);
    send(call, 204);
  }

  // Multipart: S3 authorizes Create, UploadPart and Complete as s3:PutObject.
  async function createUpload(call: Call, key: string) {
    await require(call, "s3:PutObject", key);
    const upload = store.createUpload(call.bucket, key, objectInput(call));
    send(call, 200, document("InitiateMultipartUploadResult", { Bucket: call.bucket, Key: key, UploadId: upload.uploadId }));
  }

  async function uploadPart(call: Call, key: string) {
    await require(call, "s3:PutObject", key);
    const part = await store.uploadPart(call.bucket, key, call.query.get("uploadId")!, Number(call.query.get("partNumber")), body(call), objectInput(call).contentMd5);
    send(call, 200, undefined, { ETag: part.etag });
  }

  async function completeUpload(call: Call, key: string) {
    await require(call, "s3:PutObject", key);
    const xml = await smallBody(call);
    const parts = all(xml, "Part").map((p) => ({ partNumber: Number(text(p, "PartNumber")), etag: text(p, "ETag") ?? "" }));
    const version = store.completeUpload(call.bucket, key, call.query.get("uploadId")!, parts);
    const host = call.req.headers.host ?? "localhost";
    send(call, 200, document("CompleteMultipartUploadResult", {
      Location: `${call.secure ? "https" : "http"}://${host}/${call.bucket}/${key}`, Bucket: call.bucket, Key: key, ETag: version.etag,
    }), versionHeader(call, version));
  }

  async function abortUpload(call: Call, key: string) {
    await require(call, "s3:AbortMultipartUpload", key);
    store.abortUpload(call.bucket, key, call.query.get("uploadId")!);
    send(call, 204);
  }

  async function listParts(call: Call, key: string) {
    await require(call, "s3:ListMultipartUploadParts", key);
    const upload = store.upload(call.bucket, key, call.query.get("uploadId")!);
    const marker = Number(call.query.get("part-number-marker") ?? 0);
    const maxParts = Math.min(Number(call.query.get("max-parts") ?? 1000), 1000);
    const after = [...upload.parts.values()].filter((p) => p.partNumber > marker).sort((a, b) => a.partNumber - b.partNumber);
    const page = after.slice(0, maxParts);
    send(call, 200, document("ListPartsResult", {
      Bucket: call.bucket, Key: key, UploadId: upload.uploadId, PartNumberMarker: marker, NextPartNumberMarker: page.at(-1)?.partNumber ?? marker,
      MaxParts: maxParts, IsTruncated: after.length > page.length, StorageClass: "STANDARD",
      Part: page.map((p) => ({ PartNumber: p.partNumber, LastModified: iso(p.lastModified), ETag: p.etag, Size: p.size })),
    }));
  }

  const tls = createHttpsServer({ key: certs.key, cert: certs.cert }, handle(true));
  const servers: Server[] = [tls];
  const endpoint = `https://${host}:${await listen(tls, host)}`;
  let httpEndpoint: string | undefined;
  if (options.plainHttp) {
    const plain = createHttpServer(handle(false));
    servers.push(plain);
    httpEndpoint = `http://${host}:${await listen(plain, host)}`;
  }
  return {
    endpoint,
    httpEndpoint,
    caFile: certs.caFile,
    store,
    decisions: authorizer.log,
    errors,
    serveAccessKey: (key) => void users.set(key.accessKeyId, key),
    refuseAccessKey: (accessKeyId) => void users.delete(accessKeyId),
    async stop() {
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      })));
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const LIST_PARAMS = new Set(["list-type", "prefix", "delimiter", "max-keys", "marker", "continuation-token", "start-after", "encoding-type", "fetch-owner"]);
/** Every query parameter some served operation reads; any other is a subresource the lab does not serve. */
const SERVED_PARAMS = new Set([
  ...LIST_PARAMS, "location", "versioning", "versions", "key-marker", "version-id-marker", "delete",
  "versionId", "partNumber", "uploadId", "uploads", "max-parts", "part-number-marker",
]);
/** SigV4 (X-Amz-*) and SigV2 (Signature, AWSAccessKeyId) query-string authentication. */
const PRESIGNED_PARAMS = ["X-Amz-Signature", "X-Amz-Credential", "X-Amz-Algorithm", "Signature", "AWSAccessKeyId"];
/** Request headers for features the lab does not have, with the feature's name. */
const UNSERVED_HEADERS: readonly (readonly [RegExp, string])[] = [
  [/^x-amz-copy-source/, "CopyObject / UploadPartCopy"],
  [/^x-amz-server-side-encryption-customer-/, "SSE-C (customer-provided keys)"],
  [/^x-amz-server-side-encryption-aws-kms-key-id$|^x-amz-server-side-encryption-context$/, "SSE-KMS"],
  // x-amz-checksum-mode (asking to be sent stored checksums) is fine: the lab stores none, as S3 stores
  // none for objects uploaded without them. A checksum sent with data would go unchecked: refused.
  [/^x-amz-checksum-(?!mode$)|^x-amz-sdk-checksum-algorithm$|^x-amz-trailer$/, "Additional checksums (CRC32, CRC32C, SHA1, SHA256)"],
  [/^x-amz-acl$|^x-amz-grant-/, "ACLs (the kit's buckets enforce bucket-owner ownership)"],
  [/^x-amz-tagging/, "Object tagging"],
  [/^x-amz-object-lock-/, "Object Lock"],
  [/^x-amz-website-redirect-location$/, "Website redirects"],
  [/^x-amz-request-payer$/, "Requester pays"],
];
/** GetObject's response-* query parameters and the header each one sets. */
const RESPONSE_OVERRIDES: Readonly<Record<string, string>> = {
  "response-content-type": "Content-Type",
  "response-content-language": "Content-Language",
  "response-expires": "Expires",
  "response-cache-control": "Cache-Control",
  "response-content-disposition": "Content-Disposition",
  "response-content-encoding": "Content-Encoding",
};

function listen(server: Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve((server.address() as AddressInfo).port));
  });
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-n`; anything else is ignored and the whole object served, as S3 does. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  let start: number;
  let end: number;
  if (m[1] === "") {
    start = Math.max(size - Number(m[2]), 0);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) {
    throw new S3Error("InvalidRange", undefined, { RangeRequested: header!, ActualObjectSize: String(size) }, { "Content-Range": `bytes */${size}` });
  }
  return { start, end };
}


/**
 * GetObject's conditional headers as S3 evaluates them: If-Match before If-Unmodified-Since (a matching
 * If-Match wins), If-None-Match before If-Modified-Since; a failed If-Match is 412, a matching
 * If-None-Match 304. Dates compare at whole seconds, as HTTP dates carry them.
 */
function checkPreconditions(h: IncomingMessage["headers"], v: ObjectVersion): 200 | 304 {
  const matches = (list: string) => list.split(",").map((t) => t.trim()).some((t) => t === "*" || t === v.etag || `"${t}"` === v.etag);
  const modifiedSince = (date: string) => Math.floor(v.lastModified.getTime() / 1000) > Math.floor(Date.parse(date) / 1000);
  const validDate = (date: string | undefined): date is string => date !== undefined && !Number.isNaN(Date.parse(date));
  const failed = (condition: string) => new S3Error("PreconditionFailed", undefined, { Condition: condition });
  if (h["if-match"] !== undefined) {
    if (!matches(h["if-match"])) throw failed("If-Match");
  } else if (validDate(h["if-unmodified-since"]) && modifiedSince(h["if-unmodified-since"])) throw failed("If-Unmodified-Since");
  if (h["if-none-match"] !== undefined) {
    if (matches(h["if-none-match"])) return 304;
  } else if (validDate(h["if-modified-since"]) && !modifiedSince(h["if-modified-since"])) return 304;
  return 200;
}

/** `?partNumber=N`: the bytes of part N of a multipart object; an object uploaded whole has only part 1. */
function partRange(v: ObjectVersion, value: string): { start: number; end: number } {
  const n = Number(value);
  const parts = /-\d+"$/.test(v.etag) ? v.segments : [{ size: v.size }];
  if (!Number.isInteger(n) || n < 1 || n > 10_000) {
    throw new S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive", { ArgumentName: "partNumber", ArgumentValue: value });
  }
  if (n > parts.length) throw new S3Error("InvalidPartNumber", undefined, { PartNumberRequested: value, ActualPartCount: String(parts.length) });
  const start = parts.slice(0, n - 1).reduce((sum, p) => sum + p.size, 0);
  return { start, end: start + parts[n - 1].size - 1 };
}
