/** The longest delay a Node timer takes (about 24.8 days): a longer one fires after 1 ms, so settings that are a timer's delay stay under it. */
export const MAX_TIMER_MS = 2 ** 31 - 1
