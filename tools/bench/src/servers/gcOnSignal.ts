/**
 * Preloaded (`--import`) into every benchmarked server, ours or not, so the bench can ask for a full
 * garbage collection with SIGUSR2 before reading VmRSS. Needs `--expose-gc`; a no-op without it.
 */
const gc: unknown = Reflect.get(globalThis, "gc")
process.on("SIGUSR2", () => {
  if (typeof gc === "function") Reflect.apply(gc, undefined, [])
})
