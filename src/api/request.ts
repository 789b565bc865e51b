// What the api reads from a request, by the contract's v1.1 input rules (CONTRACT.md "HTTP API"):
// JSON bodies only, read only by endpoints that take one; URLs percent-decoded exactly once and
// refused if the encoding is not valid UTF-8; integer query parameters plain decimal digits, each
// given at most once; every client string valid Unicode (src/shared/text.ts).
import { t } from "elysia";
import { AppError, badRequest } from "../shared/errors.ts";
import { LIMITS } from "../shared/protocol.ts";
import { illFormedMessage, illFormedPath } from "../shared/text.ts";
import { MAX_DEPTH, depthOver } from "../shared/wire-codec.ts";

/**
 * A JSON response with status (`application/json;charset=utf-8`, as error responses from
 * src/shared/errors.ts); null is an empty body (204) without a content type.
 */
export const json = (status: number, body: unknown) => (body === null ? new Response(null, { status }) : Response.json(body, { status }));

/**
 * A string field of a request body's schema. Elysia 1.4's default validation message interpolates
 * the value it found (`${value}`), which throws a TypeError for an object whose toString or
 * valueOf is not a function (`{"body":{"toString":true}}`): that escaped as a 500. A custom error
 * skips that message (app.ts answers a VALIDATION failure with shapeMessage, which never holds
 * the value).
 * openapi.ts leaves the "error" keyword out of the document (OpenAPI has no such keyword).
 */
export const BodyString = (options: { description?: string } = {}) => t.String({ ...options, error: "expected a string" });

/**
 * The BAD_REQUEST message for a request that fails its endpoint's schema (an Elysia VALIDATION
 * error): which part and field, and TypeBox's rule, e.g. "request does not match the expected
 * shape: body.seq: Expected number". `part` is the error's type ("body", "query", "params"),
 * `first` its first TypeBox ValueError (JSON-pointer path, fixed message that never holds the
 * value). The path is cut to 80 characters (Elysia drops properties a schema does not name, so
 * it holds only schema names and indices; the cut bounds it all the same).
 */
export function shapeMessage(part: unknown, first: { path?: unknown; message?: unknown } | undefined): string {
  const base = "request does not match the expected shape";
  if (typeof part !== "string" || !first) return base;
  const path = typeof first.path === "string" ? first.path.split("/").slice(1).map((k) => k.replace(/~1/g, "/").replace(/~0/g, "~")) : [];
  const where = [part, ...path].join(".").slice(0, 80);
  return typeof first.message === "string" ? `${base}: ${where}: ${first.message}` : `${base}: ${where}`;
}

/** Methods whose endpoints take a request body; on any other method a body is never read. */
const BODY_METHODS = new Set(["POST", "PUT", "PATCH"]);

/** `application/json`, optionally with parameters (`; charset=utf-8`). */
const JSON_TYPE = /^application\/json\s*(;|$)/i;

/** Set as the body of a request whose endpoint takes none: nothing was read. */
export const NO_BODY = Object.freeze({});

/**
 * The request body for the route's schema: NO_BODY (unread) on GET, DELETE and other methods
 * without a body; otherwise the JSON object in it. Errors: 400 BAD_REQUEST if the content type is
 * not application/json, the text is not JSON, the value is not an object or nests deeper than
 * MAX_DEPTH (32 levels, the WebSocket frames' rule), or a string in it (keys included) has a lone
 * surrogate; 413 PAYLOAD_TOO_LARGE above LIMITS.maxHttpBody bytes (a body with a larger
 * Content-Length is refused before this, see app.ts onRequest).
 */
export async function readBody(request: Request): Promise<object> {
  if (!BODY_METHODS.has(request.method)) return NO_BODY;
  const type = request.headers.get("content-type") ?? "";
  if (!JSON_TYPE.test(type)) throw badRequest("request body must be JSON (Content-Type: application/json)");
  const bytes = await request.arrayBuffer();
  if (bytes.byteLength > LIMITS.maxHttpBody) throw new AppError("PAYLOAD_TOO_LARGE", `request body over ${LIMITS.maxHttpBody} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw badRequest("request body is not valid JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw badRequest("request body must be a JSON object");
  if (depthOver(v, MAX_DEPTH)) throw badRequest(`request body nests deeper than ${MAX_DEPTH} levels`);
  const bad = illFormedPath(v, "body");
  if (bad) throw badRequest(illFormedMessage(bad));
  return v;
}

/**
 * Checks that the URL's path and query are valid percent-encoded UTF-8 (so no decoded path or
 * query string can hold a lone surrogate or a replacement character made up by a lenient decoder).
 * Throws 400 BAD_REQUEST otherwise.
 */
export function checkUrl(url: URL): void {
  try {
    decodeURIComponent(url.pathname);
    for (const part of url.search.slice(1).split("&")) decodeURIComponent(part.replace(/\+/g, " "));
  } catch {
    throw badRequest("malformed percent-encoding in the URL");
  }
}

/**
 * Path segment `index` (0-based, after the leading "/") of the URL, percent-decoded exactly once:
 * `dm%253A1%253A2` is `dm%3A1%3A2`, not `dm:1:2`. Throws 400 on malformed encoding.
 */
export function pathSegment(url: URL, index: number): string {
  const raw = url.pathname.split("/")[index + 1] ?? "";
  try {
    return decodeURIComponent(raw);
  } catch {
    throw badRequest("malformed percent-encoding in the path");
  }
}

/**
 * An optional integer query parameter: undefined if absent or empty, else its value, which must be
 * plain decimal digits (at most 15, so it is exact). Throws 400 BAD_REQUEST for anything else
 * (`0x10`, `1e3`, `-1`, ` 5`) or if the parameter is given more than once.
 */
export function intQuery(url: URL, name: string): number | undefined {
  const all = url.searchParams.getAll(name);
  if (all.length > 1) throw badRequest(`${name} may be given once`);
  const v = all[0];
  if (v === undefined || v === "") return undefined;
  if (!/^\d{1,15}$/.test(v)) throw badRequest(`${name} must be a non-negative integer of at most 15 decimal digits`);
  return Number(v);
}
