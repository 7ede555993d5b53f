// A raw `ws` client for checks the high-level libraries hide: the exact JSON on the wire, close
// codes and HTTP handshake failures.

import WebSocket from 'ws';
import { EVENT_TIMEOUT_MS, Recorder, withTimeout } from './wait.mjs';

/** The query pusher-js 8 sends. */
export const PUSHER_JS_QUERY = 'protocol=7&client=js&version=8.6.0&flash=false';

/** Parses the `data` of a frame: server events carry a JSON string; some (pusher:error) an object. */
export function dataOf(frame) {
  if (typeof frame.data !== 'string') return frame.data;
  try {
    return JSON.parse(frame.data);
  } catch {
    return frame.data;
  }
}

export class RawClient {
  constructor(url, headers) {
    this.url = url;
    this.ws = new WebSocket(url, { headers, handshakeTimeout: EVENT_TIMEOUT_MS });
    /** Every text frame as `{raw, json}` (json is null when the frame is not JSON). */
    this.frames = new Recorder();
    /**
     * Settles with how the connection ended: `{code, reason}` for a WebSocket close,
     * `{httpStatus}` for a refused handshake, `{error}` for a transport error.
     */
    this.ended = new Promise((res) => {
      this.ws.on('close', (code, reason) => res({ code, reason: reason.toString() }));
      this.ws.on('unexpected-response', (_req, resp) => {
        res({ httpStatus: resp.statusCode });
        resp.resume();
        this.ws.terminate();
      });
      this.ws.on('error', (error) => res({ error }));
    });
    this.ws.on('message', (data, isBinary) => {
      const raw = isBinary ? data : data.toString();
      let json = null;
      try {
        json = JSON.parse(raw);
      } catch {
        /* recorded as raw only */
      }
      this.frames.fn({ raw, json });
    });
  }

  /** The next (or an already received) frame whose JSON `event` is `event`. */
  async event(event, { timeoutMs = EVENT_TIMEOUT_MS, filter = () => true, fromStart = false } = {}) {
    const match = ({ json }) => json !== null && json.event === event && filter(json);
    const wait = fromStart ? this.frames.first(match, { timeoutMs, what: event }) : this.frames.next(match, { timeoutMs, what: event });
    const [frame] = await wait;
    return frame.json;
  }

  /** Resolves with the `pusher:connection_established` frame (the raw JSON object); fails fast on a close. */
  async established(timeoutMs = EVENT_TIMEOUT_MS) {
    const outcome = await this.admitted(timeoutMs);
    if (outcome.established) return outcome.established;
    const how = outcome.error ? outcome.error.message : JSON.stringify(outcome);
    throw new Error(`connection to ${this.url} ended before pusher:connection_established: ${how}`);
  }

  /**
   * Resolves with `{established: frame}` or, if the connection ends first, with how it ended
   * (see `ended`). Leaves no timer or waiter behind.
   */
  admitted(timeoutMs = EVENT_TIMEOUT_MS) {
    const match = ({ json }) => json !== null && json.event === 'pusher:connection_established';
    const seen = this.frames.calls.find(([f]) => match(f));
    if (seen) return Promise.resolve({ established: seen[0].json });
    let waiter;
    const opened = new Promise((res) => {
      waiter = { filter: match, res: ([f]) => res({ established: f.json }) };
      this.frames.waiters.push(waiter);
    });
    return withTimeout(Promise.race([opened, this.ended]), timeoutMs, `admission to ${this.url}`).finally(() => {
      const i = this.frames.waiters.indexOf(waiter);
      if (i >= 0) this.frames.waiters.splice(i, 1);
    });
  }

  /** How the connection ended (see `ended`), with a timeout. */
  closed(timeoutMs = EVENT_TIMEOUT_MS) {
    return withTimeout(this.ended, timeoutMs, `the connection to ${this.url} to close`);
  }

  send(obj) {
    this.ws.send(JSON.stringify(obj));
  }

  sendText(text) {
    this.ws.send(text);
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  close() {
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) {
      this.ws.terminate();
    }
  }
}

/**
 * Opens a raw WebSocket to the broker, closed when the test `t` ends.
 *
 * @param {object} [opts]
 * @param {string} [opts.key] app key (default: the broker's first app)
 * @param {string} [opts.path] full path instead of `/app/{key}`
 * @param {string|null} [opts.query] query string without `?` (null: none)
 * @param {object} [opts.headers] extra handshake headers (e.g. Origin)
 */
export function rawClient(t, broker, { key = broker.app.key, path, query = PUSHER_JS_QUERY, headers } = {}) {
  const p = path ?? `/app/${key}`;
  const url = `${broker.wsBase}${p}${query === null ? '' : `?${query}`}`;
  const client = new RawClient(url, headers);
  t.after(() => client.close());
  return client;
}
