// The attribution graph view: layers (rows, tokens at the bottom, logits on top) by positions (columns).
// Hover a node: its details. Click a node: the paths through it (its ancestors and descendants along the
// shown links) stay lit, the rest dims; click it again or the background to clear. The slider prunes:
// it shows the nodes within that cumulative influence share (tokens and logits always). Clicking a
// supernode's name lights its members. Plain DOM and SVG, no dependencies; every string is set as text.
function interpGraphView(el, data) {
  const NS = "http://www.w3.org/2000/svg";
  const make = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const svgNode = (tag, attrs) => {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  };
  const fmt = (v) => (v === null || v === undefined ? "-" : (v >= 0 ? "+" : "") + Number(v).toFixed(4));
  const POS = "#2166ac", NEG = "#b2182b";
  const nodes = data.nodes, links = data.links;
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const nRows = data.n_layers + 2; // tokens, layers, logits
  const rowOf = (n) => n.row + 1;

  // cell widths: the most nodes any row puts at a position
  const nPos = data.tokens.length;
  const perCell = new Map();
  for (const n of nodes) {
    const key = rowOf(n) + ":" + n.pos;
    n.slot = perCell.get(key) || 0;
    perCell.set(key, n.slot + 1);
  }
  const widest = new Array(nPos).fill(1);
  for (const [key, count] of perCell) {
    const pos = Number(key.split(":")[1]);
    widest[pos] = Math.max(widest[pos], count);
  }
  const SLOT = 22, PAD = 16, ROW = 72, LEFT = 56, TOP = 24, BOTTOM = 64;
  const colStart = [];
  let x = LEFT;
  for (let p = 0; p < nPos; p++) {
    colStart.push(x);
    x += Math.max(64, widest[p] * SLOT + PAD);
  }
  const width = x + 16, height = TOP + nRows * ROW + BOTTOM;
  for (const n of nodes) {
    const count = perCell.get(rowOf(n) + ":" + n.pos);
    const cell = Math.max(64, widest[n.pos] * SLOT + PAD);
    n.x = colStart[n.pos] + cell / 2 + (n.slot - (count - 1) / 2) * SLOT;
    n.y = TOP + (nRows - rowOf(n) - 0.5) * ROW;
  }

  el.replaceChildren();
  const root = make("div", "interp-graph");
  root.style.cssText = "font:13px system-ui,sans-serif;position:relative";
  root.append(make("div", "interp-graph-title", data.title));
  root.lastChild.style.fontWeight = "600";
  const controls = make("div", "interp-graph-controls");
  controls.style.cssText = "display:flex;gap:12px;align-items:center;margin:6px 0";
  controls.append(make("label", "", "influence shown:"));
  const slider = make("input", "interp-graph-slider");
  Object.assign(slider, { type: "range", min: "0.05", max: "1", step: "0.01", value: "1" });
  const sliderValue = make("span", "interp-graph-slider-value", "1.00");
  const count = make("span", "interp-graph-count");
  controls.append(slider, sliderValue, count);
  root.append(controls);
  root.append(make("div", "interp-graph-legend",
    "circle: feature, square: error node, boxes: tokens (bottom) and logits (top); links: blue positive, red negative, width |weight|"));
  root.lastChild.style.cssText = "color:#555;font-size:12px";
  if (data.supernodes.length) {
    const list = make("div", "interp-graph-supernodes", "supernodes: ");
    for (const group of data.supernodes) {
      const button = make("button", "interp-graph-supernode", group[0]);
      button.style.marginRight = "6px";
      button.addEventListener("click", () => select(group.slice(1).filter((id) => byId.has(id)), null));
      list.append(button);
    }
    root.append(list);
  }
  const wrap = make("div", "interp-graph-canvas");
  wrap.style.cssText = "overflow-x:auto;max-width:100%";
  const svg = svgNode("svg", { width, height, viewBox: `0 0 ${width} ${height}` });
  svg.style.background = "white";
  wrap.append(svg);
  root.append(wrap);
  const details = make("pre", "interp-graph-details", "hover a node for its details; click it for the paths through it");
  details.style.cssText = "white-space:pre-wrap;background:#f6f6f6;padding:6px;margin:6px 0;min-height:3em";
  root.append(details);
  el.append(root);

  // rows' labels, positions' tokens
  const rowName = (r) => (r === 0 ? "tokens" : r === nRows - 1 ? "logits" : "L" + (r - 1));
  for (let r = 0; r < nRows; r++) {
    const label = svgNode("text", { x: 6, y: TOP + (nRows - r - 0.5) * ROW + 4, "font-size": 11, fill: "#555" });
    label.textContent = rowName(r);
    svg.append(label);
  }
  for (let p = 0; p < nPos; p++) {
    const cell = Math.max(64, widest[p] * SLOT + PAD);
    const label = svgNode("text", {
      x: colStart[p] + cell / 2, y: height - BOTTOM + 18, "font-size": 11, "text-anchor": "middle",
      class: "interp-graph-token",
    });
    label.textContent = data.tokens[p];
    svg.append(label);
    const index = svgNode("text", { x: colStart[p] + cell / 2, y: height - BOTTOM + 32, "font-size": 10, "text-anchor": "middle", fill: "#888" });
    index.textContent = String(p);
    svg.append(index);
  }

  let largest = 1e-12;
  for (const l of links) largest = Math.max(largest, Math.abs(l.w));
  const linkLayer = svgNode("g", {}), nodeLayer = svgNode("g", {});
  svg.append(linkLayer, nodeLayer);
  for (const l of links) {
    const s = byId.get(l.s), t = byId.get(l.t);
    const bend = (t.x - s.x) * 0.15;
    l.el = svgNode("path", {
      d: `M${s.x},${s.y} Q${(s.x + t.x) / 2 + bend},${(s.y + t.y) / 2} ${t.x},${t.y}`,
      fill: "none", stroke: l.w < 0 ? NEG : POS, "stroke-width": 0.6 + 3.4 * Math.abs(l.w) / largest,
      "stroke-opacity": 0.55, class: "interp-graph-link",
    });
    l.el.dataset.source = l.s;
    l.el.dataset.target = l.t;
    linkLayer.append(l.el);
  }
  const fill = { feature: "#e8eef8", error: "#eeeeee", token: "#fff5d6", logit: "#e3f3e3" };
  for (const n of nodes) {
    const g = svgNode("g", { class: "interp-graph-node", transform: `translate(${n.x},${n.y})` });
    g.dataset.id = n.id;
    g.dataset.kind = n.kind;
    const shape = n.kind === "feature"
      ? svgNode("circle", { r: 7 })
      : svgNode("rect", n.kind === "error" ? { x: -6, y: -6, width: 12, height: 12 } : { x: -9, y: -6, width: 18, height: 12, rx: 3 });
    shape.setAttribute("fill", fill[n.kind]);
    shape.setAttribute("stroke", "#444");
    g.append(shape);
    g.style.cursor = "pointer";
    g.addEventListener("mouseenter", () => show(n));
    g.addEventListener("click", (event) => {
      event.stopPropagation();
      select(selected && selected.length === 1 && selected[0] === n.id ? null : [n.id], n);
    });
    n.el = g;
    nodeLayer.append(g);
  }
  svg.addEventListener("click", () => select(null, null));

  function show(n) {
    const incoming = links.filter((l) => l.t === n.id && visible(l)).sort((a, b) => Math.abs(b.w) - Math.abs(a.w));
    const outgoing = links.filter((l) => l.s === n.id && visible(l)).sort((a, b) => Math.abs(b.w) - Math.abs(a.w));
    const lines = [
      `${n.label}  (${n.kind}, ${rowName(rowOf(n))}, position ${n.pos} ${JSON.stringify(data.tokens[n.pos])})`,
      `node id: ${n.id}`,
    ];
    if (n.activation !== null && n.activation !== undefined) lines.push(`activation: ${fmt(n.activation)}`);
    if (n.influence !== null && n.influence !== undefined) lines.push(`cumulative influence: ${Number(n.influence).toFixed(3)}`);
    if (n.prob) lines.push(`probability: ${Number(n.prob).toFixed(3)}`);
    if (n.clerp) lines.push(n.clerp);
    for (const [name, values] of Object.entries(n.card || {})) lines.push(`${name}: ${values.map((v) => JSON.stringify(v)).join(" ")}`);
    const name = (id) => byId.get(id).label;
    if (incoming.length) lines.push("from: " + incoming.slice(0, 5).map((l) => `${name(l.s)} ${fmt(l.w)}`).join(", "));
    if (outgoing.length) lines.push("to: " + outgoing.slice(0, 5).map((l) => `${name(l.t)} ${fmt(l.w)}`).join(", "));
    details.textContent = lines.join("\n");
  }

  let threshold = 1.0, selected = null;
  const shownNode = (n) => n.kind === "token" || n.kind === "logit" || n.influence === null || n.influence === undefined || n.influence <= threshold + 1e-9;
  const visible = (l) => shownNode(byId.get(l.s)) && shownNode(byId.get(l.t));

  function reach(start, forward) {
    const seen = new Set();
    const stack = [...start];
    while (stack.length) {
      const id = stack.pop();
      for (const l of links) {
        if (!visible(l)) continue;
        const [from, to] = forward ? [l.s, l.t] : [l.t, l.s];
        if (from === id && !seen.has(to)) {
          seen.add(to);
          stack.push(to);
        }
      }
    }
    return seen;
  }

  function select(ids, n) {
    selected = ids;
    if (n) show(n);
    draw();
  }

  function draw() {
    let on = null, up = null, down = null;
    if (selected) {
      const chosen = new Set(selected);
      up = reach(selected, false);
      down = reach(selected, true);
      on = new Set([...chosen, ...up, ...down]);
      for (const id of chosen) { up.add(id); down.add(id); }
    }
    let nShown = 0, lShown = 0;
    for (const n of nodes) {
      const shown = shownNode(n);
      nShown += shown;
      n.el.style.display = shown ? "" : "none";
      const lit = !on || on.has(n.id);
      n.el.style.opacity = lit ? "1" : "0.15";
      n.el.dataset.lit = lit && on ? "1" : "0";
    }
    for (const l of links) {
      const shown = visible(l);
      lShown += shown;
      l.el.style.display = shown ? "" : "none";
      // on a path through the selection: it leads into it (its target is upstream) or out of it
      const lit = !on || up.has(l.t) || down.has(l.s);
      l.el.style.opacity = lit ? "1" : "0.08";
      l.el.dataset.lit = lit && on ? "1" : "0";
    }
    count.textContent = `${nShown} nodes, ${lShown} links shown`;
  }

  slider.addEventListener("input", () => {
    threshold = Number(slider.value);
    sliderValue.textContent = threshold.toFixed(2);
    draw();
  });
  draw();
}
