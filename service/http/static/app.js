// AstroVision's page: plain JS over the JSON API (no build step).
"use strict";

const $ = (id) => document.getElementById(id);
// rows of the features table: [label, where the record keeps it, column, its error column]
const FEATURES = [
  ["label_name", "catalogue", "label_name"], ["ra", "catalogue", "ra"], ["dec", "catalogue", "dec"],
  ["redshift", "catalogue", "redshift"],
  ["morph band", "morph", "band"], ["gini", "morph", "gini"], ["m20", "morph", "m20"],
  ["concentration", "morph", "concentration"], ["asymmetry", "morph", "asymmetry"],
  ["smoothness", "morph", "smoothness"], ["sersic_n", "morph", "sersic_n"],
  // SDSS photometry as the record names it (the galaxy_features view: mag_r is modelMag_r)
  ["petroMag_r", "photometry", "petroMag_r", "petroMagErr_r"],
  ["modelMag_r", "photometry", "modelMag_r", "modelMagErr_r"],
  ["abs_mag_r", "photometry", "abs_mag_r"], ["g_r", "photometry", "g_r"], ["specz", "photometry", "specz"],
];
const TOKEN_KEY = "astrovision-token";

function token() { return sessionStorage.getItem(TOKEN_KEY); }

let declined = false;  // the person cancelled the token prompt: not asked again until their next search

function askToken(used) {
  // one prompt for the requests of a search: those answered 401 after another one asked retry with its token
  if (token() !== used) return true;
  if (declined) return false;
  const given = prompt(used ? "That API token was refused; this server needs its API token"
                            : "This server needs its API token");
  if (given && given.trim()) {
    sessionStorage.setItem(TOKEN_KEY, given.trim());  // kept for this tab: reloads do not ask again
    return true;
  }
  declined = true;
  return false;
}

async function api(path, options = {}) {
  const used = token();
  const headers = Object.assign({}, options.headers || {});
  if (used) headers["Authorization"] = "Bearer " + used;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401 && askToken(used)) return api(path, options);
  let body;
  try {
    body = await response.json();
  } catch {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function clearResults() {
  for (const id of ["query", "lookalikes", "strange"]) $(id).hidden = true;
  for (const id of ["features", "predictions", "grid", "strange-grid"]) $(id).replaceChildren();
  $("query-title").textContent = "";
  $("lookalike-note").textContent = "";
  $("query-image").removeAttribute("src");
}

function showError(message) {
  // an error replaces the answer: nothing of an earlier galaxy stays under it
  if (message) clearResults();
  $("error").textContent = message;
  $("error").hidden = !message;
}

function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toPrecision(4);
  return String(value);
}

function percent(p) {
  // a probability as people read it: 1 decimal, never 3.554e-9
  if (p === null || p === undefined || Number.isNaN(p)) return "—";
  if (p <= 0) return "0%";
  if (p < 0.0005) return "<0.1%";
  if (p >= 1) return "100%";
  if (p > 0.9995) return ">99.9%";
  return (100 * p).toFixed(1) + "%";
}

function imageUrl(id) { return "/galaxies/" + encodeURIComponent(id) + "/image.png"; }

async function imageInto(img, id) {
  // fetched with the token when one is set, so images load on a protected server too
  if (!token()) { img.src = imageUrl(id); return; }
  const r = await fetch(imageUrl(id), { headers: { Authorization: "Bearer " + token() } });
  if (r.ok) img.src = URL.createObjectURL(await r.blob());
}

function primaryBand(morphometrics) {
  // the band the galaxy_features view reads: r, else luminance, else the first measured
  const rows = morphometrics || [];
  return rows.find((m) => m.band === "r") || rows.find((m) => m.band === "luminance") || rows[0] || {};
}

function featureRows(rec) {
  const parts = { catalogue: rec.catalogue, morph: primaryBand(rec.morphometrics), photometry: rec.photometry || {} };
  const rows = [];
  for (const [label, part, column, error] of FEATURES) {
    if (!(column in parts[part])) continue;
    const value = parts[part][column];
    const err = error ? parts[part][error] : null;
    if (typeof value === "number" && typeof err === "number") {
      rows.push([label, `${value.toFixed(3)} ± ${err.toFixed(3)}`]);  // a magnitude and its error, in mag
    } else {
      rows.push([label, fmt(value)]);
    }
  }
  rows.push(["flags", (rec.flags.galaxies || []).join(", ") || "none"]);
  for (const [t, names] of Object.entries(rec.flags)) {
    if (t !== "galaxies" && names.length) rows.push([t + " flags", names.join(", ")]);
  }
  return rows;
}

