// The feature browser: a list of a dictionary's latents (search by token, sort by density, max
// activation or index) and the card of the selected one: facts, the histogram of its activations, its
// top contexts with the activation highlighted on every token, the tokens it promotes and suppresses,
// and for a transcoder the tokens and earlier latents that drive it.
// Plain DOM, no dependencies; every string from the data is set as text (never parsed as HTML).
function interpFeatures(el, data) {
  const make = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const num = (v, d = 4) => (v === null || v === undefined ? "-" : Number(v).toPrecision(d));
  const pct = (v) => (100 * v).toPrecision(3) + "%";
  const show = (t) => JSON.stringify(t);
  const cards = data.cards;
  const tokenSets = cards.map((c) => {
    const all = [];
    for (const ctx of c.contexts) all.push(...ctx.tokens);
    for (const list of [c.promoted, c.suppressed, c.input_tokens]) if (list) for (const [t] of list) all.push(t);
    for (const [, t] of c.input_heads || []) all.push(t);
    return all.map((t) => t.toLowerCase());
  });
  el.replaceChildren();
  const root = make("div", "interp-features");
  root.style.cssText = "display:flex;gap:20px;align-items:flex-start;font:13px system-ui,sans-serif";
  const left = make("div", "interp-features-left");
  left.style.cssText = "min-width:260px;max-width:340px";
  const right = make("div", "interp-features-card");
  right.style.cssText = "flex:1;min-width:0";
  root.append(left, right);
  el.append(root);

  left.append(make("div", "interp-features-title", data.title));
  left.lastChild.style.fontWeight = "600";
  const controls = make("div");
  controls.style.cssText = "display:flex;gap:6px;margin:6px 0";
  const search = make("input", "interp-features-search");
  search.type = "search";
  search.placeholder = "search a token";
  search.style.flex = "1";
  const sort = make("select", "interp-features-sort");
  for (const [value, label] of [["density", "density"], ["max_act", "max activation"], ["feature", "index"]]) {
    const option = make("option", "", label);
    option.value = value;
    sort.append(option);
  }
  sort.value = data.sort || "density";
  controls.append(search, sort);
  const count = make("div", "interp-features-count");
  count.style.color = "#555";
  const list = make("table", "interp-features-list");
  list.style.cssText = "border-collapse:collapse;width:100%";
  const scroller = make("div");
  scroller.style.cssText = "max-height:520px;overflow-y:auto";
  scroller.append(list);
  if (cards.length > 1) left.append(controls, count, scroller);
  let selected = data.start || 0;

  function refresh() {
    const query = search.value.trim().toLowerCase();
    const key = sort.value;
    const order = cards
      .map((c, i) => i)
      .filter((i) => !query || tokenSets[i].some((t) => t.trim() === query || t.includes(query)))
      .sort((a, b) => (key === "feature" ? cards[a].feature - cards[b].feature : cards[b][key] - cards[a][key]));
    list.replaceChildren();
    const head = make("tr");
    for (const h of ["latent", "density", "max", "promotes"]) head.append(make("th", "", h));
    list.append(head);
    for (const i of order) {
      const c = cards[i];
      const tr = make("tr", "interp-features-row");
      tr.dataset.index = i;
      tr.dataset.feature = c.feature;
      tr.style.cssText = `cursor:pointer;${i === selected ? "background:#e8eef8" : ""}`;
      const top = c.promoted && c.promoted.length ? show(c.promoted[0][0]) : "";
      for (const text of [c.dictionary + " #" + c.feature, pct(c.density), num(c.max_act, 3), top]) {
        const td = make("td", "", text);
        td.style.cssText = "border-bottom:1px solid #eee;padding:2px 4px;white-space:pre";
        tr.append(td);
      }
      tr.addEventListener("click", () => { selected = i; refresh(); render(i); });
      list.append(tr);
    }
    count.textContent = `${order.length} of ${cards.length} latents` + (query ? ` with a token matching ${show(query)}` : "");
  }

  function histogram(counts, edges, colour, label) {
    const box = make("div", "interp-features-hist");
    box.append(make("div", "", label));
    if (!counts.length) { box.append(make("div", "", "(no activations)")); return box; }
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    const w = 360, h = 70, peak = Math.max(...counts, 1);
    svg.setAttribute("width", w);
    svg.setAttribute("height", h + 14);
    counts.forEach((n, b) => {
      const rect = document.createElementNS(ns, "rect");
      const bw = w / counts.length;
      rect.setAttribute("x", b * bw);
      rect.setAttribute("width", Math.max(bw - 1, 1));
      rect.setAttribute("y", h - (h * n) / peak);
      rect.setAttribute("height", (h * n) / peak);
      rect.setAttribute("fill", colour);
      const tip = document.createElementNS(ns, "title");
      tip.textContent = `${num(edges[b], 3)} to ${num(edges[b + 1], 3)}: ${n}`;
      rect.append(tip);
      svg.append(rect);
    });
    for (const [x, v, anchor] of [[0, edges[0], "start"], [w, edges[edges.length - 1], "end"]]) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", x);
      t.setAttribute("y", h + 12);
      t.setAttribute("font-size", "10");
      t.setAttribute("text-anchor", anchor);
      t.textContent = num(v, 3);
      svg.append(t);
    }
    box.append(svg);
    return box;
  }

  function tokenTable(cls, title, pairs, signed, label = show) {
    const box = make("div", cls);
    box.style.cssText = "display:inline-block;vertical-align:top;margin-right:16px";
    box.append(make("div", "", title));
    box.lastChild.style.fontWeight = "600";
    const table = make("table");
    for (const [t, v] of pairs) {
      const tr = make("tr");
      const td = make("td", "interp-features-tok", label(t));
      td.style.whiteSpace = "pre";
      const val = make("td", "", (signed && v >= 0 ? "+" : "") + num(v, 4));
      val.style.color = v < 0 ? "#b2182b" : "#2166ac";
      tr.append(td, val);
      table.append(tr);
    }
    box.append(table);
    return box;
  }

  function render(i) {
    const c = cards[i];
    right.replaceChildren();
    right.append(make("div", "interp-features-selected", c.dictionary + " #" + c.feature));
    right.lastChild.style.cssText = "font-weight:600;font-size:15px";
    const hooks = c.hook_name ? (c.kind === "sae" ? c.hook_name : `${c.hook_name} -> ${c.hook_name_out}`) : "";
    const facts = make("div", "interp-features-facts",
      `${c.kind}${hooks ? " at " + hooks : ""}; density ${pct(c.density)}` +
      (c.n_tokens !== null && c.n_tokens !== undefined ? ` of ${c.n_tokens} tokens` : "") +
      `; max ${num(c.max_act)}; mean ${num(c.mean_act)}; mean when active ${num(c.mean_active)}`);
    facts.style.cssText = "color:#333;margin:4px 0 8px";
    right.append(facts);
    right.append(histogram(c.histogram_counts, c.histogram_edges, "#2166ac", "activations when active (count per bin)"));
    const ctxBox = make("div", "interp-features-contexts");
    ctxBox.append(make("div", "", `top ${c.contexts.length} contexts (background: activation; hover a token for its value)`));
    ctxBox.lastChild.style.fontWeight = "600";
    const scale = Math.max(c.max_act, 1e-9);
    for (const ctx of c.contexts) {
      const line = make("div", "interp-features-context");
      line.style.cssText = "font-family:monospace;white-space:pre-wrap;margin:3px 0;line-height:1.6";
      ctx.tokens.forEach((t, k) => {
        const span = make("span", "interp-features-token", t);
        const v = ctx.values[k];
        span.dataset.value = v;
        span.title = `${show(t)}: ${num(v)}`;
        const a = Math.max(0, Math.min(1, v / scale));
        span.style.background = `rgba(33,102,172,${a.toFixed(3)})`;
        if (k === ctx.max_index) { span.className += " interp-features-max"; span.style.outline = "1px solid #000"; }
        line.append(span);
      });
      ctxBox.append(line);
    }
    right.append(ctxBox);
    const tables = make("div");
    tables.style.marginTop = "8px";
    if (c.promoted) tables.append(tokenTable("interp-features-promoted", "promotes", c.promoted, true));
    if (c.suppressed) tables.append(tokenTable("interp-features-suppressed", "suppresses", c.suppressed, true));
    if (c.input_tokens) tables.append(tokenTable("interp-features-inputs", "driven by tokens", c.input_tokens, true));
    if (c.input_heads && c.input_heads.length) {
      tables.append(tokenTable("interp-features-heads", "driven by tokens through heads (OV)",
        c.input_heads.map(([h, t, v]) => [`${h} ${show(t)}`, v]), true, (t) => t));
    }
    if (c.upstream && c.upstream.length) {
      tables.append(tokenTable("interp-features-upstream", "driven by earlier latents",
        c.upstream.map(([d, g, v]) => [`${d} #${g}`, v]), true));
    }
    right.append(tables);
    if (c.logit_counts && c.logit_counts.length) {
      right.append(histogram(c.logit_counts, c.logit_edges, "#777", "logit effect over the vocabulary (count per bin)"));
    }
    for (const note of c.notes || []) right.append(make("p", "interp-features-note", note));
  }

  search.addEventListener("input", refresh);
  sort.addEventListener("change", refresh);
  refresh();
  if (cards.length) render(selected);
  else right.append(make("p", "", "No latents to show."));
}
