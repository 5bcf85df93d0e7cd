/**
 * AWS Signature Version 4 as S3 checks it: the Authorization header, the signed payload hash
 * (x-amz-content-sha256: a hex digest, UNSIGNED-PAYLOAD, or STREAMING-AWS4-HMAC-SHA256-PAYLOAD with
 * aws-chunked bodies whose every chunk is signed). The same functions sign for the lab's own test client,
 * so the real clients (Litestream's aws-sdk-go, curl --aws-sigv4) are what proves the canonical form.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { S3Error } from "./errors.ts";

export const EMPTY_SHA256 = createHash("sha256").update("").digest("hex");
export const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";
export const STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const hmac = (key: Buffer | string, data: string) => createHmac("sha256", key).update(data).digest();

/** RFC 3986 encoding as AWS specifies it: unreserved characters stay, '/' only in paths. */
export function uriEncode(text: string, keepSlash: boolean): string {
  return Array.from(Buffer.from(text, "utf8"))
    .map((byte) => {
      const c = String.fromCharCode(byte);
      if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === "/")) return c;
      return `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    })
    .join("");
}

/** S3 canonicalizes from the decoded path, so clients that encode more or less than AWS still verify. */
export function canonicalUri(rawPath: string): string {
  return rawPath.split("/").map((segment) => uriEncode(decodeURIComponent(segment), false)).join("/") || "/";
}

export function canonicalQuery(rawQuery: string): string {
  if (!rawQuery) return "";
  return rawQuery
    .split("&")
    .filter(Boolean)
    .map((pair) => {
      const eq = pair.indexOf("=");
      const [k, v] = eq < 0 ? [pair, ""] : [pair.slice(0, eq), pair.slice(eq + 1)];
      const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, "%20"));
      return [uriEncode(decode(k), false), uriEncode(decode(v), false)] as const;
    })
    .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

export interface Credential {
  readonly accessKeyId: string;
  readonly date: string; // yyyymmdd
  readonly region: string;
  readonly service: string;
}

export interface ParsedAuthorization {
  readonly credential: Credential;
  readonly signedHeaders: readonly string[];
  readonly signature: string;
}

export function scope(c: Credential): string {
  return `${c.date}/${c.region}/${c.service}/aws4_request`;
}

/** `AWS4-HMAC-SHA256 Credential=AKID/20261202/us-east-1/s3/aws4_request, SignedHeaders=a;b, Signature=hex` */
export function parseAuthorization(header: string): ParsedAuthorization {
  const match = /^AWS4-HMAC-SHA256\s+(.*)$/.exec(header.trim());
  if (!match) throw new S3Error("InvalidArgument", "Unsupported Authorization Type", { ArgumentName: "Authorization", ArgumentValue: header });
  const fields = new Map<string, string>();
  for (const part of match[1].split(",")) {
    const eq = part.indexOf("=");
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const credential = fields.get("Credential")?.split("/");
  const signedHeaders = fields.get("SignedHeaders");
  const signature = fields.get("Signature");
  if (!credential || credential.length !== 5 || credential[4] !== "aws4_request" || !signedHeaders || !signature) {
    throw new S3Error("AuthorizationHeaderMalformed", `The authorization header is malformed; the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".`);
  }
  const [accessKeyId, date, region, service] = credential;
  return { credential: { accessKeyId, date, region, service }, signedHeaders: signedHeaders.split(";"), signature };
}

export function signingKey(secret: string, c: Credential): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, c.date), c.region), c.service), "aws4_request");
}

export interface RequestToSign {
  readonly method: string;
  /** Path and query as sent on the request line. */
  readonly url: string;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly signedHeaders: readonly string[];
  readonly payloadHash: string;
}

export function canonicalRequest(r: RequestToSign): string {
  const q = r.url.indexOf("?");
  const [path, query] = q < 0 ? [r.url, ""] : [r.url.slice(0, q), r.url.slice(q + 1)];
  const headerLines = r.signedHeaders.map((name) => {
    const value = r.headers[name];
    const text = (Array.isArray(value) ? value.join(",") : value ?? "").trim().replace(/\s+/g, " ");
    return `${name}:${text}\n`;
  });
  return [r.method, canonicalUri(path), canonicalQuery(query), headerLines.join(""), r.signedHeaders.join(";"), r.payloadHash].join("\n");
}

export function stringToSign(amzDate: string, c: Credential, canonical: string): string {
  return ["AWS4-HMAC-SHA256", amzDate, scope(c), sha256(canonical)].join("\n");
}

