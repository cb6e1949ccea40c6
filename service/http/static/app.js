// AstroVision's page: plain JS over the JSON API (no build step).
"use strict";

const $ = (id) => document.getElementById(id);
const FEATURES = ["label_name", "ra", "dec", "redshift", "gini", "m20", "concentration", "asymmetry",
                  "smoothness", "sersic_n", "g_r", "r_mag", "flags"];

function token() { return sessionStorage.getItem("astrovision-token"); }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  let response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    const given = prompt("This server needs its API token");
    if (given) {
      sessionStorage.setItem("astrovision-token", given);
      return api(path, options);
    }
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toPrecision(4);
  return String(value);
}

function imageUrl(id) { return "/galaxies/" + encodeURIComponent(id) + "/image.png"; }

async function imageInto(img, id) {
  // fetched with the token when one is set, so images load on a protected server too
  if (!token()) { img.src = imageUrl(id); return; }
  const r = await fetch(imageUrl(id), { headers: { Authorization: "Bearer " + token() } });
  if (r.ok) img.src = URL.createObjectURL(await r.blob());
}

function renderRecord(rec) {
  $("query").hidden = false;
  $("query-title").textContent = rec.galaxy_id;
  imageInto($("query-image"), rec.galaxy_id);
  const merged = Object.assign({}, rec.catalogue, rec.photometry || {}, (rec.morphometrics || [])[0] || {});
  const rows = FEATURES.filter((k) => k in merged).map((k) =>
    [k, k === "flags" ? (rec.flags.galaxies || []).join(", ") || "none" : fmt(merged[k])]);
  for (const [t, names] of Object.entries(rec.flags)) {
    if (t !== "galaxies" && names.length) rows.push([t + " flags", names.join(", ")]);
  }
  $("features").replaceChildren(...rows.map(([key, value]) => {
    const tr = document.createElement("tr");
    for (const text of [key, value]) {
      const td = document.createElement("td");
      td.textContent = text;  // text, never HTML: values come from user data
      tr.append(td);
    }
    return tr;
  }));
  const preds = $("predictions");
  preds.replaceChildren();
  for (const p of rec.predictions) {
    const block = document.createElement("div");
    block.className = "prediction";
    const title = document.createElement("strong");
    title.textContent = `${p.model_name} v${p.model_version}: ${p.predicted_name ?? p.predicted_label}`;
    block.append(title);
    p.probabilities.forEach((prob, i) => {
      const bar = document.createElement("div");
      bar.className = "bar probability";
      const name = document.createElement("span");
      name.textContent = p.classes[i] ?? String(i);
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = Math.round(160 * (prob || 0)) + "px";
      const num = document.createElement("span");
      num.textContent = fmt(prob);
      bar.append(name, fill, num);
      block.append(bar);
    });
    preds.append(block);
  }
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
    card.append(img, link, dist);
    grid.append(card);
  }
}

async function searchId(id) {
  showError("");
  const params = new URLSearchParams({ k: $("k").value || "12" });
  if ($("where").value.trim()) params.set("where", $("where").value.trim());
  try {
    const [rec, sim] = await Promise.all([
      api("/galaxies/" + encodeURIComponent(id)),
      api("/galaxies/" + encodeURIComponent(id) + "/similar?" + params),
    ]);
    renderRecord(rec);
    renderNeighbours(sim);
    document.title = "AstroVision: " + id;
  } catch (err) {
    showError(err.message);
  }
}

async function searchFile(file) {
  showError("");
  const form = new FormData();
  form.append("file", file);
  form.append("k", $("k").value || "12");
  if ($("where").value.trim()) form.append("where", $("where").value.trim());
  try {
    const sim = await api("/similar", { method: "POST", body: form });
    $("query").hidden = false;
    $("query-title").textContent = "uploaded: " + file.name;
    $("query-image").src = URL.createObjectURL(file);
    $("features").replaceChildren();
    $("predictions").replaceChildren();
    renderNeighbours(sim);
  } catch (err) {
    showError(err.message);
  }
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = $("galaxy-id").value.trim();
  if (!id) return;
  history.pushState(null, "", "/?" + new URLSearchParams({ id, where: $("where").value, k: $("k").value }));
  searchId(id);
});

const drop = $("drop");
drop.addEventListener("click", () => $("file").click());
$("file").addEventListener("change", () => { if ($("file").files[0]) searchFile($("file").files[0]); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) searchFile(e.dataTransfer.files[0]);
});

function fromUrl() {
  const params = new URLSearchParams(location.search);
  if (params.get("where")) $("where").value = params.get("where");
  if (params.get("k")) $("k").value = params.get("k");
  if (params.get("id")) {
    $("galaxy-id").value = params.get("id");
    searchId(params.get("id"));
  }
}
window.addEventListener("popstate", fromUrl);
fromUrl();
