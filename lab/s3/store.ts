/**
 * The lab S3's storage: object data in files under a temp dir, streamed in and out (a 1 GiB object never
 * sits in memory), metadata in memory. An object is a list of segment files: a multipart object keeps
 * its parts' files as they are, so completing a 1 GiB upload copies nothing.
 * Versioning follows S3: Enabled keeps every version and deletes add delete markers; Suspended and
 * never-enabled buckets write the version "null".
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { S3Error } from "./errors.ts";

export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PARTS = 10_000;

export interface Segment {
  readonly file: string;
  readonly size: number;
}

export interface ObjectVersion {
  readonly key: string;
  readonly versionId: string; // "null" where versioning was never enabled or is suspended
  readonly deleteMarker: boolean;
  readonly segments: readonly Segment[];
  readonly size: number;
  readonly etag: string; // with its quotes, as S3 sends it
  readonly lastModified: Date;
  readonly contentType: string;
  readonly metadata: Readonly<Record<string, string>>;
}

export interface Part {
  readonly partNumber: number;
  readonly etag: string;
  readonly size: number;
  readonly file: string;
  readonly lastModified: Date;
}

export interface Upload {
  readonly uploadId: string;
  readonly key: string;
  readonly initiated: Date;
  readonly contentType: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly parts: Map<number, Part>;
}

export type Versioning = "Enabled" | "Suspended" | undefined;

export interface Bucket {
  readonly name: string;
  readonly region: string;
  versioning: Versioning;
  /** Versions of each key, oldest first; the last is current. */
  readonly keys: Map<string, ObjectVersion[]>;
  readonly uploads: Map<string, Upload>;
}

export interface ObjectInput {
  readonly contentType?: string;
  readonly metadata?: Record<string, string>;
  /** Content-MD5 header (base64): S3 refuses the body with BadDigest when it differs. */
  readonly contentMd5?: string;
}

export interface ListResult<T> {
  readonly items: T[];
  readonly commonPrefixes: string[];
  readonly truncated: boolean;
  /** The last key or common prefix returned: where the next page starts. */
  readonly last?: string;
  /** The last item returned, when the page did not end on a common prefix. */
  readonly lastItem?: T;
}

const newId = () => randomBytes(24).toString("base64url");

/** Counts bytes and computes MD5 while data streams to disk. */
class Digest extends Transform {
  readonly md5 = createHash("md5");
  size = 0;
  _transform(chunk: Buffer, _: BufferEncoding, done: TransformCallback): void {
    this.md5.update(chunk);
    this.size += chunk.length;
    done(null, chunk);
  }
}

