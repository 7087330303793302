// Bundle every top-level js/*.ts view into nbexplain/static/<name>.js (ESM, minified, no CDN imports).
// `--watch` rebuilds on change (pair with ANYWIDGET_HMR=1 for hot reload); `--tests` bundles
// js/tests/*.test.ts for node's test runner into build/js-tests/.
import * as esbuild from "esbuild";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const jsDir = join(root, "js");
const args = new Set(process.argv.slice(2));

const common = {
  bundle: true,
  format: "esm",
  target: "es2020",
  loader: { ".css": "text" },
  logLevel: "info",
  legalComments: "none",
};

if (args.has("--tests")) {
  const testDir = join(jsDir, "tests");
  const entries = readdirSync(testDir).filter((f) => f.endsWith(".test.ts")).map((f) => join(testDir, f));
  await esbuild.build({ ...common, entryPoints: entries, outdir: join(root, "build", "js-tests"),
    platform: "node", outExtension: { ".js": ".mjs" }, logLevel: "warning" });
} else {
  const entries = readdirSync(jsDir).filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")).map((f) => join(jsDir, f));
  const options = { ...common, entryPoints: entries, outdir: join(root, "nbexplain", "static"), minify: true,
    platform: "browser" };
  if (args.has("--watch")) {
    const ctx = await esbuild.context(options);
    await ctx.watch();
    // esbuild's watch ends when stdin closes (NOTES.md); keep the process alive explicitly.
    process.stdin.resume();
  } else {
    await esbuild.build(options);
  }
}
