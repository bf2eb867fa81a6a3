// For the throwaway servers (Postgres, Redis): the OS picks a port that is free now. Another process could take it
// before the server binds it; the servers report that as a failed start.
import { createServer } from "node:net"

/** A loopback port that nothing listens on at the moment of asking. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once("error", reject)
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address()
      probe.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })
