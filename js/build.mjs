// Bundle every top-level js/*.ts view into nbexplain/static/<name>.js (ESM, minified, no CDN imports).
// `--watch` rebuilds on change (pair with ANYWIDGET_HMR=1 for hot reload); `--tests` bundles
// js/tests/*.test.ts for node's test runner into build/js-tests/.
// A build also copies the widget renderer for static HTML export (require.js, html-manager's
// embed-amd.js, their licences) into nbexplain/static/export/ (see nbexplain/export.py).
import * as esbuild from "esbuild";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
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

// [package, file inside it, name in nbexplain/static/export/, licence text committed in js/licenses/]
const exportAssets = [
  ["requirejs", "require.js", "require.js", "requirejs.LICENSE.txt"],
  ["@jupyter-widgets/html-manager", "dist/embed-amd.js", "embed-amd.js", "html-manager.LICENSE.txt"],
];

function copyExportAssets() {
  const out = join(root, "nbexplain", "static", "export");
  mkdirSync(out, { recursive: true });
  const notices = ["Third-party files in this folder (copied from npm by js/build.mjs):", ""];
  for (const [pkg, file, name, licence] of exportAssets) {
    const dir = join(root, "node_modules", ...pkg.split("/"));
    const src = join(dir, file);
    if (!existsSync(src)) {
      throw new Error(`${src} is missing: run \`npm install\` (it is a devDependency in package.json)`);
    }
    const { version, license } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    copyFileSync(src, join(out, name));
    copyFileSync(join(jsDir, "licenses", licence), join(out, licence));
    notices.push(`${name}: npm ${pkg}@${version} (${file}), ${license}; licence text in ${licence}`);
  }
  // html-manager's CSS loads Font Awesome's web fonts (hashed names) from beside its modules' URLs, which the
  // export points at this folder: ship the WOFF2 files (every browser that runs the page reads WOFF2).
  const dist = join(root, "node_modules", "@jupyter-widgets", "html-manager", "dist");
  const fonts = readdirSync(dist).filter((f) => f.endsWith(".woff2"));
  for (const font of fonts) copyFileSync(join(dist, font), join(out, font));
  if (fonts.length) {
    copyFileSync(join(jsDir, "licenses", "fontawesome-free.LICENSE.txt"), join(out, "fontawesome-free.LICENSE.txt"));
    notices.push(`${fonts.join(", ")}: Font Awesome Free web fonts bundled by html-manager (SIL OFL 1.1); ` +
      "licence text in fontawesome-free.LICENSE.txt");
  }
  // html-manager's bundle carries jQuery, jQuery UI and is-plain-object: keep their notices with it.
  const bundled = join(root, "node_modules", "@jupyter-widgets", "html-manager", "dist", "embed.js.LICENSE.txt");
  if (existsSync(bundled)) {
    copyFileSync(bundled, join(out, "embed-amd.bundled-notices.txt"));
    notices.push("embed-amd.js bundles code under the notices in embed-amd.bundled-notices.txt");
  }
  writeFileSync(join(out, "NOTICE.txt"), notices.join("\n") + "\n");
}

if (args.has("--tests")) {
  const testDir = join(jsDir, "tests");
  const entries = readdirSync(testDir).filter((f) => f.endsWith(".test.ts")).map((f) => join(testDir, f));
  await esbuild.build({ ...common, entryPoints: entries, outdir: join(root, "build", "js-tests"),
    platform: "node", outExtension: { ".js": ".mjs" }, logLevel: "warning" });
} else {
  const entries = readdirSync(jsDir).filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")).map((f) => join(jsDir, f));
  const options = { ...common, entryPoints: entries, outdir: join(root, "nbexplain", "static"), minify: true,
    platform: "browser" };
  copyExportAssets();
  if (args.has("--watch")) {
    const ctx = await esbuild.context(options);
    await ctx.watch();
    // esbuild's watch ends when stdin closes (NOTES.md); keep the process alive explicitly.
    process.stdin.resume();
  } else {
    await esbuild.build(options);
  }
}
