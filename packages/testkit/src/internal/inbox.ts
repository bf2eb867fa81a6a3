// A buffer of received items that tests await by predicate, so they wait for events instead of sleeping.
// Items that do not match stay buffered for later waits; a failure (socket closed) rejects current and future waits.

interface Waiter<T> {
  readonly predicate: (item: T) => boolean
  readonly resolve: (item: T) => void
  readonly reject: (error: Error) => void
  readonly timer: ReturnType<typeof setTimeout>
}

export interface Inbox<T> {
  readonly push: (item: T) => void
  readonly fail: (error: Error) => void
  readonly next: (predicate: (item: T) => boolean, timeoutMs: number, what: string) => Promise<T>
  readonly drain: () => Array<T>
  readonly received: ReadonlyArray<T>
}

const describe = (item: unknown): string => {
  if (Buffer.isBuffer(item)) return `<binary ${item.length} bytes: ${item.subarray(0, 32).toString("hex")}>`
  const text = typeof item === "string" ? item : JSON.stringify(item)
  return text.length > 300 ? text.slice(0, 300) + "…" : text
}

export const makeInbox = <T>(): Inbox<T> => {
  const buffered: Array<T> = []
  const received: Array<T> = []
  const waiters = new Set<Waiter<T>>()
  let failure: Error | undefined
  return {
    received,
    push: (item) => {
      received.push(item)
      for (const waiter of waiters) {
        if (waiter.predicate(item)) {
          waiters.delete(waiter)
          clearTimeout(waiter.timer)
          waiter.resolve(item)
          return
        }
      }
      buffered.push(item)
    },
    fail: (error) => {
      failure ??= error
      for (const waiter of waiters) {
        clearTimeout(waiter.timer)
        waiter.reject(error)
      }
      waiters.clear()
    },
    next: (predicate, timeoutMs, what) => {
      const index = buffered.findIndex(predicate)
      if (index >= 0) return Promise.resolve(buffered.splice(index, 1)[0] as T)
      if (failure !== undefined) return Promise.reject(failure)
      return new Promise<T>((resolve, reject) => {
        const waiter: Waiter<T> = {
          predicate,
          resolve,
          reject,
          timer: setTimeout(() => {
            waiters.delete(waiter)
            const recent = received.slice(-5).map(describe).join("\n  ")
            reject(
              new Error(
                `timed out after ${timeoutMs} ms waiting for ${what}; last received:\n  ${recent || "(nothing)"}`
              )
            )
          }, timeoutMs)
        }
        waiters.add(waiter)
      })
    },
    drain: () => buffered.splice(0, buffered.length)
  }
}
