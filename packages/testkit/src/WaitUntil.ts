/**
 * Polling for tests that have no event to await (a server's buffered bytes, `/ready`, a child process's log lines).
 * Prefer an event (`SupabaseClients.waitFor`, `RawClient.next`) wherever one exists: polling only bounds the wait.
 */

interface WaitOptions {
  /** Give up after this long; default 5000 ms. */
  readonly timeoutMs?: number
  /** Pause between probes; default 20 ms. */
  readonly intervalMs?: number
}

/**
 * Probes until `until` holds for the probed value and returns that value. Rejects, naming `what` and the last value,
 * once `timeoutMs` has passed; a probe that rejects rejects the wait.
 */
export const waitUntil = async <T>(
  what: string,
  probe: () => T | Promise<T>,
  until: (value: T) => boolean,
  options: WaitOptions = {}
): Promise<T> => {
  const timeoutMs = options.timeoutMs ?? 5000
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (until(value)) return value
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value ${JSON.stringify(value)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20))
  }
}
