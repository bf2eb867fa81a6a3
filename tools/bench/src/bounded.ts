/** Runs `task(0..count-1)` with at most `concurrency` in flight. Task errors are the task's business. */
export const forEachBounded = async (
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>
): Promise<void> => {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, worker))
}
