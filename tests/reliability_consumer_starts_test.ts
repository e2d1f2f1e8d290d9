/**
 * Reliability, the consumer that sometimes read nothing (issue 21): many starts of the real
 * `consumer.ts` against the shared broker, cycling through a fresh group (`--from earliest`),
 * a reused group right after its previous consumer exited, and a reused group right after its
 * previous consumer was SIGKILLed. Every start must print exactly the records it should, within
 * a bound. `CONSUMER_STARTS` sets how many starts (default 3, one of each; 50 for the repeated
 * run, see scripts/reliability_repeat.sh).
 */
import { deepStrictEqual, equal } from "./helpers/assert.ts";
import { brokerConfig, uniqueTopic } from "./helpers/kafka_broker.ts";
import {
  kafka,
  KAFKA_TEST,
  kafkaEnv,
  lines,
  produce,
  ScriptProcess,
  sorted,
  spreadRecords,
} from "./helpers/e2e.ts";

const STARTS = Number(Deno.env.get("CONSUMER_STARTS") ?? "3");
const SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD", "ADA-USD", "XRP-USD"];
/** Longest a start may take to print what it should (a rejoin waits for a dead member's 6 s). */
const START_BOUND_S = 60;

/** The spreads (unique per record) of some record values, sorted, for a failure message. */
function spreads(values: readonly string[]): string {
  return JSON.stringify(values.map((v) => JSON.parse(v).spread).sort((a, b) => a - b));
}

type Kind = "fresh" | "after exit" | "after SIGKILL";
const KINDS: readonly Kind[] = ["fresh", "after exit", "after SIGKILL"];

Deno.test({
  name: "every consumer start reads what it should: fresh groups, and reused groups right after " +
    "their previous consumer exited or was SIGKILLed",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("rel-starts");
    const env = { ...kafkaEnv(b, "plaintext", topic), KAFKA_SESSION_TIMEOUT: "6" };
    let sent = 0;
    const batch = (n: number) => {
      const records = spreadRecords(n, Date.now() - 1000 + sent, SYMBOLS).map((r, i) => ({
        ...r,
        value: r.value.replace(/"spread":[^}]*/, `"spread":${sent + i}`),
      }));
      sent += n;
      return records;
    };
    const initial = batch(60);
    await produce(config, topic, initial, 3);
    const all = initial.map((r) => r.value);
    const reused = { "after exit": `g-exit-${topic}`, "after SIGKILL": `g-kill-${topic}` };
    /** How many records of `all` each reused group has read and committed. */
    const read = { "after exit": all.length, "after SIGKILL": all.length };
    // Prime the reused groups: each has read everything so far and committed it.
    for (const group of Object.values(reused)) {
      const r = await new ScriptProcess("consumer.ts", [
        ...["--from", "earliest", "--group", group, "--max-messages", String(all.length)],
      ], env).finished;
      equal(r.code, 0, r.stderr);
    }
    const results: { kind: Kind; ok: boolean; ms: number; detail: string }[] = [];
    for (let i = 0; i < STARTS; i++) {
      const kind = KINDS[i % KINDS.length]!;
      let args: string[];
      let want: string[];
      if (kind === "fresh") {
        args = ["--from", "earliest", "--group", `g-fresh-${i}-${topic}`];
        want = [...all];
      } else if (kind === "after exit") {
        const next = batch(10);
        await produce(config, topic, next, 3);
        all.push(...next.map((r) => r.value));
        args = ["--from", "earliest", "--group", reused[kind]];
        // Everything since the group's last start: these 10 and what other starts wrote.
        want = all.slice(read[kind]);
        read[kind] = all.length;
      } else {
        // A consumer of the group prints every record since the group's last start, commits
        // them, and is SIGKILLed; the next start must read the 10 written after that.
        const victim = new ScriptProcess("consumer.ts", [
          ...["--from", "earliest", "--group", reused[kind]],
        ], env);
        const first = batch(10);
        await produce(config, topic, first, 3);
        all.push(...first.map((r) => r.value));
        const owed = all.length - read[kind];
        await victim.waitFor(`${owed} lines`, () => lines(victim.stdout).length >= owed, 90_000);
        // Its commits go out every 100 ms; give them time, then kill it.
        await new Promise((r) => setTimeout(r, 1000));
        victim.kill("SIGKILL");
        await victim.finished;
        const next = batch(10);
        await produce(config, topic, next, 3);
        all.push(...next.map((r) => r.value));
        args = ["--from", "earliest", "--group", reused[kind]];
        want = next.map((r) => r.value);
        read[kind] = all.length;
      }
      const started = performance.now();
      const r = await new ScriptProcess("consumer.ts", [
        ...args,
        ...["--max-messages", String(want.length), "--timeout", String(START_BOUND_S)],
      ], env).finished;
      const ms = performance.now() - started;
      const got = lines(r.stdout);
      const ok = r.code === 0 && JSON.stringify(sorted(got)) === JSON.stringify(sorted(want));
      results.push({
        kind,
        ok,
        ms,
        detail: ok ? "" : `exit ${r.code}, ${got.length} of ${want.length} lines, start ${i}; ` +
          `read spreads ${spreads(got)}, wanted ${spreads(want)}\n${r.stderr}`,
      });
    }
    const summary = KINDS.map((k) => {
      const of = results.filter((r) => r.kind === k);
      const slowest = Math.max(0, ...of.map((r) => r.ms));
      return `${k} ${of.filter((r) => r.ok).length}/${of.length} (slowest ${
        (slowest / 1000).toFixed(1)
      } s)`;
    }).join(", ");
    console.log(
      `[reliability] consumer starts: ${results.filter((r) => r.ok).length} of ${STARTS} read ` +
        `what they should; ${summary}`,
    );
    deepStrictEqual(
      results.filter((r) => !r.ok).map((r) => `${r.kind}: ${r.detail}`),
      [],
      "every start read what it should",
    );
  },
});
