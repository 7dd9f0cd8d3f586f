import { BusyPoll } from './busy-poll';
import { countImmediates as countTurns } from './testing';

describe(BusyPoll.name, () => {
  it('keeps the event loop turning while a hold is open, and stops when the last is released', async () => {
    const sut = new BusyPoll(true);
    const first = sut.hold();
    const second = sut.hold();
    expect(sut.active).toBe(2);
    let activeAfterDoubleRelease = -1;
    const turns = await countTurns(
      new Promise<void>((resolve) =>
        setTimeout(() => {
          first.release();
          first.release(); // a second release of the same hold changes nothing
          activeAfterDoubleRelease = sut.active;
          second.release();
          resolve();
        }, 20),
      ),
    );
    expect(activeAfterDoubleRelease).toBe(1);
    expect(sut.active).toBe(0);
    // Spinning for 20 ms turns the loop many times (a sleeping loop would not turn at all).
    expect(turns).toBeGreaterThan(20);
    // Released: no more turns.
    const after = await countTurns(new Promise<void>((resolve) => setTimeout(resolve, 20)));
    expect(after).toBeLessThan(3);
  });

  it('lingers after the last release, then stops', async () => {
    const sut = new BusyPoll(true, 30);
    sut.hold().release();
    const lingering = await countTurns(new Promise<void>((resolve) => setTimeout(resolve, 10)));
    expect(lingering).toBeGreaterThan(10);
    await new Promise((resolve) => setTimeout(resolve, 40));
    const after = await countTurns(new Promise<void>((resolve) => setTimeout(resolve, 20)));
    expect(after).toBeLessThan(3);
  });

  it('does nothing when off', async () => {
    const sut = new BusyPoll(false);
    const hold = sut.hold();
    expect(sut.active).toBe(0);
    const turns = await countTurns(new Promise<void>((resolve) => setTimeout(resolve, 20)));
    hold.release();
    expect(turns).toBeLessThan(3);
  });
});
