/** Raw HTTP helpers for what a WebSocket client cannot see: the status and body of a refused upgrade. */
import { type IncomingHttpHeaders, request } from "node:http"

export interface UpgradeAnswer {
  readonly status: number
  readonly body: string
}

/** The answer with its response headers (`Retry-After` of a shed upgrade). */
export interface UpgradeReply extends UpgradeAnswer {
  readonly headers: IncomingHttpHeaders
}

/** Sends a WebSocket upgrade request and returns the status and body when the server refuses it. */
export const tryUpgrade = async (url: string, headers: Record<string, string> = {}): Promise<UpgradeAnswer> => {
  const { status, body } = await tryUpgradeWithHeaders(url, headers)
  return { status, body }
}

/** `tryUpgrade` with the response headers. */
export const tryUpgradeWithHeaders = (url: string, headers: Record<string, string> = {}): Promise<UpgradeReply> =>
  new Promise((resolve, reject) => {
    const req = request(url.replace(/^ws/, "http"), {
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": Buffer.from("0123456789abcdef").toString("base64"),
        ...headers
      }
    })
    req.on("upgrade", (res, socket) => {
      socket.destroy()
      resolve({ status: 101, body: "", headers: res.headers })
    })
    req.on("response", (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (body += chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }))
    })
    req.on("error", reject)
    req.end()
  })

export const getText = async (url: string): Promise<{ readonly status: number; readonly text: string }> => {
  const response = await fetch(url)
  return { status: response.status, text: await response.text() }
}