function sameHex(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

export interface Verified {
  readonly accessKeyId: string;
  readonly signature: string;
  readonly key: Buffer;
  readonly credential: Credential;
  readonly amzDate: string;
}

/**
 * Checks a request's header signature against `secret`. Throws SignatureDoesNotMatch with what S3 puts
 * in that error (the string to sign and the canonical request), so a failing client can be debugged.
 */
export function verifyHeaderSignature(r: Omit<RequestToSign, "signedHeaders">, auth: ParsedAuthorization, secret: string): Verified {
  const amzDate = String(r.headers["x-amz-date"] ?? "");
  if (!auth.signedHeaders.includes("host")) throw new S3Error("AccessDenied", "There were headers present in the request which were not signed", { HeadersNotSigned: "host" });
  const canonical = canonicalRequest({ ...r, signedHeaders: auth.signedHeaders });
  const toSign = stringToSign(amzDate, auth.credential, canonical);
  const key = signingKey(secret, auth.credential);
  const expected = hmac(key, toSign).toString("hex");
  if (!sameHex(expected, auth.signature)) {
    throw new S3Error("SignatureDoesNotMatch", undefined, {
      AWSAccessKeyId: auth.credential.accessKeyId,
      StringToSign: toSign,
      SignatureProvided: auth.signature,
      CanonicalRequest: canonical,
    });
  }
  return { accessKeyId: auth.credential.accessKeyId, signature: expected, key, credential: auth.credential, amzDate };
}

/** Signs a request (for the lab's own client): returns the headers to add, Authorization included. */
export function signRequest(
  r: { method: string; url: string; host: string; headers?: Record<string, string>; payloadHash: string },
  creds: { accessKeyId: string; secretAccessKey: string; region: string },
  now = new Date(),
): Record<string, string> {
  const amzDate = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");
  const credential: Credential = { accessKeyId: creds.accessKeyId, date: amzDate.slice(0, 8), region: creds.region, service: "s3" };
  const headers: Record<string, string> = { ...r.headers, host: r.host, "x-amz-date": amzDate, "x-amz-content-sha256": r.payloadHash };
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const signedHeaders = Object.keys(lower).sort();
  const canonical = canonicalRequest({ method: r.method, url: r.url, headers: lower, signedHeaders, payloadHash: r.payloadHash });
  const signature = hmac(signingKey(creds.secretAccessKey, credential), stringToSign(amzDate, credential, canonical)).toString("hex");
  return {
    ...headers,
    authorization: `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope(credential)}, SignedHeaders=${signedHeaders.join(";")}, Signature=${signature}`,
  };
}

/** The signature of one aws-chunked chunk, chained to the previous one (the seed is the header's). */
export function chunkSignature(key: Buffer, amzDate: string, c: Credential, previous: string, data: Buffer): string {
  return hmac(key, ["AWS4-HMAC-SHA256-PAYLOAD", amzDate, scope(c), previous, EMPTY_SHA256, sha256(data)].join("\n")).toString("hex");
}

/** Passes the body through, computing its sha256; at the end it must equal the signed hash. */
export class Sha256Check extends Transform {
  private readonly hash = createHash("sha256");
  private readonly expected: string;
  constructor(expected: string) {
    super();
    this.expected = expected;
  }
  _transform(chunk: Buffer, _: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    done(null, chunk);
  }
  _flush(done: TransformCallback): void {
    const actual = this.hash.digest("hex");
    if (actual !== this.expected) {
      done(new S3Error("XAmzContentSHA256Mismatch", undefined, { ClientComputedContentSHA256: this.expected, S3ComputedContentSHA256: actual }));
    } else done();
  }
}

/**
 * Decodes an aws-chunked body (`<hex size>;chunk-signature=<sig>\r\n<data>\r\n` … `0;chunk-signature=<sig>\r\n\r\n`)
 * and checks each chunk's chained signature, as S3 does for STREAMING-AWS4-HMAC-SHA256-PAYLOAD.
 */
export class AwsChunkedDecoder extends Transform {
  private buffer: Buffer = Buffer.alloc(0);
  private remaining = -1; // bytes of the current chunk's data still to read; -1: expecting a header
  private current: Buffer[] = [];
  private currentSignature = "";
  private previous: string;
  private finished = false;
  private decoded = 0;

  private readonly v: Verified;
  private readonly decodedLength: number;
  constructor(v: Verified, decodedLength: number) {
    super();
    this.v = v;
    this.decodedLength = decodedLength;
    this.previous = v.signature;
  }

  _transform(chunk: Buffer, _: BufferEncoding, done: TransformCallback): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    try {
      this.parse();
      done();
    } catch (error) {
      done(error as Error);
    }
  }

  private parse(): void {
    for (;;) {
      if (this.finished) return;
      if (this.remaining < 0) {
        const eol = this.buffer.indexOf("\r\n");
        if (eol < 0) {
          if (this.buffer.length > 4096) throw new S3Error("InvalidRequest", "Invalid chunk header");
          return;
        }
        const header = /^([0-9a-fA-F]+);chunk-signature=([0-9a-f]{64})$/.exec(this.buffer.subarray(0, eol).toString("latin1"));
        if (!header) throw new S3Error("InvalidRequest", "Invalid chunk header");
        this.remaining = parseInt(header[1], 16);
        this.currentSignature = header[2];
        this.current = [];
        this.buffer = this.buffer.subarray(eol + 2);
      }
      // Data of the chunk, then its CRLF.
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, this.buffer.length);
        if (take === 0) return;
        this.current.push(this.buffer.subarray(0, take));
        this.buffer = this.buffer.subarray(take);
        this.remaining -= take;
        if (this.remaining > 0) return;
      }
      if (this.buffer.length < 2) return;
      if (this.buffer.subarray(0, 2).toString("latin1") !== "\r\n") throw new S3Error("IncompleteBody");
      this.buffer = this.buffer.subarray(2);
      const data = Buffer.concat(this.current);
      const expected = chunkSignature(this.v.key, this.v.amzDate, this.v.credential, this.previous, data);
      if (expected !== this.currentSignature) throw new S3Error("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided for a chunk.");
      this.previous = expected;
      this.remaining = -1;
      if (data.length === 0) {
        this.finished = true;
        return;
      }
      this.decoded += data.length;
      this.push(data);
    }
  }

  _flush(done: TransformCallback): void {
    if (!this.finished || this.decoded !== this.decodedLength) done(new S3Error("IncompleteBody"));
    else done();
  }
}
