// Text that reaches an operator's terminal from a guest or from the cluster document: a
// VM's own output becomes its lease's reason (a start that ended at once says what it
// printed), and `vm ls`, `vm show` and `vgrid status` print reasons. Raw, a guest's
// escape sequences recoloured the terminal, set its title, and its newlines broke the
// `vm ls` table (a tester). The same characters a label value may not hold
// (crdt/schema.ts isLabelValue: C0, DEL, C1) are shown escaped instead.

/** control characters: C0, DEL and C1 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }

/**
 * `s` with each control character (C0, DEL or C1) shown as an escape: \n, \r and \t as
 * such, the others as \xHH (ESC is \x1b); a lone surrogate as U+FFFD, as a terminal
 * would get it. Pure, and a second pass changes nothing (the agent escapes a reason
 * when it writes it, the CLI again when it prints one an older agent wrote).
 */
export function escapeControls (s: string): string {
  return s.replace(CONTROL, c => NAMED[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`).toWellFormed()
}
