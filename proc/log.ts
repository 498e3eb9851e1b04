/** Logging: one JSON line per event (pino), with `component`, `camera` and `segment` fields where they apply. */
import { pino, type Logger as PinoLogger } from 'pino';

/** pino-compatible subset, so any pino logger (or a child) can be passed to a component. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** The process's root logger; `app` names the daemon (camstream-agent, camstream-server). */
export function rootLogger(app: string): PinoLogger {
  return pino({ base: { app } });
}
