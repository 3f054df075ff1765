/**
 * Waiting for a condition, never for time: `check` is polled until it returns a value (neither
 * undefined nor false); `timeoutMs` is only the failure bound, generous for a loaded machine.
 * The last argument is the poll period in ms (default 50) or a function whose text is added to
 * the timeout message.
 */
export async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, everyMsOrExtra: number | (() => string) = 50): Promise<T> {
  const everyMs = typeof everyMsOrExtra === 'number' ? everyMsOrExtra : 50;
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${typeof everyMsOrExtra === 'function' ? `\n${everyMsOrExtra()}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/**
 * "At once" as an ordering, not a speed: true when `promise` settles before a 0 ms timer fires,
 * i.e. it needed no timer, no I/O and no other turn of the event loop. A loaded machine delays
 * both sides alike, so this holds or fails whatever the load.
 */
export async function settlesAtOnce(promise: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timerFired = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 0)));
  try {
    return await Promise.race([promise.then(() => true as const), timerFired]);
  } finally {
    clearTimeout(timer);
  }
}
