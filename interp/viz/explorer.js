// The head explorer: a layer x head grid; click a head for its attention pattern on the example prompt
// and its value in every analysis; click a token (a row of the pattern) for where it attends.
// Plain DOM, no dependencies; every string from the data is set as text (never parsed as HTML).
function interpExplorer(el, data) {
  const make = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const fmt = (v) => (v === null || v === undefined ? "-" : (v >= 0 ? "+" : "") + v.toFixed(4));
  const grid = data.grid.values;
  let scale = 1e-9;
  for (const row of grid) for (const v of row) scale = Math.max(scale, Math.abs(v));
  // the report's sign convention: the heatmaps' diverging stops (red negative, blue positive) centred on 0
  const scaleStops = data.colourscale || [[0, "rgb(178,24,43)"], [0.5, "rgb(247,247,247)"], [1, "rgb(33,102,172)"]];
  const stops = scaleStops.map(([at, c]) => [at, c.match(/\d+/g).map(Number)]);
  const colour = (v) => stopColour(0.5 + 0.5 * Math.max(-1, Math.min(1, v / scale)));
  function stopColour(at) {
    let i = 1;
    while (i < stops.length - 1 && stops[i][0] < at) i++;
    const [a, ca] = stops[i - 1], [b, cb] = stops[i];
    const t = b > a ? (at - a) / (b - a) : 0;
    const mix = ca.map((x, k) => Math.round(x + t * (cb[k] - x)));
    return `rgb(${mix[0]},${mix[1]},${mix[2]})`;
  }
  el.replaceChildren();
  const root = make("div", "interp-explorer");
  root.style.cssText = "display:flex;gap:24px;align-items:flex-start;font:13px system-ui,sans-serif";
  const left = make("div");
  left.append(make("div", "interp-explorer-title", data.title));
  left.lastChild.style.fontWeight = "600";
  left.append(make("div", "interp-explorer-reading", data.reading));
  left.lastChild.style.cssText = "max-width:42ch;color:#555;margin:4px 0 8px";
  const table = make("table", "interp-explorer-grid");
  table.style.borderCollapse = "collapse";
  const head = make("tr");
  head.append(make("th", "", ""));
  for (let h = 0; h < data.n_heads; h++) head.append(make("th", "", `H${h}`));
  table.append(head);
  const cells = [];
  for (let l = 0; l < data.n_layers; l++) {
    const row = make("tr");
    row.append(make("th", "", `L${l}`));
    for (let h = 0; h < data.n_heads; h++) {
      const cell = make("td", "interp-explorer-head");
      cell.dataset.layer = l;
      cell.dataset.head = h;
      cell.title = `L${l}H${h}: ${fmt(grid[l][h])}`;
      cell.style.cssText = `width:22px;height:22px;border:1px solid #ddd;cursor:pointer;background:${colour(grid[l][h])}`;
      cell.addEventListener("click", () => select(l, h));
      row.append(cell);
      cells.push(cell);
    }
    table.append(row);
  }
  left.append(table);
  const right = make("div", "interp-explorer-detail");
  right.style.minWidth = "320px";
  root.append(left, right);
  el.append(root);

  function select(l, h) {
    for (const c of cells) c.style.outline = "";
    cells[l * data.n_heads + h].style.outline = "2px solid #000";
    right.replaceChildren();
    right.append(make("div", "interp-explorer-selected", `L${l}H${h}`));
    right.lastChild.style.cssText = "font-weight:600;font-size:15px";
    const facts = make("table", "interp-explorer-facts");
    for (const column of [data.grid, ...data.columns]) {
      const tr = make("tr");
      tr.append(make("td", "", column.name), make("td", "", fmt(column.values[l][h])));
      facts.append(tr);
    }
    right.append(facts);
    const patterns = data.patterns;
    if (!patterns) {
      right.append(make("p", "", "No attention patterns were stored for this view."));
      return;
    }
    const pattern = patterns[l][h];
    const tokens = data.tokens;
    right.append(make("div", "", "Attention on the example prompt (rows: destination, columns: source); click a row."));
    const grid2 = make("table", "interp-explorer-pattern");
    grid2.style.borderCollapse = "collapse";
    const note = make("div", "interp-explorer-position");
    note.style.marginTop = "6px";
    pattern.forEach((weights, dest) => {
      const tr = make("tr");
      const full = JSON.stringify(tokens[dest]);
      const label = make("th", "", full.length > 24 ? full.slice(0, 23) + "\u2026" : full);
      label.title = full;
      label.style.cssText = "text-align:right;font-weight:normal;padding-right:4px;white-space:pre;cursor:pointer";
      tr.append(label);
      weights.forEach((w, src) => {
        const td = make("td");
        // weights 0..1 on the positive half of the same scale (white 0, blue 1)
        td.style.cssText = `width:14px;height:14px;border:1px solid #f0f0f0;background:${stopColour(0.5 + 0.5 * Math.max(0, Math.min(1, w)))}`;
        td.title = `${JSON.stringify(tokens[dest])} -> ${JSON.stringify(tokens[src])}: ${w.toFixed(3)}`;
        tr.append(td);
      });
      tr.addEventListener("click", () => {
        const ranked = weights.map((w, src) => [w, src]).sort((a, b) => b[0] - a[0]).slice(0, 3);
        note.textContent = `position ${dest} ${JSON.stringify(tokens[dest])} attends to: ` +
          ranked.map(([w, src]) => `${src} ${JSON.stringify(tokens[src])} (${w.toFixed(2)})`).join(", ");
      });
      grid2.append(tr);
    });
    right.append(grid2, note);
  }
  select(data.start[0], data.start[1]);
}