function renderPrediction(p) {
  const block = document.createElement("div");
  block.className = "prediction";
  const title = document.createElement("strong");
  title.textContent = `${p.model_name} v${p.model_version}: ${p.predicted_name ?? p.predicted_label}` +
    (p.confidence === null || p.confidence === undefined ? "" : ` (${percent(p.confidence)})`);
  const bars = document.createElement("div");
  bars.className = "bars";
  p.probabilities.forEach((prob, i) => {
    const bar = document.createElement("div");
    bar.className = "bar probability";
    const name = document.createElement("span");
    name.className = "class-name";
    name.textContent = p.classes[i] ?? String(i);
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = (100 * Math.min(Math.max(prob || 0, 0), 1)).toFixed(1) + "%";
    track.append(fill);
    const num = document.createElement("span");
    num.className = "percent";
    num.textContent = percent(prob);
    num.title = prob == null ? "" : String(prob);  // the stored value, on hover
    bar.append(name, track, num);
    bars.append(bar);
  });
  block.append(title, bars);
  return block;
}

function renderRecord(rec) {
  $("query").hidden = false;
  $("query-title").textContent = rec.galaxy_id;
  imageInto($("query-image"), rec.galaxy_id);
  $("features").replaceChildren(...featureRows(rec).map(([key, value]) => {
    const tr = document.createElement("tr");
    for (const text of [key, value]) {
      const td = document.createElement("td");
      td.textContent = text;  // text, never HTML: values come from user data
      tr.append(td);
    }
    return tr;
  }));
  $("predictions").replaceChildren(...rec.predictions.map(renderPrediction));
}

function renderNeighbours(result) {
  $("lookalikes").hidden = false;
  $("lookalike-note").textContent =
    `(${result.encoder}, k=${result.k}${result.where ? ", where " + result.where : ""}: ${result.neighbours.length} found)`;
  const grid = $("grid");
  grid.replaceChildren();
  for (const n of result.neighbours) {
    const card = document.createElement("div");
    card.className = "neighbour";
    const img = document.createElement("img");
    img.alt = n.galaxy_id;
    img.loading = "lazy";
    imageInto(img, n.galaxy_id);
    const link = document.createElement("a");
    link.href = "/?" + new URLSearchParams({ id: n.galaxy_id, where: $("where").value, k: $("k").value });
    link.textContent = n.galaxy_id;
    link.className = "neighbour-link";
    const dist = document.createElement("div");
    dist.className = "distance";
    dist.textContent = `#${n.rank}  d = ${n.distance.toFixed(4)}` +
      (n.features.label_name ? `  ${n.features.label_name}` : "");
    card.append(img, link, dist, labelButtons(card, n.galaxy_id));
    grid.append(card);
  }
}

// ---------------------------------------------------------------- labels, rankings (issue 26)
function labelName() { return $("rank-label").value.trim() || "interesting"; }
function who() { return $("who").value.trim() || "anonymous"; }
const marked = new Map();  // galaxy id -> value given on this page for the current label (for "more like these")

async function storeLabel(card, id, name, value) {
  try {
    await api("/galaxies/" + encodeURIComponent(id) + "/labels", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, value, who: who(), source: "page" }),
    });
    if (name === labelName()) {
      marked.set(id, value);
      card.classList.toggle("labelled-yes", value > 0.5);
      card.classList.toggle("labelled-no", value <= 0.5);
    }
    card.dataset.labelled = name + "=" + value;
  } catch (err) {
    showError(err.message);
  }
}

function labelButtons(card, id) {
  const box = document.createElement("div");
  box.className = "label-buttons";
  const yes = document.createElement("button");
  yes.className = "label-yes";
  yes.textContent = "interesting";
  yes.title = "store the label (value 1)";
  yes.onclick = () => storeLabel(card, id, labelName(), 1);
  const no = document.createElement("button");
  no.className = "label-no";
  no.textContent = "not";
  no.title = "store the label with value 0";
  no.onclick = () => storeLabel(card, id, labelName(), 0);
  const cls = document.createElement("button");
  cls.className = "label-class";
  cls.textContent = "class…";
  cls.title = "store a class label (e.g. merger, ring, artefact)";
  cls.onclick = () => {
    const name = prompt("class of " + id + " (e.g. merger, ring, artefact)");
    if (name && name.trim()) storeLabel(card, id, name.trim(), 1);
  };
  yes.textContent = labelName();
  box.append(yes, no, cls);
  return box;
}