export class Store {
  readonly buckets = new Map<string, Bucket>();
  private readonly dataDir: string;

  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
    this.dataDir = join(dir, "data");
    mkdirSync(this.dataDir, { recursive: true });
  }

  createBucket(name: string, region: string, versioning: Versioning = "Enabled"): Bucket {
    const bucket: Bucket = { name, region, versioning, keys: new Map(), uploads: new Map() };
    this.buckets.set(name, bucket);
    return bucket;
  }

  bucket(name: string): Bucket {
    const bucket = this.buckets.get(name);
    if (!bucket) throw new S3Error("NoSuchBucket", undefined, { BucketName: name });
    return bucket;
  }

  /** Streams `body` into a new file; the file is removed again if the stream fails. */
  private async write(body: Readable, contentMd5?: string): Promise<{ file: string; size: number; md5: Buffer }> {
    const file = join(this.dataDir, newId());
    const digest = new Digest();
    try {
      await pipeline(body, digest, createWriteStream(file));
    } catch (error) {
      rmSync(file, { force: true });
      throw error;
    }
    const md5 = digest.md5.digest();
    if (contentMd5 !== undefined && md5.toString("base64") !== contentMd5) {
      rmSync(file, { force: true });
      throw new S3Error("BadDigest", undefined, { ExpectedDigest: contentMd5, CalculatedDigest: md5.toString("base64") });
    }
    return { file, size: digest.size, md5 };
  }

  private addVersion(bucket: Bucket, version: Omit<ObjectVersion, "versionId">): ObjectVersion {
    const versions = bucket.keys.get(version.key) ?? [];
    const versionId = bucket.versioning === "Enabled" ? newId() : "null";
    if (versionId === "null") {
      // Without versioning the "null" version is overwritten: its data goes.
      const old = versions.findIndex((v) => v.versionId === "null");
      if (old >= 0) this.discard(versions.splice(old, 1)[0]);
    }
    const added = { ...version, versionId };
    versions.push(added);
    bucket.keys.set(version.key, versions);
    return added;
  }

  private discard(version: ObjectVersion): void {
    for (const s of version.segments) rmSync(s.file, { force: true });
  }

  async putObject(bucketName: string, key: string, body: Readable, input: ObjectInput = {}): Promise<ObjectVersion> {
    const bucket = this.bucket(bucketName);
    const { file, size, md5 } = await this.write(body, input.contentMd5);
    return this.addVersion(bucket, {
      key, deleteMarker: false, segments: [{ file, size }], size, etag: `"${md5.toString("hex")}"`, lastModified: new Date(),
      contentType: input.contentType ?? "binary/octet-stream", metadata: input.metadata ?? {},
    });
  }

  /** The current version, or the one asked for. A current delete marker answers like S3: 404 NoSuchKey. */
  getObject(bucketName: string, key: string, versionId?: string): ObjectVersion {
    const versions = this.bucket(bucketName).keys.get(key) ?? [];
    if (versionId !== undefined) {
      const version = versions.find((v) => v.versionId === versionId);
      if (!version) throw new S3Error(versions.length ? "NoSuchVersion" : "NoSuchKey", undefined, { Key: key, VersionId: versionId });
      if (version.deleteMarker) throw new S3Error("MethodNotAllowed", undefined, {}, { "x-amz-delete-marker": "true", "x-amz-version-id": versionId });
      return version;
    }
    const current = versions[versions.length - 1];
    if (!current) throw new S3Error("NoSuchKey", undefined, { Key: key });
    if (current.deleteMarker) throw new S3Error("NoSuchKey", undefined, { Key: key }, { "x-amz-delete-marker": "true", "x-amz-version-id": current.versionId });
    return current;
  }

  /** Bytes [start, end] of a version, read from its segment files as they are needed. */
  read(version: ObjectVersion, start = 0, end = version.size - 1): Readable {
    async function* bytes() {
      let offset = 0;
      for (const segment of version.segments) {
        const from = Math.max(start - offset, 0);
        const to = Math.min(end - offset, segment.size - 1);
        if (from <= to) yield* createReadStream(segment.file, { start: from, end: to });
        offset += segment.size;
      }
    }
    return Readable.from(bytes(), { objectMode: false });
  }

  /**
   * Without a version id: versioned buckets get a delete marker, others lose the "null" version.
   * With one: that version is gone for good (S3's permanent delete).
   */
  deleteObject(bucketName: string, key: string, versionId?: string): { deleteMarker: boolean; versionId?: string } {
    const bucket = this.bucket(bucketName);
    const versions = bucket.keys.get(key) ?? [];
    if (versionId !== undefined) {
      const at = versions.findIndex((v) => v.versionId === versionId);
      if (at < 0) return { deleteMarker: false, versionId };
      const [gone] = versions.splice(at, 1);
      this.discard(gone);
      if (!versions.length) bucket.keys.delete(key);
      return { deleteMarker: gone.deleteMarker, versionId };
    }
    if (bucket.versioning === undefined) {
      for (const v of versions) this.discard(v);
      bucket.keys.delete(key);
      return { deleteMarker: false };
    }
    const marker = this.addVersion(bucket, { key, deleteMarker: true, segments: [], size: 0, etag: "", lastModified: new Date(), contentType: "", metadata: {} });
    return { deleteMarker: true, versionId: bucket.versioning === "Enabled" ? marker.versionId : "null" };
  }

  /** ListObjects (v1 and v2): current versions that are not delete markers, in key order. */
  listObjects(bucketName: string, o: { prefix: string; delimiter: string; after: string; maxKeys: number }): ListResult<ObjectVersion> {
    const bucket = this.bucket(bucketName);
    // A page that ended on a common prefix goes on after every key under it.
    const rolledUp = (k: string) => o.delimiter !== "" && o.after.endsWith(o.delimiter) && k.startsWith(o.after);
    const keys = [...bucket.keys.keys()].filter((k) => k.startsWith(o.prefix) && k > o.after && !rolledUp(k)).sort();
    const current = keys.map((k) => bucket.keys.get(k)!.at(-1)!).filter((v) => !v.deleteMarker);
    return group(current, (v) => v.key, o);
  }

  /** ListObjectVersions: every version and delete marker, by key, newest first within a key. */
  listVersions(bucketName: string, o: { prefix: string; delimiter: string; keyMarker: string; versionIdMarker: string; maxKeys: number }): ListResult<ObjectVersion> {
    const bucket = this.bucket(bucketName);
    const keys = [...bucket.keys.keys()].filter((k) => k.startsWith(o.prefix) && k >= o.keyMarker).sort();
    let all = keys.flatMap((k) => [...bucket.keys.get(k)!].reverse());
    if (o.keyMarker) {
      const marker = o.versionIdMarker ? all.findIndex((v) => v.key === o.keyMarker && v.versionId === o.versionIdMarker) : -1;
      all = marker >= 0 ? all.slice(marker + 1) : all.filter((v) => v.key > o.keyMarker);
    }
    return group(all, (v) => v.key, o);
  }

  createUpload(bucketName: string, key: string, input: ObjectInput = {}): Upload {
    const upload: Upload = { uploadId: newId(), key, initiated: new Date(), contentType: input.contentType ?? "binary/octet-stream", metadata: input.metadata ?? {}, parts: new Map() };
    this.bucket(bucketName).uploads.set(upload.uploadId, upload);
    return upload;
  }

  upload(bucketName: string, key: string, uploadId: string): Upload {
    const upload = this.bucket(bucketName).uploads.get(uploadId);
    if (!upload || upload.key !== key) throw new S3Error("NoSuchUpload", undefined, { UploadId: uploadId });
    return upload;
  }

  async uploadPart(bucketName: string, key: string, uploadId: string, partNumber: number, body: Readable, contentMd5?: string): Promise<Part> {
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) {
      throw new S3Error("InvalidArgument", `Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`, { ArgumentName: "partNumber", ArgumentValue: String(partNumber) });
    }
    const upload = this.upload(bucketName, key, uploadId);
    const { file, size, md5 } = await this.write(body, contentMd5);
    // A part uploaded again under the same number replaces the earlier one.
    const old = upload.parts.get(partNumber);
    if (old) rmSync(old.file, { force: true });
    const part: Part = { partNumber, etag: `"${md5.toString("hex")}"`, size, file, lastModified: new Date() };
    upload.parts.set(partNumber, part);
    return part;
  }

  /**
   * CompleteMultipartUpload with S3's checks, in S3's order: parts ascending (InvalidPartOrder), each
   * uploaded with that ETag (InvalidPart), each but the last at least 5 MiB (EntityTooSmall).
   * The ETag is the MD5 of the parts' binary MD5s, then "-<count>".
   */
  completeUpload(bucketName: string, key: string, uploadId: string, listed: readonly { partNumber: number; etag: string }[]): ObjectVersion {
    const bucket = this.bucket(bucketName);
    const upload = this.upload(bucketName, key, uploadId);
    if (!listed.length) throw new S3Error("MalformedXML");
    const unquote = (etag: string) => etag.replace(/^"|"$/g, "").toLowerCase();
    const parts: Part[] = [];
    for (const [i, p] of listed.entries()) {
      if (i > 0 && p.partNumber <= listed[i - 1].partNumber) throw new S3Error("InvalidPartOrder", undefined, { UploadId: uploadId });
      const part = upload.parts.get(p.partNumber);
      if (!part || unquote(part.etag) !== unquote(p.etag)) throw new S3Error("InvalidPart", undefined, { UploadId: uploadId, PartNumber: String(p.partNumber), ETag: p.etag });
      parts.push(part);
    }
    for (const part of parts.slice(0, -1)) {
      if (part.size < MIN_PART_SIZE) {
        throw new S3Error("EntityTooSmall", undefined, { ProposedSize: String(part.size), MinSizeAllowed: String(MIN_PART_SIZE), PartNumber: String(part.partNumber), ETag: part.etag });
      }
    }
    const md5 = createHash("md5");
    for (const part of parts) md5.update(Buffer.from(unquote(part.etag), "hex"));
    // Parts uploaded but not listed are dropped, as S3 drops them.
    const kept = new Set(parts.map((p) => p.file));
    for (const part of upload.parts.values()) if (!kept.has(part.file)) rmSync(part.file, { force: true });
    bucket.uploads.delete(uploadId);
    return this.addVersion(bucket, {
      key, deleteMarker: false, segments: parts.map((p) => ({ file: p.file, size: p.size })), size: parts.reduce((n, p) => n + p.size, 0),
      etag: `"${md5.digest("hex")}-${parts.length}"`, lastModified: new Date(), contentType: upload.contentType, metadata: upload.metadata,
    });
  }

  abortUpload(bucketName: string, key: string, uploadId: string): void {
    const upload = this.upload(bucketName, key, uploadId);
    for (const part of upload.parts.values()) rmSync(part.file, { force: true });
    this.bucket(bucketName).uploads.delete(uploadId);
  }

  /** Every data file the store holds: a test can see that aborted or replaced data is gone. */
  fileCount(): number {
    let n = 0;
    for (const b of this.buckets.values()) {
      for (const versions of b.keys.values()) for (const v of versions) n += v.segments.length;
      for (const u of b.uploads.values()) n += u.parts.size;
    }
    return n;
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** S3's listing rule: keys under a delimiter after the prefix roll up into one common prefix. */
function group<T>(items: readonly T[], keyOf: (item: T) => string, o: { prefix: string; delimiter: string; maxKeys: number }): ListResult<T> {
  const out: T[] = [];
  const prefixes: string[] = [];
  let last: string | undefined;
  let lastItem: T | undefined;
  let count = 0;
  for (const item of items) {
    const key = keyOf(item);
    const cut = o.delimiter ? key.indexOf(o.delimiter, o.prefix.length) : -1;
    const common = cut >= 0 ? key.slice(0, cut + o.delimiter.length) : undefined;
    if (common !== undefined && prefixes.at(-1) === common) continue;
    if (count === o.maxKeys) return { items: out, commonPrefixes: prefixes, truncated: true, last, lastItem };
    if (common !== undefined) prefixes.push(common);
    else out.push(item);
    last = common ?? key;
    lastItem = common === undefined ? item : undefined;
    count++;
  }
  return { items: out, commonPrefixes: prefixes, truncated: false, last, lastItem };
}
