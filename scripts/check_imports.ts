/**
 * The import gate (`deno task imports`, part of `deno task ok` and CI): builds the module graph of
 * every TypeScript file in the repository with `deno info --json` (static, dynamic and type-only
 * imports alike) and fails when
 *   - the project's own files form an import cycle (each cycle is printed, file by file), or
 *   - a Kafka client library (`@platformatic/kafka`, `kafkajs`) is imported outside `lib/kafka/`,
 *   - or an adapter folder ({@linkcode ADAPTER_FOLDERS}) is imported by a product file other than
 *     the one that picks an adapter (`lib/kafka/open.ts`) or the adapter's own files: the rest of
 *     the product sees only the contract (`lib/kafka/types.ts`); nor may any other file inside
 *     `lib/kafka/` import `open.ts`.
 *     Tests and benchmarks are the exception ({@linkcode CLIENT_IMPORT_EXEMPT}): they read the
 *     broker with a client of their own, as an independent check of what our adapters wrote, and
 *     test an adapter directly.
 *
 *   deno task imports            check the whole tree
 *   deno task imports --json     the same, as one JSON object on stdout
 *
 * Permissions: --allow-read, --allow-write (a graph root in .cache/), --allow-run (deno info,
 * git ls-files).
 */

/** A module of the graph: its repository path and the project files it imports. */
export interface ImportGraph {
  /** Repository-relative path → the repository-relative paths it imports. */
  edges: Map<string, Set<string>>;
  /** Imports of a Kafka client library: the importing file and the specifier. */
  clientImports: { file: string; specifier: string }[];
}

/** What {@linkcode checkImports} found. */
export interface ImportReport {
  modules: number;
  cycles: string[][];
  /** Kafka client imports outside lib/kafka/. */
  misplaced: { file: string; specifier: string }[];
  /** Imports of an adapter folder's file by a product file that may not pick an adapter. */
  adapterImports: { file: string; imported: string }[];
}

const KAFKA_CLIENTS = ["@platformatic/kafka", "kafkajs"];

/** Folders that may import a Kafka client directly: independent checks, not the product. */
export const CLIENT_IMPORT_EXEMPT: readonly string[] = ["tests/", "bench/"];

/** The Kafka adapter folders, and the one product file that may import them (it picks one). */
export const ADAPTER_FOLDERS: readonly string[] = ["lib/kafka/platformatic/", "lib/kafka/kafkajs/"];
const ADAPTER_PICKER = "lib/kafka/open.ts";

/** Imports of an adapter's files by product files other than the picker and the adapter. */
export function adapterImports(
  edges: ReadonlyMap<string, ReadonlySet<string>>,
): { file: string; imported: string }[] {
  const found: { file: string; imported: string }[] = [];
  for (const [file, imports] of edges) {
    if (file === ADAPTER_PICKER || CLIENT_IMPORT_EXEMPT.some((dir) => file.startsWith(dir))) {
      continue;
    }
    for (const imported of imports) {
      const folder = ADAPTER_FOLDERS.find((f) => imported.startsWith(f));
      if (folder !== undefined && !file.startsWith(folder)) found.push({ file, imported });
      // The boundary never reaches back up to the picker: callers open the client and pass it.
      if (imported === ADAPTER_PICKER && file.startsWith("lib/kafka/")) {
        found.push({ file, imported });
      }
    }
  }
  return found.sort((x, y) => x.file.localeCompare(y.file) || x.imported.localeCompare(y.imported));
}

interface InfoDependency {
  specifier: string;
  code?: { specifier?: string };
  type?: { specifier?: string };
}
interface InfoModule {
  specifier: string;
  dependencies?: InfoDependency[];
}

function isKafkaClient(specifier: string): boolean {
  const bare = specifier.replace(/^npm:\/?/, "");
  return KAFKA_CLIENTS.some((name) =>
    bare === name || bare.startsWith(`${name}@`) ||
    bare.startsWith(`${name}/`)
  );
}

