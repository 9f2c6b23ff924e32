// A clock for durations, deadlines and liveness that never steps. It reads as
// ms since the epoch, like Date.now, so its values sit beside the existing fields,
// logs and tests; but it is the wall time at process start (performance.timeOrigin)
// advanced by the monotonic clock (performance.now, CLOCK_MONOTONIC), so an NTP
// step or `date -s` moves Date.now and leaves it be. Without that, a step forward
// of a minute made every member's silence a minute long at once (suspected, dead,
// taken over) and a step back delayed every timeout by as much.
//
// Its values are for this process only. Anything another node or a later run of
// this agent compares with its own clock (document stamps, the HLC, an advert's
// incarnation, crash records) stays on the wall clock: a process that started
// before NTP set the clock would otherwise stamp the wrong year for its whole life.

/**
 * Whole ms on the epoch scale, monotonic (see above): Date.now's value at process
 * start, advanced by the time elapsed since. Whole, as Date.now's are: values of it
 * end up in fields that take integers (the document's schema checks them).
 */
export function monoNow (): number {
  return Math.floor(performance.timeOrigin + performance.now())
}

/**
 * A monotonic reading turned into the wall time it stands for: for showing a local
 * time to people (an ISO date) after the wall clock may have been stepped.
 */
export function monoToWall (mono: number, now: { mono: number, wall: number } = { mono: monoNow(), wall: Date.now() }): number {
  return now.wall - (now.mono - mono)
}
