/** Assertions from node:assert/strict (JSR's @std/assert is out of reach here). */
export { deepStrictEqual, equal, match, ok, rejects, throws } from "node:assert/strict";
export { deepStrictEqual as assertEquals } from "node:assert/strict";
