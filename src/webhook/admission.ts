/**
 * admission.k8s.io/v1 AdmissionReview, written from the Kubernetes API reference
 * ("Dynamic Admission Control" and k8s.io/api/admission/v1/types.go). No npm package
 * carries these types: admission.k8s.io is not part of the API server's OpenAPI spec.
 * Only what a mutating webhook reads or writes is typed strictly; objects stay `unknown`.
 */

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
export const ADMISSION_KIND = 'AdmissionReview';

/** metav1.GroupVersionKind */
export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

/** metav1.GroupVersionResource */
export interface GroupVersionResource {
  group: string;
  version: string;
  resource: string;
}

/** authenticationv1.UserInfo */
export interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export type Operation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';

/** admissionv1.AdmissionRequest */
export interface AdmissionRequest {
  /** Identifies this call; the response must echo it. */
  uid: string;
  kind: GroupVersionKind;
  resource: GroupVersionResource;
  subResource?: string;
  requestKind?: GroupVersionKind;
  requestResource?: GroupVersionResource;
  requestSubResource?: string;
  /** May be empty on CREATE when the object uses generateName. */
  name?: string;
  namespace?: string;
  operation: Operation;
  userInfo: UserInfo;
  object?: unknown;
  oldObject?: unknown;
  dryRun?: boolean;
  options?: unknown;
}

/** metav1.Status (the parts an admission response uses). */
export interface Status {
  status?: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  code?: number;
}

/** admissionv1.AdmissionResponse */
export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: Status;
  /** base64 of a JSON Patch (RFC 6902) document; only with patchType. */
  patch?: string;
  patchType?: 'JSONPatch';
  auditAnnotations?: Record<string, string>;
  warnings?: string[];
}

export interface AdmissionReview {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: typeof ADMISSION_KIND;
  request?: AdmissionRequest;
  response?: AdmissionResponse;
}

/** One RFC 6902 operation (the builder emits only `add`). */
export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace' | 'test';
  path: string;
  value?: unknown;
}

/** RFC 6901: "~" → "~0", "/" → "~1". */
export function pointerEscape(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

export class ReviewError extends Error {
  constructor(
    message: string,
    /** The request uid, when it could be read: the error then becomes a proper denial. */
    readonly uid?: string,
  ) {
    super(message);
  }
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const OPERATIONS = new Set(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);

/** Checks the envelope the API server sends; throws ReviewError with what is wrong. */
export function parseAdmissionReview(body: unknown): AdmissionRequest {
  if (!isObj(body)) throw new ReviewError('body is not a JSON object');
  if (body.apiVersion !== ADMISSION_API_VERSION || body.kind !== ADMISSION_KIND)
    throw new ReviewError(
      `expected apiVersion ${ADMISSION_API_VERSION} and kind ${ADMISSION_KIND} (admissionReviewVersions: ["v1"])`,
    );
  const req = body.request;
  if (!isObj(req)) throw new ReviewError('request is missing');
  if (typeof req.uid !== 'string' || req.uid === '') throw new ReviewError('request.uid is missing');
  const uid = req.uid;
  const gvk = req.kind;
  if (!isObj(gvk) || typeof gvk.kind !== 'string' || typeof gvk.version !== 'string')
    throw new ReviewError('request.kind must be {group, version, kind}', uid);
  const gvr = req.resource;
  if (!isObj(gvr) || typeof gvr.resource !== 'string')
    throw new ReviewError('request.resource must be {group, version, resource}', uid);
  if (typeof req.operation !== 'string' || !OPERATIONS.has(req.operation))
    throw new ReviewError('request.operation must be CREATE, UPDATE, DELETE or CONNECT', uid);
  if (req.namespace !== undefined && typeof req.namespace !== 'string')
    throw new ReviewError('request.namespace must be a string', uid);
  if (req.dryRun !== undefined && typeof req.dryRun !== 'boolean')
    throw new ReviewError('request.dryRun must be a boolean', uid);
  return req as unknown as AdmissionRequest;
}

export function reviewResponse(response: AdmissionResponse): AdmissionReview {
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND, response };
}
