// Builds one JavaScript/TypeScript function for Gust (run by `gust build`
// from the JS toolchain folder, where rolldown and componentize-js are
// installed): bundles the generated entry module, the function's code, its
// npm dependencies and @gust/sdk into one ES module, then makes a
// WebAssembly component of it with componentize-js.
//
// usage: node js-build.mjs <entry> <sdk-dir> <wit-dir> <world> <bundle-out> <component-out>
import { writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { rolldown } from "rolldown";
import { componentize } from "@bytecodealliance/componentize-js";

const [entry, sdk, wit, world, bundleOut, out] = process.argv.slice(2);

function fail(stage, e) {
  const text = e && e.message ? e.message : String(e);
  process.stderr.write(`${stage} failed:\n${text.trimEnd()}\n`);
  process.exit(1);
}

let bundle;
try {
  bundle = await rolldown({
    input: entry,
    cwd: dirname(entry),
    platform: "neutral",
    external: [/^wasi:/, /^gust:/],
    resolve: {
      alias: { "@gust/sdk": sdk },
      mainFields: ["module", "main"],
      conditionNames: ["import", "default"],
    },
    // Host interfaces the code does not use are left out of the bundle.
    treeshake: { moduleSideEffects: (_id, external) => !external },
    logLevel: "warn",
    onLog(level, log) {
      if (level === "warn") process.stderr.write(`warning: ${log.message}\n`);
    },
  });
  const { output } = await bundle.generate({ format: "esm", codeSplitting: false });
  await writeFile(bundleOut, output[0].code);
} catch (e) {
  fail("bundling", e);
}

try {
  const { component } = await componentize({
    sourcePath: bundleOut,
    witPath: wit,
    worldName: world,
  });
  await writeFile(out, component);
} catch (e) {
  fail("componentize-js", e);
}
