// One error type for the whole system. Services throw AppError; each edge (HTTP, WebSocket,
// gRPC) maps the code once, through the table below.
import { status as GrpcStatus } from "@grpc/grpc-js";

export const ERROR_CODES = {
  BAD_REQUEST: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  UNAUTHENTICATED: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED },
  FORBIDDEN: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED },
  NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  CONFLICT: { http: 409, grpc: GrpcStatus.ALREADY_EXISTS },
  PAYLOAD_TOO_LARGE: { http: 413, grpc: GrpcStatus.OUT_OF_RANGE },
  RATE_LIMITED: { http: 429, grpc: GrpcStatus.RESOURCE_EXHAUSTED },
  UNAVAILABLE: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  INTERNAL: { http: 500, grpc: GrpcStatus.INTERNAL },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** For RATE_LIMITED: seconds after which a retry may succeed (HTTP Retry-After). */
    readonly retryAfterSec?: number,
  ) {
    super(message);
    this.name = "AppError";
  }
  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }
  toJSON(): WireError {
    return { code: this.code, message: this.message };
  }
}

/** How an error travels inside an RPC reply payload and in client-facing frames. */
export interface WireError {
  code: ErrorCode;
  message: string;
  /** Only between tiers (rpc.ts), never in client frames. */
  retryAfterSec?: number;
}

export const badRequest = (m: string) => new AppError("BAD_REQUEST", m);

export function isErrorCode(c: unknown): c is ErrorCode {
  return typeof c === "string" && c in ERROR_CODES;
}

export function fromWire(e: WireError): AppError {
  const retry = Number.isSafeInteger(e.retryAfterSec) && (e.retryAfterSec as number) > 0 ? e.retryAfterSec : undefined;
  return new AppError(isErrorCode(e.code) ? e.code : "INTERNAL", e.message, retry);
}

/** gRPC transport failures (no instance, deadline, reset) become UNAVAILABLE; the rest INTERNAL. */
export function fromGrpc(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const code = (err as { code?: number })?.code;
  if (code === GrpcStatus.UNAVAILABLE || code === GrpcStatus.DEADLINE_EXCEEDED || code === GrpcStatus.CANCELLED)
    return new AppError("UNAVAILABLE", "service temporarily unavailable");
  for (const [name, m] of Object.entries(ERROR_CODES)) if (m.grpc === code) return new AppError(name as ErrorCode, (err as Error).message);
  return new AppError("INTERNAL", "internal error");
}

/** The HTTP form of an error: the contract's {"error":{"code","message"}} envelope and status. */
export function errorResponse(e: AppError): Response {
  const headers: Record<string, string> = e.retryAfterSec ? { "retry-after": String(e.retryAfterSec) } : {};
  return Response.json({ error: e.toJSON() }, { status: e.httpStatus, headers });
}
