/** Event maps shared by the Socket.IO bench server and its clients. */

export interface BenchMessage {
  readonly t: number
  readonly s: number
  readonly p: string
}

export interface ClientToServerEvents {
  join: (ack: (status: string) => void) => void
  pub: (message: BenchMessage) => void
}

export interface ServerToClientEvents {
  msg: (message: BenchMessage) => void
}

export const ROOM = "bench"
