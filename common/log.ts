import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * JSON lines on stdout for journald. Fields that could carry secrets are redacted at every
 * level as a second line of defence; reading values are only ever logged at debug by callers.
 */
export function createLogger(name: string, level: LevelWithSilent = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['apiKey', 'key', 'password', 'secret', 'token', 'authorization', '*.apiKey', '*.password', '*.authorization', 'headers.authorization'],
        censor: '[redacted]',
      },
    },
    destination ?? process.stdout,
  );
}

/** A logger that writes nothing, for library use in tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
