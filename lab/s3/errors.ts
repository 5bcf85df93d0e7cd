/** S3's error responses: the code, HTTP status and message real S3 uses for each case the lab answers. */

const KNOWN = {
  AccessDenied: [403, "Access Denied"],
  AuthorizationHeaderMalformed: [400, "The authorization header is malformed."],
  BucketNotEmpty: [409, "The bucket you tried to delete is not empty"],
  BadDigest: [400, "The Content-MD5 you specified did not match what we received."],
  EntityTooSmall: [400, "Your proposed upload is smaller than the minimum allowed size"],
  IncompleteBody: [400, "You did not provide the number of bytes specified by the Content-Length HTTP header"],
  InternalError: [500, "We encountered an internal error. Please try again."],
  InvalidAccessKeyId: [403, "The AWS Access Key Id you provided does not exist in our records."],
  InvalidArgument: [400, "Invalid Argument"],
  InvalidBucketName: [400, "The specified bucket is not valid."],
  InvalidPart: [400, "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."],
  InvalidPartNumber: [416, "The requested partnumber is not satisfiable"],
  InvalidPartOrder: [400, "The list of parts was not in ascending order. Parts must be ordered by part number."],
  InvalidRange: [416, "The requested range is not satisfiable"],
  InvalidRequest: [400, "Invalid Request"],
  MalformedXML: [400, "The XML you provided was not well-formed or did not validate against our published schema"],
  MethodNotAllowed: [405, "The specified method is not allowed against this resource."],
  MissingContentLength: [411, "You must provide the Content-Length HTTP header."],
  NoSuchBucket: [404, "The specified bucket does not exist"],
  NoSuchKey: [404, "The specified key does not exist."],
  NoSuchUpload: [404, "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."],
  NoSuchVersion: [404, "The specified version does not exist."],
  NotImplemented: [501, "A header you provided implies functionality that is not implemented"],
  PreconditionFailed: [412, "At least one of the pre-conditions you specified did not hold"],
  RequestTimeTooSkewed: [403, "The difference between the request time and the current time is too large."],
  SignatureDoesNotMatch: [403, "The request signature we calculated does not match the signature you provided. Check your key and signing method."],
  XAmzContentSHA256Mismatch: [400, "The provided 'x-amz-content-sha256' header does not match what was computed."],
} as const;

export type S3ErrorCode = keyof typeof KNOWN;

export class S3Error extends Error {
  readonly status: number;
  /** Extra elements of the <Error> body (AWS adds e.g. <AWSAccessKeyId>, <StringToSign>). */
  readonly details: Readonly<Record<string, string>>;
  /** Response headers S3 sets with this error (a delete marker answers 404 with x-amz-delete-marker). */
  readonly headers: Readonly<Record<string, string>>;

  readonly code: S3ErrorCode;
  constructor(code: S3ErrorCode, message?: string, details: Record<string, string> = {}, headers: Record<string, string> = {}) {
    super(message ?? KNOWN[code][1]);
    this.code = code;
    this.status = KNOWN[code][0];
    this.details = details;
    this.headers = headers;
  }
}

export function xmlEscape(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c]!);
}

export function errorXml(error: S3Error, requestId: string, resource: string): string {
  const extra = Object.entries(error.details).map(([k, v]) => `<${k}>${xmlEscape(v)}</${k}>`).join("");
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${error.code}</Code><Message>${xmlEscape(error.message)}</Message>${extra}` +
    `<Resource>${xmlEscape(resource)}</Resource><RequestId>${requestId}</RequestId><HostId>${Buffer.from(requestId).toString("base64")}</HostId></Error>`;
}
