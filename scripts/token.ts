/**
 * Make a new secret token and print it with the SHA-256 the checking side stores.
 *   npm run token -- cam-lobby-01
 * Put the token in the camera's agent.yaml (server.token) and the hash in the server's
 * server.yaml (auth.cameras.cam-lobby-01); for HTTP API clients, the hash goes in auth.apiTokens
 * (server) or http.tokens (agent).
 */
import { hashToken, newToken } from '../proc/auth.ts';

const name = process.argv[2] ?? 'client';
const token = newToken();
console.log(`# ${name}`);
console.log(`token:  ${token}     # secret: give it only to ${name}`);
console.log(`sha256: ${hashToken(token)}  # goes in the checking side's config`);
