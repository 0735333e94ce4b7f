// The web UI of `tbkit serve` and `tbkit dev`: plain JavaScript, no build step, no dependency.
//
// The server sends each page's shell only; this script signs in (a token typed once, or from a `/?token=...`
// sign-in link, kept in sessionStorage) and reads everything through Tinybird's API with that token, so the
// UI shows nothing the token could not read with curl. Every value from the API is written with textContent:
// nothing the API returns is ever parsed as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "tbkit.token";
  const POLL_MS = 1000;
  const NUMERIC = /^(Nullable\()?(U?Int\d+|Float\d+|Decimal)/;

  // -- DOM -------------------------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const $ = (selector) => document.querySelector(selector);
  const number = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : String(n));
  const plural = (n, word) => `${number(n)} ${word}${n === 1 ? "" : "s"}`;

  function duration(seconds) {
    const ms = seconds * 1000;
    return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 1000 ? `${ms.toFixed(1)} ms` : `${seconds.toFixed(2)} s`;
  }

  function notice(kind, ...children) {
    return el("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : null }, ...children);
  }

  const empty = (text) => el("p", { class: "empty" }, text);

  // A datafile's DESCRIPTION, with its `backticked` names as code.
  function prose(text) {
    return el("p", { class: "description" }, text.split("`").map((part, i) => (i % 2 ? el("code", {}, part) : part)));
  }

  function replace(target, ...children) {
    target.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  }

  // -- the API ---------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  async function api(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` }, cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, `The server did not answer (${error.message}): is it still running?`);
    }
    const text = await response.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message);
    }
    return body;
  }

  const sql = (query) => api(`/v0/sql?q=${encodeURIComponent(query + " FORMAT JSON")}`);
  const quote = (name) => "`" + name.replaceAll("`", "``") + "`";

  function errorNotice(error, what) {
    const status = error.status ? ` (HTTP ${error.status})` : "";
    return notice("error", el("strong", {}, `${what} failed${status}: `), error.message);
  }

  // -- tables ----------------------------------------------------------------------------------------------

  function cell(value, type, wrap) {
    if (value === null || value === undefined) return el("td", { class: "null" }, "null");
    if (Array.isArray(value) && !value.length) return el("td", { class: "none" }, "none");
    const numeric = NUMERIC.test(type || "") || typeof value === "number";
    const flat = Array.isArray(value) && value.every((v) => typeof v !== "object");
    const text = flat ? value.join("; ") : typeof value === "object" ? JSON.stringify(value) : String(value);
    const cls = wrap ? `wrap ${wrap}` : numeric ? "num" : null;
    return el("td", { class: cls, title: !wrap && text.length > 60 ? text : null }, text);
  }

  // Rows as a table in a scroll container: the page never grows wider than the screen, headers stay in view.
  function table(meta, rows, options = {}) {
    if (!rows.length) return empty(options.empty || "No rows.");
    const head = el("tr", {}, meta.map((c) => el("th", { scope: "col", class: NUMERIC.test(c.type) ? "num" : null },
      el("span", { class: "col-name" }, c.name),
      c.type && options.types !== false ? el("span", { class: "col-type" }, c.type) : null)));
    const wrap = options.wrap || {};
    const body = rows.map((row) => el("tr", {}, meta.map((c) => cell(row[c.name], c.type, wrap[c.name]))));
    return el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": options.label || "Rows" },
      el("table", { class: "rows" }, el("thead", {}, head), el("tbody", {}, body)));
  }

  function copyButton(text) {
    const button = el("button", { type: "button", class: "copy" }, "Copy");
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(text);
      } catch {
        const area = el("textarea", { class: "offscreen" }, text);
        document.body.append(area);
        area.select();
        document.execCommand("copy");
        area.remove();
      }
      button.textContent = "Copied";
      setTimeout(() => (button.textContent = "Copy"), 1500);
    });
    return button;
  }

  function codeBlock(title, text, options = {}) {
    return el("div", { class: "code" },
      el("div", { class: "code-head" }, el("span", {}, title), options.copy ? copyButton(text) : null),
      el("pre", { class: options.class || null }, el("code", {}, text)));
  }

  // -- sign-in ---------------------------------------------------------------------------------------------

  // A sign-in link (`/?token=...`, printed by `tbkit serve`) stores its token, then drops it from the address bar
  // and the history, so it is not bookmarked, shared or left in the tab's history.
  function takeTokenFromAddress() {
    const url = new URL(window.location.href);
    if (!url.searchParams.has("token")) return;
    const value = url.searchParams.get("token").trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  function showSignIn(message) {
    $("#app").hidden = true;
    $("#sign-out").hidden = true;
    $("#sign-in").hidden = false;
    const error = $("#sign-in-error");
    error.hidden = !message;
    error.textContent = message || "";
    $("#token").focus();
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    window.location.reload(); // drops what the page read with the token, and stops any polling
  }

  // Any token of the workspace reads the OpenAPI document: it proves the token before the page asks for more.
  async function signIn() {
    if (!token()) return showSignIn("");
    let openapi;
    try {
      openapi = await api("/v0/pipes/openapi.json");
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        return showSignIn(`This token was refused: ${error.message}`);
      }
      return showSignIn(`Could not check the token: ${error.message}`);
    }
    $("#sign-in").hidden = true;
    $("#app").hidden = false;
    $("#sign-out").hidden = false;
    PAGES[document.body.dataset.page](openapi);
  }

  // -- sidebar lists ---------------------------------------------------------------------------------------

  // The item named by the address's fragment (`#name` or `#name?params`), else the first.
  function fragment() {
    const raw = window.location.hash.slice(1);
    const at = raw.indexOf("?");
    const name = decodeURIComponent(at < 0 ? raw : raw.slice(0, at));
    return { name, query: at < 0 ? "" : raw.slice(at + 1) };
  }

  function sidebar(items, render) {
    const list = $("#list");
    const links = new Map();
    replace(list, items.map((item) => {
      const link = el("a", { href: `#${item.name}` }, el("span", { class: "item-name" }, item.name),
        item.note ? el("span", { class: "item-note" }, item.note) : null, item.badge || null);
      links.set(item.name, link);
      return el("li", {}, link);
    }));
    const show = () => {
      const wanted = fragment();
      const item = items.find((i) => i.name === wanted.name) || items[0];
      for (const [name, link] of links) link.toggleAttribute("aria-current", name === item.name);
      render(item, wanted.name === item.name ? wanted.query : "");
    };
    window.addEventListener("hashchange", show);
    show();
  }

  // -- Endpoints -------------------------------------------------------------------------------------------

  function endpointsOf(openapi) {
    return Object.entries(openapi.paths || {})
      .map(([path, item]) => ({ path, ...item.get, name: item.get.operationId }))
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((e) => ({ ...e, note: e.summary !== e.name ? e.summary.replaceAll("`", "") : "" }));
  }

  function parameterInput(parameter, value) {
    const schema = parameter.schema || {};
    const id = `param-${parameter.name}`;
    const hint = schema.default !== undefined ? `default ${schema.default}` : schema.example !== undefined
      ? `e.g. ${schema.example}` : "";
    if (schema.enum) {
      return el("select", { id, name: parameter.name },
        el("option", { value: "" }, hint || "(any)"),
        schema.enum.map((v) => el("option", { value: v, selected: String(v) === value }, v)));
    }
    const type = schema.type === "integer" || schema.type === "number" ? "number" : "text";
    return el("input", { id, name: parameter.name, type, value: value || "", placeholder: hint,
      step: schema.type === "number" ? "any" : null, autocomplete: "off", spellcheck: "false" });
  }

  function parameterRow(parameter, value) {
    const schema = parameter.schema || {};
    return el("div", { class: "param" },
      el("label", { for: `param-${parameter.name}` },
        el("code", {}, parameter.name),
        parameter.required ? el("span", { class: "badge required" }, "required") : null,
        el("span", { class: "param-type" }, schema.enum ? "one of" : schema.type || "string")),
      parameterInput(parameter, value),
      parameter.description && parameter.description !== parameter.name
        ? el("p", { class: "param-doc" }, parameter.description) : null);
  }

  function curlFor(endpoint, query) {
    const url = `${window.location.origin}/v0/pipes/${endpoint.name}.json${query ? "?" + query : ""}`;
    return `curl -H "Authorization: Bearer $TB_TOKEN" \\\n  '${url.replaceAll("'", "'\\''")}'`;
  }

  function showEndpoint(endpoint, query) {
    const values = new URLSearchParams(query);
    const result = el("div", { class: "result" }, empty("Fill in the parameters and press Run."));
    const form = el("form", { class: "params", novalidate: true },
      (endpoint.parameters || []).length
        ? endpoint.parameters.map((p) => parameterRow(p, values.get(p.name)))
        : el("p", { class: "muted" }, "This endpoint takes no parameters."),
      el("div", { class: "actions" },
        el("button", { type: "submit", class: "primary" }, "Run"),
        el("button", { type: "button", class: "secondary", onclick: () => clear() }, "Clear")));
    const clear = () => {
      for (const field of form.querySelectorAll("input, select")) field.value = "";
      window.history.replaceState(null, "", `#${endpoint.name}`);
      replace(result, empty("Fill in the parameters and press Run."));
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const params = new URLSearchParams();
      for (const [name, value] of new FormData(form)) if (String(value).trim() !== "") params.append(name, value);
      const text = params.toString();
      window.history.replaceState(null, "", `#${endpoint.name}${text ? "?" + text : ""}`);
      runEndpoint(endpoint, text, result);
    });
    replace($("#detail"),
      el("header", { class: "detail-head" }, el("h1", {}, endpoint.name),
        el("code", { class: "path" }, `GET ${endpoint.path}`)),
      endpoint.description ? prose(endpoint.description) : null,
      form, result);
    if (query) runEndpoint(endpoint, query, result);
  }

  async function runEndpoint(endpoint, query, target) {
    replace(target, el("p", { class: "muted" }, "Running…"));
    const curl = codeBlock("curl", curlFor(endpoint, query), { copy: true });
    const started = performance.now();
    let body;
    try {
      body = await api(`/v0/pipes/${endpoint.name}.json${query ? "?" + query : ""}`);
    } catch (error) {
      replace(target, errorNotice(error, "The call"), curl);
      return;
    }
    const roundTrip = (performance.now() - started) / 1000;
    const stats = body.statistics || {};
    const sqlBlock = el("div", { class: "sql" }, el("p", { class: "muted" }, "Loading the SQL…"));
    replace(target,
      el("ul", { class: "facts", "aria-label": "Result" },
        el("li", {}, el("strong", {}, plural(body.rows, "row"))),
        el("li", {}, el("strong", {}, duration(stats.elapsed || 0)), " on the server"),
        el("li", {}, el("strong", {}, duration(roundTrip)), " round trip"),
        el("li", {}, el("strong", {}, number(stats.rows_read || 0)), " rows read"),
        el("li", {}, el("strong", {}, number(stats.bytes_read || 0)), " bytes read")),
      table(body.meta || [], body.data || [], { empty: "No rows for these parameters.", label: "Result rows" }),
      sqlBlock, curl);
    try {
      const explained = await api(`/v0/pipes/${endpoint.name}/explain${query ? "?" + query : ""}`);
      replace(sqlBlock, codeBlock("SQL that ran", explained.debug_query, { copy: true, class: "sql-text" }));
    } catch (error) {
      const why = error.status === 403 ? "The SQL is shown to the admin token only." : error.message;
      replace(sqlBlock, el("p", { class: "muted" }, why));
    }
  }

  function renderEndpoints(openapi) {
    const endpoints = endpointsOf(openapi);
    if (!endpoints.length) {
      replace($("#list"));
      replace($("#detail"), empty("This token reads no endpoint."));
      return;
    }
    sidebar(endpoints, showEndpoint);
  }

  // -- Datasources -----------------------------------------------------------------------------------------

  // The column that orders a datasource's latest rows: its first DateTime, preferring an ingestion timestamp.
  function timeColumn(columns) {
    const times = columns.filter((c) => /DateTime/.test(c.type) && !/AggregateFunction/.test(c.type));
    return times.find((c) => /^(timestamp|updated_at|insertion_date)$/.test(c.name)) || times[0] || null;
  }

  const QUARANTINE_FIRST = ["insertion_date", "c__error_column", "c__error"];
  const QUARANTINE_LAST = ["c__import_id", "c__line"];

  async function loadRows(target, query, options) {
    try {
      const body = await sql(query);
      let meta = body.meta || [];
      if (options.first) {  // Tinybird's quarantine columns: the errors first, the import and line last
        const pick = (names) => names.map((n) => meta.find((c) => c.name === n)).filter(Boolean);
        const rest = meta.filter((c) => !options.first.includes(c.name) && !options.last.includes(c.name));
        meta = [...pick(options.first), ...rest, ...pick(options.last)];
      }
      replace(target, table(meta, body.data || [], options));
    } catch (error) {
      replace(target, errorNotice(error, "Reading the rows"));
    }
  }

  function section(title, note, content) {
    return el("section", { class: "panel" },
      el("header", { class: "panel-head" }, el("h2", {}, title), note ? el("span", { class: "muted" }, note) : null),
      content);
  }

  let opened = 0; // the latest datasource asked for: an answer for an earlier click is dropped

  async function showDatasource(item) {
    const detail = $("#detail");
    const ticket = ++opened;
    let datasource;
    try {
      const listed = await api("/v0/datasources");
      datasource = listed.datasources.find((d) => d.name === item.name) || item;
    } catch (error) {
      if (ticket === opened) replace(detail, errorNotice(error, "Reading the datasource"));
      return;
    }
    if (ticket !== opened) return;
    const stats = datasource.statistics || {};
    const engine = datasource.engine || {};
    const order = timeColumn(datasource.columns || []);
    const latest = el("div", {}, el("p", { class: "muted" }, "Loading…"));
    const quarantine = el("div", {}, el("p", { class: "muted" }, "Loading…"));
    const schema = table(
      [{ name: "column" }, { name: "type" }, { name: "json path" }, { name: "default" }],
      (datasource.columns || []).map((c) => ({
        column: c.name, type: c.type, "json path": c.jsonpath || "", default: c.default_value || "",
      })),
      { empty: "No columns.", label: "Schema" });
    const refresh = el("button", { type: "button", class: "secondary", onclick: () => showDatasource(item) },
      "Refresh");
    replace(detail,
      el("header", { class: "detail-head" }, el("h1", {}, datasource.name), refresh),
      datasource.description ? prose(datasource.description) : null,
      el("ul", { class: "facts", "aria-label": "Datasource" },
        el("li", {}, el("strong", {}, number(stats.row_count || 0)), " rows"),
        el("li", { class: datasource.quarantine_rows ? "warn" : null },
          el("strong", {}, number(datasource.quarantine_rows || 0)), " in quarantine"),
        el("li", {}, el("strong", {}, engine.engine || "?"), engine.engine_sorting_key
          ? ` sorted by ${engine.engine_sorting_key}` : ""),
        (datasource.materialized_from || []).length
          ? el("li", {}, "written by ", datasource.materialized_from.map((p) => p.name).join(", ")) : null),
      section("Schema", plural((datasource.columns || []).length, "column"), schema),
      section("Latest rows", order ? `the 10 latest by ${order.name}` : "10 rows", latest),
      section("Quarantine", "rows that did not fit, latest first, with their errors", quarantine));
    const by = order ? ` ORDER BY ${quote(order.name)} DESC` : "";
    loadRows(latest, `SELECT * FROM ${quote(datasource.name)}${by} LIMIT 10`,
      { empty: "No rows yet.", label: "Latest rows" });
    loadRows(quarantine, `SELECT * FROM ${quote(datasource.name + "_quarantine")} ORDER BY insertion_date DESC LIMIT 50`,
      { empty: "No rows in quarantine.", label: "Quarantine rows", first: QUARANTINE_FIRST,
        last: QUARANTINE_LAST, wrap: { c__error: "error-text" } });
  }

  async function renderDatasources() {
    let listed;
    try {
      listed = await api("/v0/datasources");
    } catch (error) {
      replace($("#list"));
      replace($("#detail"), errorNotice(error, "Listing the datasources"));
      return;
    }
    const items = listed.datasources.map((d) => ({
      ...d,
      note: plural((d.statistics || {}).row_count || 0, "row"),
      badge: d.quarantine_rows ? el("span", { class: "badge warn", title: "rows in quarantine" },
        `${number(d.quarantine_rows)} quarantined`) : null,
    }));
    if (!items.length) {
      replace($("#detail"), empty("This token reads no datasource."));
      return;
    }
    sidebar(items, showDatasource);
  }

  // -- Checks ----------------------------------------------------------------------------------------------

  function differences(lines) {
    return el("pre", { class: "diff" }, lines.map((line) => el("span", {
      class: /^\s*[-]/.test(line) ? "del" : /^\s*[+]/.test(line) ? "add" : /^\s*~/.test(line) ? "chg" : null,
    }, line + "\n")));
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleTimeString();
  }

  function renderSnapshot(state) {
    const failed = state.results.filter((r) => r.outcome === "failed");
    const passed = state.results.filter((r) => r.outcome !== "failed");
    const status = state.running ? ["running", "Running…"] : state.build_error ? ["bad", "Build error"]
      : failed.length ? ["bad", `${failed.length} failed`] : state.results.length ? ["good", "All passed"]
        : ["idle", "No run yet"];
    const error = state.build_error;
    replace($("#detail"),
      el("header", { class: "detail-head" }, el("h1", {}, "Checks"),
        el("span", { class: `status ${status[0]}`, role: "status" }, status[1])),
      el("ul", { class: "facts", "aria-label": "Last run" },
        el("li", { class: "good-text" }, el("strong", {}, number(state.passed)), " passed"),
        el("li", { class: state.failed ? "bad-text" : null }, el("strong", {}, number(state.failed)), " failed"),
        el("li", {}, `run ${state.generation}`, state.finished_at ? `, finished at ${when(state.finished_at)}` : ""),
        state.changed.length ? el("li", {}, "after a change to ", el("code", {}, state.changed.join(", "))) : null),
      error ? notice("error", el("strong", {}, "The project does not build: "),
        el("code", {}, `${error.file}${error.line ? ":" + error.line : ""}`), ` ${error.message}`,
        el("br"), "The cases below are from the last good build.") : null,
      failed.length ? el("section", { class: "panel" },
        el("header", { class: "panel-head" }, el("h2", {}, "Failing cases")),
        failed.map((r) => el("article", { class: "case failed" },
          el("h3", {}, el("span", { class: "mark" }, "✗"), el("code", {}, `${r.endpoint}/${r.case}`),
            el("span", { class: "muted" }, `${r.ms.toFixed(1)} ms`)),
          r.differences.length ? differences(r.differences) : null))) : null,
      el("section", { class: "panel" },
        el("header", { class: "panel-head" }, el("h2", {}, "Passing cases"),
          el("span", { class: "muted" }, plural(passed.length, "case"))),
        table([{ name: "endpoint" }, { name: "case" }, { name: "outcome" }, { name: "ms", type: "Float64" }],
          passed.map((r) => ({ ...r, ms: r.ms.toFixed(1) })),
          { empty: failed.length ? "No case passes." : "No case has run yet.", label: "Passing cases", types: false })));
  }

  // Poll while the tab is visible, and redraw only when the state changed (a new run, or one starting).
  function renderChecks() {
    let shown = null;
    let timer = null;
    let busy = false;
    const tick = async () => {
      timer = null;
      if (busy) return;
      busy = true;
      try {
        const state = await api("/v0/tbkit/checks");
        const key = `${state.generation}:${state.running}`;
        if (key !== shown) {
          shown = key;
          renderSnapshot(state);
        }
      } catch (error) {
        shown = null;
        if (error.status === 404) {
          shown = "serve";
          replace($("#detail"), el("h1", {}, "Checks"), notice("info",
            "Checks run under ", el("code", {}, "tbkit dev"), ", which reruns the golden cases of the endpoints a ",
            "save affects and shows the outcome here. This server is ", el("code", {}, "tbkit serve"), "."));
          return; // nothing will change under `tbkit serve`: stop polling
        }
        replace($("#detail"), el("h1", {}, "Checks"), errorNotice(error, "Reading the checks"));
      } finally {
        busy = false;
      }
      if (document.visibilityState === "visible") timer = setTimeout(tick, POLL_MS);
    };
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && timer === null && shown !== "serve") tick();
    });
    tick();
  }

  const PAGES = { endpoints: renderEndpoints, datasources: renderDatasources, checks: renderChecks };

  document.addEventListener("DOMContentLoaded", () => {
    takeTokenFromAddress();
    $("#sign-out").addEventListener("click", signOut);
    $("#sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("#token").value.trim();
      if (!value) return showSignIn("Paste a token first.");
      sessionStorage.setItem(TOKEN_KEY, value);
      $("#token").value = "";
      signIn();
    });
    signIn();
  });
})();
