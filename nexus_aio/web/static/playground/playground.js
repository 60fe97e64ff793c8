// nexus_aio playground: a form generated from the workflow's input JSON schema (embedded by the
// server in #playground-config), run through the ordinary execute route in sync or stream mode.
// Every piece of data is written with textContent, never as HTML.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("playground-config").textContent);
  const root = config.schema || {};
  const form = document.getElementById("inputs");
  const fieldsBox = document.getElementById("fields");
  const runButton = document.getElementById("run");
  const streamButton = document.getElementById("stream");
  const tokenInput = document.getElementById("token");
  const statusLine = document.getElementById("status");
  const progressBox = document.getElementById("progress-box");
  const progressBar = document.getElementById("progress");
  const progressMessage = document.getElementById("progress-message");
  const eventList = document.getElementById("events");
  const resultBox = document.getElementById("result");
  const executionLink = document.getElementById("execution-link");
  const curlBox = document.getElementById("curl");
  const TOKEN_KEY = "nexus_aio.playground.token";

  // -- the schema ---------------------------------------------------------------------------
  function lookup(ref) {
    const places = [
      ["#/$defs/", root.$defs],
      ["#/definitions/", root.definitions],
      ["#/components/schemas/", (root.components || {}).schemas],
    ];
    for (const [start, table] of places) {
      if (table && ref.startsWith(start)) {
        const key = decodeURIComponent(ref.slice(start.length)).replace(/~1/g, "/").replace(/~0/g, "~");
        return table[key] || null;
      }
    }
    return null;
  }

  function resolve(schema) {
    let current = schema || {};
    for (let depth = 0; current.$ref && depth < 32; depth++) {
      const target = lookup(current.$ref);
      const rest = Object.assign({}, current);
      delete rest.$ref;
      current = Object.assign({}, target || {}, rest);
    }
    return current;
  }

  // `X | None` as anyOf/oneOf [X, null] or type [x, "null"]: the X, marked nullable.
  function unwrap(schema) {
    let s = resolve(schema);
    const branches = s.anyOf || s.oneOf;
    if (Array.isArray(branches)) {
      const others = branches.filter((b) => resolve(b).type !== "null");
      if (others.length === 1 && others.length < branches.length) {
        const outer = Object.assign({}, s);
        delete outer.anyOf;
        delete outer.oneOf;
        s = Object.assign({}, resolve(others[0]), outer, { nullable: true });
      }
    }
    if (Array.isArray(s.type)) {
      const types = s.type.filter((t) => t !== "null");
      if (types.length === 1) {
        s = Object.assign({}, s, { type: types[0], nullable: types.length < s.type.length });
      }
    }
    return s;
  }

  function isBinary(s) {
    return s.type === "string" && s.format === "binary";
  }

  function kindOf(s) {
    if (isBinary(s)) return "file";
    if (s.type === "array" && s.items && isBinary(unwrap(s.items))) return "files";
    if (Array.isArray(s.enum)) return "select";
    if ("const" in s) return "select";
    if (s.type === "boolean") return "checkbox";
    if (s.type === "integer") return "integer";
    if (s.type === "number") return "number";
    if (s.type === "string") return "text";
    return "json"; // objects, arrays, unions, anything else
  }

  function typeLabel(s, kind) {
    if (kind === "file") return "file";
    if (kind === "files") return "files";
    if (kind === "select") return "one of";
    if (kind === "json") return s.type === "array" ? "JSON array" : s.type === "object" ? "JSON object" : "JSON";
    return s.type;
  }

  // -- the form -----------------------------------------------------------------------------
  const fields = [];
  const required = new Set(root.required || []);
  const properties = root.properties || {};

  function element(tag, attrs, text) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function buildControl(field) {
    const { name, schema, kind, id } = field;
    const hasDefault = "default" in schema && schema.default !== null;
    let control;
    if (kind === "select") {
      control = element("select", { id, name });
      field.options = Array.isArray(schema.enum) ? schema.enum : [schema.const];
      if (!field.required || !hasDefault) control.appendChild(element("option", { value: "" }, "—"));
      field.options.forEach((value, index) => {
        const option = element("option", { value: String(index) }, typeof value === "string" ? value : JSON.stringify(value));
        if (hasDefault && JSON.stringify(value) === JSON.stringify(schema.default)) option.selected = true;
        control.appendChild(option);
      });
    } else if (kind === "checkbox") {
      control = element("input", { id, name, type: "checkbox" });
      control.checked = schema.default === true;
    } else if (kind === "integer" || kind === "number") {
      control = element("input", { id, name, type: "number", step: kind === "integer" ? "1" : "any" });
      if (hasDefault) control.value = String(schema.default);
    } else if (kind === "text") {
      control = element("input", { id, name, type: "text" });
      if (hasDefault) control.value = schema.default;
    } else if (kind === "file" || kind === "files") {
      control = element("input", { id, name, type: "file" });
      if (kind === "files") control.multiple = true;
      if (schema.contentMediaType) control.accept = schema.contentMediaType;
    } else {
      control = element("textarea", { id, name, rows: "4", spellcheck: "false", class: "json" });
      control.placeholder = schema.type === "array" ? "[]" : schema.type === "object" ? "{}" : "JSON";
      if (hasDefault) control.value = JSON.stringify(schema.default, null, 2);
      control.addEventListener("input", () => checkJson(field));
    }
    if (field.required && kind !== "checkbox") control.required = true;
    return control;
  }

  function checkJson(field) {
    const text = field.control.value.trim();
    let problem = "";
    if (text) {
      try {
        JSON.parse(text);
      } catch (err) {
        problem = "not valid JSON: " + err.message;
      }
    }
    field.control.setCustomValidity(problem);
    field.problem.textContent = problem;
    return problem;
  }

  Object.keys(properties).forEach((name, index) => {
    const schema = unwrap(properties[name]);
    const kind = kindOf(schema);
    const field = { name, schema, kind, id: "input-" + index, required: required.has(name) };
    const box = element("div", { class: "field field-" + kind });
    const label = element("label", { for: field.id });
    label.appendChild(element("span", { class: "name" }, name));
    label.appendChild(element("span", { class: "type" }, typeLabel(schema, kind)));
    if (field.required) label.appendChild(element("span", { class: "required" }, "required"));
    box.appendChild(label);
    field.control = buildControl(field);
    box.appendChild(field.control);
    const about = schema.description || schema.title;
    if (about) box.appendChild(element("p", { class: "hint" }, about));
    field.problem = element("p", { class: "problem", "aria-live": "polite" });
    box.appendChild(field.problem);
    fieldsBox.appendChild(box);
    fields.push(field);
  });
  if (!fields.length) fieldsBox.appendChild(element("p", { class: "hint" }, "This workflow takes no inputs."));
  const multipart = fields.some((f) => f.kind === "file" || f.kind === "files");

  // -- reading the form ---------------------------------------------------------------------
  function collect() {
    const inputs = {};
    const files = [];
    const problems = [];
    for (const field of fields) {
      const { name, kind, control } = field;
      let problem = "";
      if (kind === "checkbox") {
        inputs[name] = control.checked;
      } else if (kind === "file" || kind === "files") {
        if (control.files.length) {
          for (const file of control.files) files.push({ name, file });
        } else if (field.required) {
          problem = "choose a file";
        }
      } else if (kind === "json") {
        const text = control.value.trim();
        problem = checkJson(field);
        if (!problem && text) inputs[name] = JSON.parse(text);
        else if (!problem && field.required) problem = "required";
      } else if (control.value === "" && kind !== "text") {
        if (field.required) problem = "required";
      } else if (kind === "select") {
        inputs[name] = field.options[Number(control.value)];
      } else if (kind === "integer" || kind === "number") {
        const value = Number(control.value);
        if (!Number.isFinite(value) || (kind === "integer" && !Number.isInteger(value))) {
          problem = kind === "integer" ? "must be an integer" : "must be a number";
        } else {
          inputs[name] = value;
        }
      } else if (control.value !== "" || field.required) {
        inputs[name] = control.value;
      }
      if (kind !== "json") field.problem.textContent = problem;
      if (problem) problems.push(name + ": " + problem);
    }
    return { inputs, files, problems };
  }

  // -- the request, and the same request as curl --------------------------------------------
  function request(mode, collected) {
    const headers = {};
    let body;
    if (multipart) {
      body = new FormData();
      for (const { name, file } of collected.files) body.append(name, file, file.name);
      body.append("inputs", JSON.stringify(collected.inputs));
      if (mode === "stream") body.append("mode", "stream");
    } else {
      headers["Content-Type"] = "application/json";
      const payload = { inputs: collected.inputs };
      if (mode === "stream") payload.mode = "stream";
      body = JSON.stringify(payload);
    }
    headers.Accept = mode === "stream" ? "text/event-stream" : "application/json";
    const token = tokenInput.value.trim();
    if (token) headers.Authorization = "Bearer " + token;
    return { method: "POST", headers, body };
  }

  function shellQuote(text) {
    return "'" + String(text).replace(/'/g, "'\\''") + "'";
  }

  function curlCommand(mode, collected) {
    const parts = ["curl"];
    if (mode === "stream") parts.push("-N");
    if (multipart) {
      for (const field of fields) {
        if (field.kind !== "file" && field.kind !== "files") continue;
        const chosen = collected.files.filter((f) => f.name === field.name);
        const names = chosen.length ? chosen.map((f) => f.file.name) : ["path/to/file"];
        for (const filename of names) parts.push("-F " + shellQuote(field.name + "=@" + filename));
      }
      parts.push("-F " + shellQuote("inputs=" + JSON.stringify(collected.inputs)));
      if (mode === "stream") parts.push("-F mode=stream");
    } else {
      const payload = { inputs: collected.inputs };
      if (mode === "stream") payload.mode = "stream";
      parts.push("-H 'Content-Type: application/json'");
      parts.push("-d " + shellQuote(JSON.stringify(payload)));
    }
    if (mode === "stream") parts.push("-H 'Accept: text/event-stream'");
    if (tokenInput.value.trim()) parts.push('-H "Authorization: Bearer $NEXUS_TOKEN"');
    parts.push(shellQuote(new URL(config.execute, window.location.href).href));
    return parts.join(" \\\n  ");
  }

  function showCurl(mode) {
    curlBox.textContent = curlCommand(mode, collect());
  }

  // -- output -------------------------------------------------------------------------------
  function setStatus(state, text) {
    statusLine.dataset.state = state;
    statusLine.textContent = text;
  }

  function showResult(value) {
    resultBox.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }

  function linkExecution(id) {
    if (!id || typeof id !== "string") return;
    executionLink.href = config.executions + encodeURIComponent(id);
    executionLink.textContent = "Execution record " + id;
    executionLink.hidden = false;
  }

  function reset() {
    eventList.replaceChildren();
    resultBox.textContent = "";
    executionLink.hidden = true;
    executionLink.removeAttribute("href");
    progressBox.hidden = true;
    progressBar.value = 0;
    progressMessage.textContent = "";
  }

  function showEvent(type, data, id) {
    if (type === "keepalive") return;
    const item = element("li", { class: "event event-" + type.replace(/[^A-Za-z0-9_-]/g, "_") });
    if (id) item.dataset.id = id;
    item.appendChild(element("span", { class: "event-type" }, type));
    item.appendChild(element("code", {}, typeof data === "string" ? data : JSON.stringify(data)));
    eventList.appendChild(item);
    if (type === "start" && data) linkExecution(data.workflow_id);
    if (type === "progress" && data && typeof data.fraction === "number") {
      progressBox.hidden = false;
      progressBar.value = data.fraction;
      progressMessage.textContent = data.message || Math.round(data.fraction * 100) + "%";
    }
    if (type === "complete" || type === "error") {
      showResult(data);
      if (data) linkExecution(data.workflow_id);
    }
  }

  function parseData(text) {
    try {
      return JSON.parse(text);
    } catch (err) {
      return text;
    }
  }

  // One SSE frame: "event:", "data:" (joined by newlines), "id:"; comments start with ":".
  function readFrame(frame) {
    let type = "message";
    let id = "";
    const data = [];
    for (const line of frame.split(/\r\n|\r|\n/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const key = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (key === "event") type = value;
      else if (key === "data") data.push(value);
      else if (key === "id") id = value;
    }
    if (!data.length) return null;
    return { type, id, data: parseData(data.join("\n")) };
  }

  async function readStream(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let last = null;
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      const frames = buffer.split(/\r\n\r\n|\n\n|\r\r/);
      buffer = done ? "" : frames.pop();
      for (const frame of frames) {
        const event = readFrame(frame);
        if (!event) continue;
        showEvent(event.type, event.data, event.id);
        last = event.type;
      }
      if (done) return last;
    }
  }

  async function run(mode) {
    const collected = collect();
    curlBox.textContent = curlCommand(mode, collected);
    if (collected.problems.length) {
      setStatus("invalid", "Fix the form: " + collected.problems.join("; "));
      return;
    }
    reset();
    runButton.disabled = streamButton.disabled = true;
    setStatus("running", mode === "stream" ? "Streaming…" : "Running…");
    try {
      const response = await fetch(config.execute, request(mode, collected));
      const type = response.headers.get("Content-Type") || "";
      if (mode === "stream" && response.ok && type.startsWith("text/event-stream")) {
        const last = await readStream(response);
        const ok = last === "complete";
        setStatus(ok ? "done" : "failed", ok ? "Stream complete" : "Stream ended with " + (last || "no event"));
        return;
      }
      const text = await response.text();
      const body = type.includes("json") ? parseData(text) : text;
      showResult(body);
      if (body && typeof body === "object") linkExecution(body.workflow_id);
      const ok = response.ok && !(body && body.success === false);
      setStatus(ok ? "done" : "failed", "HTTP " + response.status + (ok ? "" : " (" + ((body && body.error && body.error.type) || response.statusText) + ")"));
    } catch (err) {
      setStatus("failed", "Request failed: " + err.message);
    } finally {
      runButton.disabled = streamButton.disabled = false;
    }
  }

  // -- wiring -------------------------------------------------------------------------------
  try {
    tokenInput.value = window.sessionStorage.getItem(TOKEN_KEY) || "";
  } catch (err) {
    // storage may be unavailable (privacy settings): the token is then typed each time
  }
  tokenInput.addEventListener("change", () => {
    try {
      window.sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
    } catch (err) {
      // see above
    }
    showCurl("sync");
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run("sync");
  });
  streamButton.addEventListener("click", () => run("stream"));
  form.addEventListener("input", () => showCurl("sync"));
  form.addEventListener("change", () => showCurl("sync"));
  showCurl("sync");
  document.body.dataset.ready = "true";
})();
