/**
 * scripts/setup.sh on a machine that lacks things, without touching this machine: the commands
 * are hidden from its PATH, and `apt-get`, `service` and `id` are stand-ins that record how they
 * were called. The Kafka jar cache is a temporary folder marked complete, so no download runs.
 */
import { deepStrictEqual, equal, ok } from "./helpers/assert.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const SETUP = `${ROOT}scripts/setup.sh`;

interface Machine {
  /** Commands removed from PATH. */
  hide?: string[];
  /** The uid `id -u` prints. */
  uid: number;
  /** Commands replaced by a script body. */
  replace?: Record<string, string>;
}

/**
 * The stamp `kafka_local.sh install` leaves when the jars are complete: the SHA-256 of the pom
 * followed by the JMX exporter agent's name and version (see `cmd_install`).
 */
async function installStamp(): Promise<string> {
  const script = await Deno.readTextFile(`${ROOT}scripts/kafka_local.sh`);
  const version = /^JMX_EXPORTER_VERSION=(\S+)$/m.exec(script)?.[1];
  const pom = await Deno.readTextFile(`${ROOT}scripts/kafka/pom.xml`);
  const text = new TextEncoder().encode(`${pom}jmx_prometheus_javaagent ${version}\n`);
  const digest = await crypto.subtle.digest("SHA-256", text);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Runs setup.sh on a simulated machine; returns its exit code, stderr and the recorded calls. */
async function setup(machine: Machine): Promise<{ code: number; stderr: string; calls: string[] }> {
  const dir = await Deno.makeTempDir({ prefix: "setup-test-" });
  try {
    const bin = `${dir}/bin`;
    const log = `${dir}/calls.log`;
    await Deno.mkdir(bin);
    const stubs: Record<string, string> = {
      "apt-get": `echo "apt-get $*" >> "${log}"`,
      service: `echo "service $*" >> "${log}"`,
      id: `if [ "$1" = -u ]; then echo ${machine.uid}; else exec /usr/bin/id "$@"; fi`,
      ...machine.replace,
    };
    const skip = new Set([...(machine.hide ?? []), ...Object.keys(stubs)]);
    const dirs = [Deno.execPath().replace(/\/[^/]+$/, ""), ...Deno.env.get("PATH")!.split(":")];
    const seen = new Set<string>();
    for (const d of dirs) {
      let entries: Deno.DirEntry[];
      try {
        entries = await Array.fromAsync(Deno.readDir(d));
      } catch {
        continue;
      }
      for (const e of entries) {
        if (skip.has(e.name) || seen.has(e.name)) continue;
        seen.add(e.name);
        await Deno.symlink(`${d}/${e.name}`, `${bin}/${e.name}`);
      }
    }
    for (const [name, body] of Object.entries(stubs)) {
      await Deno.writeTextFile(`${bin}/${name}`, `#!/bin/bash\n${body}\n`, { mode: 0o755 });
    }
    const cache = `${dir}/kafka`;
    await Deno.mkdir(`${cache}/lib`, { recursive: true });
    await Deno.writeTextFile(
      `${cache}/lib/.complete`,
      `${await installStamp()}\n`,
    );
    // The QuestDB jar, present (its name is all setup.sh looks at).
    const questdb = `${dir}/questdb`;
    await Deno.mkdir(questdb);
    await Deno.writeTextFile(`${questdb}/questdb-9.2.2.jar`, "");
    const out = await new Deno.Command("/bin/bash", {
      args: [SETUP],
      env: { PATH: bin, KAFKA_CACHE: cache, QUESTDB_CACHE: questdb },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const calls = await Deno.readTextFile(log).then((t) => t.trimEnd().split("\n"), () => []);
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr), calls };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const MISSING = ["influxd", "prometheus", "kcat"];

Deno.test("setup installs nothing and stops nothing when everything is there", async () => {
  const r = await setup({ uid: 0 });
  equal(r.code, 0, r.stderr);
  deepStrictEqual(r.calls, []);
});

Deno.test("setup as root installs the missing Debian packages, then stops only their services", async () => {
  const r = await setup({ uid: 0, hide: MISSING });
  equal(r.code, 0, r.stderr);
  deepStrictEqual(r.calls, [
    "apt-get update -q",
    "apt-get install -y -q --no-install-recommends influxdb prometheus kcat",
    "service influxdb stop",
    "service prometheus stop",
  ]);
});

Deno.test("setup as another user installs nothing and prints the exact command", async () => {
  const r = await setup({ uid: 1000, hide: MISSING });
  equal(r.code, 1);
  deepStrictEqual(r.calls, []);
  ok(
    r.stderr.includes(
      "sudo sh -c 'apt-get update && apt-get install -y --no-install-recommends " +
        "influxdb prometheus kcat'",
    ),
    r.stderr,
  );
});

Deno.test("setup installs Java from Debian when the java on PATH is older than 17", async () => {
  const r = await setup({
    uid: 0,
    replace: { java: `echo 'openjdk version "11.0.22" 2024-01-16' >&2` },
  });
  equal(r.code, 0, r.stderr);
  deepStrictEqual(r.calls, [
    "apt-get update -q",
    "apt-get install -y -q --no-install-recommends default-jre-headless",
  ]);
});

Deno.test("setup installs openjdk-17 where the distribution's default Java is older", async () => {
  const r = await setup({
    uid: 0,
    replace: {
      java: "exit 127",
      "apt-cache": `echo "default-jre-headless:"; echo "  Candidate: 2:1.11-72build2"`,
    },
  });
  equal(r.code, 0, r.stderr);
  deepStrictEqual(r.calls, [
    "apt-get update -q",
    "apt-get install -y -q --no-install-recommends openjdk-17-jre-headless",
  ]);
});
