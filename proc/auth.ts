/**
 * Shared secrets for cameras and HTTP clients.
 *
 * A token is 32 random bytes (base64url). The side that checks tokens stores only their SHA-256
 * (hex), so a leaked server config or database does not leak credentials; a presented token is
 * hashed and compared with every stored hash in constant time (crypto.timingSafeEqual).
 *
 * `requireBearer` is the one HTTP check every API endpoint uses (server /api/*, /metrics, the
 * agent's status-page API): `Authorization: Bearer <token>`.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';

export const SHA256_HEX = /^[0-9a-f]{64}$/;

/** A fresh random token (256 bits, base64url). */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** SHA-256 of a token, hex: what configs store. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Constant-time check of a presented token against one stored SHA-256 (hex). */
export function tokenMatches(presented: string, sha256hex: string): boolean {
  if (!SHA256_HEX.test(sha256hex)) return false;
  const a = createHash('sha256').update(presented, 'utf8').digest();
  return timingSafeEqual(a, Buffer.from(sha256hex, 'hex'));
}

/** A set of accepted token hashes; `has()` compares against all of them (no early exit). */
export class TokenSet {
  private readonly hashes: Buffer[];
  constructor(sha256hex: readonly string[]) {
    for (const h of sha256hex) if (!SHA256_HEX.test(h)) throw new TypeError(`not a SHA-256 hex digest: ${h.slice(0, 8)}…`);
    this.hashes = sha256hex.map((h) => Buffer.from(h, 'hex'));
  }
  get size(): number {
    return this.hashes.length;
  }
  has(token: string | null | undefined): boolean {
    if (!token) return false;
    const a = createHash('sha256').update(token, 'utf8').digest();
    let ok = false;
    for (const h of this.hashes) ok = timingSafeEqual(a, h) || ok;
    return ok;
  }
}

/** The bearer token of a request, or null. */
export function bearerToken(req: http.IncomingMessage): string | null {
  const h = req.headers.authorization;
  if (!h) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : null;
}

/**
 * The HTTP API check: true when the request carries a token in `tokens`; otherwise answers
 * 401 (no or wrong token) and returns false. Use it before any handler that reads or changes data.
 */
export function requireBearer(req: http.IncomingMessage, res: http.ServerResponse, tokens: TokenSet): boolean {
  if (tokens.has(bearerToken(req))) return true;
  res.writeHead(401, { 'content-type': 'application/json; charset=utf-8', 'www-authenticate': 'Bearer realm="camstream"', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(JSON.stringify({ error: tokens.size === 0 ? 'no API tokens are configured: this endpoint is disabled' : 'missing or invalid bearer token' }));
  return false;
}

/** Per-camera tokens (camera id → SHA-256 hex): the ingest's authenticator. */
export class CameraTokens {
  private readonly byCamera: Map<string, string>;
  constructor(cameras: Readonly<Record<string, string>>) {
    this.byCamera = new Map(Object.entries(cameras));
  }
  get size(): number {
    return this.byCamera.size;
  }
  verify(cameraId: string, token: string): boolean {
    const h = this.byCamera.get(cameraId);
    // an unknown camera costs the same hash-and-compare as a known one
    const ok = tokenMatches(token, h ?? UNKNOWN);
    return h !== undefined && ok;
  }
}
const UNKNOWN = '0'.repeat(64);