/** Reads the graph of `files` (repository-relative) with one `deno info --json` call. */
export async function readGraph(root: string, files: string[]): Promise<ImportGraph> {
  const rootUrl = new URL(`file://${root.endsWith("/") ? root : root + "/"}`);
  await Deno.mkdir(`${root}/.cache`, { recursive: true });
  const entry = `${root}/.cache/import_graph_root.ts`;
  await Deno.writeTextFile(
    entry,
    files.map((f) => `import ${JSON.stringify(new URL(f, rootUrl).href)};`).join("\n") + "\n",
  );
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(
        `Cannot read the import graph: deno info failed: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: InfoModule[] };
    const local = (specifier: string | undefined): string | undefined => {
      if (!specifier?.startsWith(rootUrl.href)) return undefined;
      const path = decodeURIComponent(specifier.slice(rootUrl.href.length));
      return path.startsWith(".cache/") ? undefined : path;
    };
    const edges = new Map<string, Set<string>>();
    const clientImports: ImportGraph["clientImports"] = [];
    for (const module of info.modules) {
      const from = local(module.specifier);
      if (from === undefined) continue;
      const to = edges.get(from) ?? new Set<string>();
      edges.set(from, to);
      for (const dep of module.dependencies ?? []) {
        for (const target of [dep.code?.specifier, dep.type?.specifier]) {
          const path = local(target);
          if (path !== undefined) to.add(path);
          const client = (target !== undefined && isKafkaClient(target)) ||
            isKafkaClient(dep.specifier);
          if (
            client && !clientImports.some((c) => c.file === from && c.specifier === dep.specifier)
          ) {
            clientImports.push({ file: from, specifier: dep.specifier });
          }
        }
      }
    }
    return { edges, clientImports };
  } finally {
    await Deno.remove(entry).catch(() => {});
  }
}

/** The cycles of a graph: each strongly connected component of two or more files (or a self-import), as one cycle through it. */
export function findCycles(edges: Map<string, Set<string>>): string[][] {
  // Tarjan's strongly connected components, iterative.
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  for (const start of [...edges.keys()].sort()) {
    if (indices.has(start)) continue;
    const work: { node: string; next: string[] }[] = [];
    const open = (node: string) => {
      indices.set(node, index);
      low.set(node, index++);
      stack.push(node);
      onStack.add(node);
      work.push({ node, next: [...(edges.get(node) ?? [])].sort() });
    };
    open(start);
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      const child = top.next.shift();
      if (child !== undefined) {
        if (!indices.has(child)) open(child);
        else if (onStack.has(child)) {
          low.set(top.node, Math.min(low.get(top.node)!, indices.get(child)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(top.node)!));
      if (low.get(top.node) === indices.get(top.node)) {
        const component: string[] = [];
        let node: string;
        do {
          node = stack.pop()!;
          onStack.delete(node);
          component.push(node);
        } while (node !== top.node);
        const self = edges.get(top.node)?.has(top.node) ?? false;
        if (component.length > 1 || self) components.push(component.sort());
      }
    }
  }
  // One concrete cycle per component: a shortest path back to its first file.
  return components.map((component) => {
    const members = new Set(component);
    const first = component[0]!;
    const previous = new Map<string, string>();
    const queue = [first];
    const seen = new Set<string>();
    while (queue.length > 0) {
      const node = queue.shift()!;
      for (const next of [...(edges.get(node) ?? [])].sort()) {
        if (!members.has(next)) continue;
        if (next === first) {
          const path = [node];
          while (path[0] !== first) path.unshift(previous.get(path[0]!)!);
          return [...path, first];
        }
        if (!seen.has(next)) {
          seen.add(next);
          previous.set(next, node);
          queue.push(next);
        }
      }
    }
    return [first, first];
  });
}

/** Checks the tree at `root`: cycles and misplaced Kafka client imports. */
export async function checkImports(root: string, files?: string[]): Promise<ImportReport> {
  const tracked = files ?? await trackedTypeScript(root);
  const graph = await readGraph(root, tracked);
  return {
    modules: graph.edges.size,
    cycles: findCycles(graph.edges),
    misplaced: graph.clientImports.filter(({ file }) =>
      !file.startsWith("lib/kafka/") && !CLIENT_IMPORT_EXEMPT.some((dir) => file.startsWith(dir))
    ),
    adapterImports: adapterImports(graph.edges),
  };
}

async function trackedTypeScript(root: string): Promise<string[]> {
  const out = await new Deno.Command("git", {
    args: ["ls-files", "--cached", "--others", "--exclude-standard", "*.ts"],
    cwd: root,
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((f) => f.endsWith(".ts"));
}

if (import.meta.main) {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const report = await checkImports(root);
  if (Deno.args.includes("--json")) {
    console.log(JSON.stringify(report));
  } else {
    for (const cycle of report.cycles) {
      console.error(`import cycle: ${cycle.join(" -> ")}`);
    }
    for (const { file, specifier } of report.misplaced) {
      console.error(
        `Kafka client "${specifier}" imported by ${file}: only lib/kafka/ may import it`,
      );
    }
    for (const { file, imported } of report.adapterImports) {
      console.error(
        imported === ADAPTER_PICKER
          ? `${ADAPTER_PICKER} imported by ${file}: nothing inside lib/kafka/ imports the ` +
            `adapter picker; take the opened client from the caller`
          : `Kafka adapter file ${imported} imported by ${file}: only ${ADAPTER_PICKER} picks an ` +
            `adapter; import the contract (lib/kafka/types.ts) or open a client with openKafka`,
      );
    }
    console.error(
      `imports: ${report.modules} modules, ${report.cycles.length} cycles, ` +
        `${report.misplaced.length} Kafka client imports outside lib/kafka/, ` +
        `${report.adapterImports.length} adapter imports outside ${ADAPTER_PICKER}`,
    );
  }
  const problems = report.cycles.length + report.misplaced.length + report.adapterImports.length;
  Deno.exit(problems === 0 ? 0 : 1);
}