function renderRanking(result) {
  $("strange").hidden = false;
  $("strange-note").textContent = !result.ranked ? `(by anomaly score; ${result.note})`
    : result.n_labels ? `(${result.label}: ranked from ${result.n_labels} labels${result.note ? "; " + result.note : ""})`
    : `(${result.note})`;
  const grid = $("strange-grid");
  grid.replaceChildren();
  for (const g of result.galaxies) {
    const card = document.createElement("div");
    card.className = "neighbour strange-card";
    card.dataset.galaxyId = g.galaxy_id;
    const img = document.createElement("img");
    img.alt = g.galaxy_id;
    img.loading = "lazy";
    imageInto(img, g.galaxy_id);
    const link = document.createElement("a");
    link.href = "/?" + new URLSearchParams({ id: g.galaxy_id, k: $("k").value || "12" });
    link.textContent = g.galaxy_id;
    link.className = "neighbour-link";
    const info = document.createElement("div");
    info.className = "distance";
    info.textContent = `#${g.position}  score ${fmt(g.score)}` + (g.label_name ? `  ${g.label_name}` : "");
    card.append(img, link, info, labelButtons(card, g.galaxy_id));
    grid.append(card);
  }
}

function showStrange() {
  const label = labelName();
  return run("strange galaxies", async () => {
    const result = await api("/rankings/" + encodeURIComponent(label) + "?limit=24");
    return () => { clearResults(); renderRanking(result); };
  });
}

$("rank-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const label = labelName();
  run("strange galaxies", async () => {
    const result = await api("/rankings/" + encodeURIComponent(label), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ limit: 24 }),
    });
    return () => { clearResults(); renderRanking(result); };
  });
});

$("more-like").addEventListener("click", () => {
  const positives = [...marked].filter(([, v]) => v > 0.5).map(([id]) => id);
  const negatives = [...marked].filter(([, v]) => v <= 0.5).map(([id]) => id);
  if (!positives.length) { showError("mark some galaxies interesting first"); return; }
  run("more like these", async () => {
    const result = await api("/more-like", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ positives, negatives, k: 24 }),
    });
    return () => { clearResults(); renderRanking(Object.assign(result, { note: "more like " + positives.length + " positives" })); };
  });
});

let latest = 0;  // the newest search: an older one answering late does not overwrite it

async function run(title, work) {
  const mine = ++latest;
  declined = false;
  document.title = "AstroVision: " + title;
  showError("");
  try {
    const render = await work();
    if (mine === latest) render();
  } catch (err) {
    if (mine === latest) showError(err.message);
  }
}

function searchId(id) {
  const params = new URLSearchParams({ k: $("k").value || "12" });
  if ($("where").value.trim()) params.set("where", $("where").value.trim());
  return run(id, async () => {
    const [rec, sim] = await Promise.all([
      api("/galaxies/" + encodeURIComponent(id)),
      api("/galaxies/" + encodeURIComponent(id) + "/similar?" + params),
    ]);
    return () => { renderRecord(rec); renderNeighbours(sim); };
  });
}

function searchFile(file) {
  const form = new FormData();
  form.append("file", file);
  form.append("k", $("k").value || "12");
  if ($("where").value.trim()) form.append("where", $("where").value.trim());
  return run("uploaded " + file.name, async () => {
    const sim = await api("/similar", { method: "POST", body: form });
    return () => {
      $("query").hidden = false;
      $("query-title").textContent = "uploaded: " + file.name;
      $("query-image").src = URL.createObjectURL(file);
      $("features").replaceChildren();
      $("predictions").replaceChildren();
      renderNeighbours(sim);
    };
  });
}

function pageUrl(params) {
  return "/?" + new URLSearchParams(Object.assign(params, { where: $("where").value, k: $("k").value }));
}

// the files uploaded in this page's life, by history entry: Back and Forward replay an upload too
const uploads = new Map();

function upload(file) {
  const entry = uploads.size + 1;
  uploads.set(entry, file);
  history.pushState({ upload: entry }, "", pageUrl({ upload: file.name }));
  searchFile(file);
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = $("galaxy-id").value.trim();
  if (!id) return;
  history.pushState(null, "", pageUrl({ id }));
  searchId(id);
});

const drop = $("drop");
drop.addEventListener("click", () => $("file").click());
$("file").addEventListener("change", () => {
  if ($("file").files[0]) upload($("file").files[0]);
  $("file").value = "";  // choosing the same file again is a new search
});
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]);
});

function fromUrl() {
  // the search this URL names, as when it was made (also on Back / Forward)
  const params = new URLSearchParams(location.search);
  $("where").value = params.get("where") || "";
  $("k").value = params.get("k") || "12";
  $("galaxy-id").value = params.get("id") || "";
  if (params.get("label")) $("rank-label").value = params.get("label");
  const file = history.state && uploads.get(history.state.upload);
  if (params.get("view") === "strange") {
    showStrange();
  } else if (params.get("id")) {
    searchId(params.get("id"));
  } else if (file) {
    searchFile(file);
  } else if (params.get("upload")) {
    latest++;
    document.title = "AstroVision: uploaded " + params.get("upload");
    showError(`the uploaded image ${params.get("upload")} is not kept once the page reloads: drop it again`);
  } else {
    latest++;
    document.title = "AstroVision";
    showError("");
    clearResults();
  }
}
window.addEventListener("popstate", fromUrl);
fromUrl();
