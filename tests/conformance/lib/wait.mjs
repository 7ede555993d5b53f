// Waiting helpers. Every wait has a timeout so that no test can hang on a missing event.

/** Default time a test waits for one expected event. */
export const EVENT_TIMEOUT_MS = 3_000;
/** How long a test listens before concluding that an event was not delivered. */
export const SILENCE_MS = 400;
/** Per-test limit passed to `it(name, { timeout: TEST_TIMEOUT_MS }, fn)`. */
export const TEST_TIMEOUT_MS = 10_000;

/** Resolves after `ms` milliseconds. */
export const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

/** Races `promise` against a timer; the timer is cleared either way. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  const raced = Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  // A wait set up ahead of the action it waits for may be abandoned when an earlier step fails;
  // its later rejection must not be reported as an unhandled rejection that hides that failure.
  // Whoever awaits it still sees the error.
  raced.catch(() => {});
  return raced;
}

/** Polls `predicate` (sync or async) until it returns a truthy value, which is resolved. */
export async function waitFor(predicate, { timeoutMs = EVENT_TIMEOUT_MS, intervalMs = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * Resolves with the arguments of the first `event` on a pusher-js style emitter
 * (`bind`/`unbind`) or a Node EventEmitter (`on`/`off`) for which `filter(...args)` holds.
 * A single argument is resolved as itself, several as an array.
 */
export function once(emitter, event, { timeoutMs = EVENT_TIMEOUT_MS, filter = () => true } = {}) {
  const pusherStyle = typeof emitter.bind === 'function' && typeof emitter.unbind === 'function';
  let handler;
  const p = new Promise((res) => {
    handler = (...args) => {
      if (!filter(...args)) return;
      res(args.length <= 1 ? args[0] : args);
    };
    if (pusherStyle) emitter.bind(event, handler);
    else emitter.on(event, handler);
  });
  return withTimeout(p, timeoutMs, `'${event}'`).finally(() => {
    if (pusherStyle) emitter.unbind(event, handler);
    else emitter.off(event, handler);
  });
}

/** Records every call of a callback; `next()` waits for the next matching call. */
export class Recorder {
  constructor() {
    this.calls = [];
    this.waiters = [];
    this.fn = (...args) => {
      this.calls.push(args);
      for (const w of [...this.waiters]) {
        if (w.filter(...args)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.res(args);
        }
      }
    };
  }

  /** Calls so far for which `filter` holds. */
  matching(filter = () => true) {
    return this.calls.filter((args) => filter(...args));
  }

  /** Resolves with the arguments of the first call (already made or future) matching `filter`. */
  first(filter = () => true, { timeoutMs = EVENT_TIMEOUT_MS, what = 'a recorded call' } = {}) {
    const seen = this.calls.find((args) => filter(...args));
    if (seen) return Promise.resolve(seen);
    return this.next(filter, { timeoutMs, what });
  }

  /** Resolves with the arguments of the next future call matching `filter`. */
  next(filter = () => true, { timeoutMs = EVENT_TIMEOUT_MS, what = 'a recorded call' } = {}) {
    let waiter;
    const p = new Promise((res) => {
      waiter = { filter, res };
      this.waiters.push(waiter);
    });
    return withTimeout(p, timeoutMs, what).finally(() => {
      const i = this.waiters.indexOf(waiter);
      if (i >= 0) this.waiters.splice(i, 1);
    });
  }
}
