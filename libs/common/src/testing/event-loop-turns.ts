/**
 * How many setImmediate callbacks run before `done` settles: a spinning event loop (BusyPoll)
 * turns thousands of times in a few milliseconds, an idle one hardly at all. Test-only (uses jest).
 */
export async function countImmediates(done: Promise<unknown>): Promise<number> {
  let turns = 0;
  let finished = false;
  void done.then(() => (finished = true));
  const original = setImmediate;
  const spy = jest.spyOn(global, 'setImmediate').mockImplementation(((fn: () => void) =>
    original(() => {
      turns += 1;
      fn();
    })) as unknown as typeof setImmediate);
  try {
    while (!finished) await new Promise((resolve) => setTimeout(resolve, 1));
  } finally {
    spy.mockRestore();
  }
  return turns;
}
