// Copies the browser files of the npm packages the web UI uses into the Python package
// (src/crmkit/web/static/vendor), where `crmkit serve` serves them and the wheel ships them.
// The copies are build output: gitignored, rebuilt by `make install` from package-lock.json.
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { readFileSync } from "node:fs";

const modules = new URL("../node_modules/", import.meta.url).pathname;
const target = new URL("../src/crmkit/web/static/vendor/", import.meta.url).pathname;

// package file -> name under static/vendor
const files = {
  "htmx.org/dist/htmx.min.js": "htmx.min.js",
  "sortablejs/Sortable.min.js": "Sortable.min.js",
  "fullcalendar/index.global.min.js": "fullcalendar.min.js",
  "@fullcalendar/core/locales/ru.global.min.js": "fullcalendar-ru.min.js",
  "chart.js/dist/chart.umd.min.js": "chart.umd.min.js",
  "@picocss/pico/css/pico.min.css": "pico.min.css",
};

rmSync(target, { recursive: true, force: true });
mkdirSync(target, { recursive: true });
const versions = {};
for (const [source, name] of Object.entries(files)) {
  // plain paths: some packages' "exports" hide their browser bundles from require.resolve
  copyFileSync(join(modules, source), join(target, name));
  const pkg = source.startsWith("@") ? source.split("/").slice(0, 2).join("/") : source.split("/")[0];
  versions[pkg] = JSON.parse(readFileSync(join(modules, pkg, "package.json"), "utf8")).version;
}
writeFileSync(join(target, "versions.json"), JSON.stringify(versions, null, 2) + "\n");
console.log(`web assets: ${Object.keys(files).length} files in ${dirname(target + "x")}`);
