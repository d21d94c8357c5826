// The battle browser of mrtui's HTML report. Its data is the inert JSON in #battle-data; model
// text is only ever set with textContent (never innerHTML), so it shows as text.
"use strict";
(function () {
  const PAIR_FILTERS = ["all", "has pair", "no pair", "actor pair", "judge pair"];
  const rows = JSON.parse(document.getElementById("battle-data").textContent);
  const $ = (id) => document.getElementById(id);
  const state = { run: "", iteration: "", pairs: "all", search: "", split: false, open: -1 };

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") node.textContent = v == null ? "" : String(v);
      else if (k === "class") node.className = v;
      else node.setAttribute(k, String(v));
    }
    for (const c of children || []) if (c) node.appendChild(c);
    return node;
  }
  const num = (v, d) => (v == null ? "-" : Number(v).toFixed(d === undefined ? 2 : d));
  const oneLine = (s, n) => {
    const t = String(s || "").replace(/\s+/g, " ").trim();
    return t.length > n ? t.slice(0, n - 1) + "\u2026" : t;
  };

  function option(select, value, label) {
    select.appendChild(el("option", { value: value, text: label }));
  }
  const runs = [...new Set(rows.map((r) => r.run))];
  runs.forEach((r) => option($("f-run"), r, r));
  [...new Set(rows.map((r) => r.iteration))].sort((a, b) => a - b)
    .forEach((i) => option($("f-iteration"), String(i), String(i)));
  PAIR_FILTERS.forEach((p) => option($("f-pairs"), p, p));

  function keep(r) {
    if (state.run && r.run !== state.run) return false;
    if (state.iteration && String(r.iteration) !== state.iteration) return false;
    const anyPair = r.actor_pair || r.judge_pair;
    if (state.pairs === "has pair" && !anyPair) return false;
    if (state.pairs === "no pair" && anyPair) return false;
    if (state.pairs === "actor pair" && !r.actor_pair) return false;
    if (state.pairs === "judge pair" && !r.judge_pair) return false;
    if (state.split && !(r.split > 0)) return false;
    if (state.search) {
      const q = state.search.toLowerCase();
      if (!String(r.text).toLowerCase().includes(q) && !String(r.source || "").toLowerCase().includes(q))
        return false;
    }
    return true;
  }

  function renderList() {
    const body = document.querySelector("#battle-list tbody");
    body.replaceChildren();
    let shown = 0;
    rows.forEach((r, i) => {
      if (!keep(r)) return;
      shown += 1;
      const pairs = [r.actor_pair ? "actor" : "", r.judge_pair ? "judge" : ""].filter(Boolean).join("+") || "-";
      const tr = el("tr", { class: "battle-row" + (i === state.open ? " open" : ""), "data-row": i, tabindex: 0 }, [
        el("td", { text: r.index }),
        el("td", { text: r.run }),
        el("td", { text: r.iteration }),
        el("td", { class: "preview", text: oneLine(r.text, 60) }),
        el("td", { text: r.responses.length }),
        el("td", { text: num(r.best) }),
        el("td", { text: num(r.worst) }),
        el("td", { text: pairs }),
        el("td", { text: r.battle ? r.split : "-" }),
      ]);
      tr.addEventListener("click", () => openRow(i));
      tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openRow(i); });
      body.appendChild(tr);
    });
    $("f-count").textContent = shown + " of " + rows.length + " rows";
    $("f-count").setAttribute("data-shown", shown);
  }

  function labelText(l, key) {
    if (!l) return null;
    return el("span", { class: "human", "data-for": key, text: "human: " + l.label + (l.author ? " (" + l.author + ")" : "") + (l.note ? " \u2014 " + l.note : "") });
  }

  function judgementLabel(r, key) {
    for (const x of r.responses) for (const j of x.judgements) if (j.key === key) return "J" + j.judge;
    return "?";
  }

  function winnerText(v) {
    if (v.winner === "A") return "first shown wins";
    if (v.winner === "B") return "second shown wins";
    return v.error === "tie" ? "tie" : "no winner (" + (v.error || "unparsed") + ")";
  }

  function battleView(r) {
    const b = r.battle;
    const wrap = el("div", { class: "battle" });
    const pair = b.chosen && !b.drop
      ? "judge pair: chosen " + judgementLabel(r, b.chosen) + " / rejected " + judgementLabel(r, b.rejected)
      : "no judge pair (" + (b.drop || "no valid judgements") + ")";
    wrap.appendChild(el("p", { class: "note", text:
      "meta-judged response " + b.response + " \u00b7 position wins (" + b.scope + " scope): first " + b.win_1st +
      ", second " + b.win_2nd + " \u00b7 \u03c91 = " + num(b.omega1, 3) + ", \u03c92 = " + num(b.omega2, 3) + " \u00b7 " + pair }));
    const byKey = new Map(b.verdicts.map((v) => [v.first + "\u0000" + v.second, v]));
    const js = [];
    for (const x of r.responses) if (x.key === b.response) for (const j of x.judgements) if (j.score != null) js.push(j);
    // the matrix: row shown first, column second
    const head = el("tr", {}, [el("th", { text: "first \\ second" }), ...js.map((j) => el("th", { text: "J" + j.judge }))]);
    const tbody = el("tbody");
    for (const a of js) {
      const cells = [el("th", { text: "J" + a.judge + " (" + num(a.score) + ")" })];
      for (const c of js) {
        const v = a.key === c.key ? null : byKey.get(a.key + "\u0000" + c.key);
        let text = a.key === c.key ? "\u2014" : "\u00b7";
        if (v && !(state.split && !v.split)) {
          text = v.winner === "A" ? "A \u25c0" : v.winner === "B" ? "B \u25b2" : (v.error === "tie" ? "tie" : "?");
          if (v.p_first != null) text += " " + num(v.p_first);
        } else if (v) text = "";
        cells.push(el("td", { class: v && v.split ? "split" : "", text: text }));
      }
      tbody.appendChild(el("tr", {}, cells));
    }
    wrap.appendChild(el("table", { class: "matrix" }, [el("thead", {}, [head]), tbody]));
    // both orders side by side, one block per pair of judgements
    const seen = new Set();
    let blocks = 0;
    for (const v of b.verdicts) {
      const id = [v.first, v.second].sort().join("\u0000");
      if (seen.has(id)) continue;
      seen.add(id);
      if (state.split && !v.split) continue;
      const other = byKey.get(v.second + "\u0000" + v.first);
      const side = (x) => x
        ? el("div", { class: "order" }, [
            el("h5", { text: judgementLabel(r, x.first) + " shown first, " + judgementLabel(r, x.second) + " second: " + winnerText(x) + (x.p_first != null ? " \u00b7 P(first better) " + num(x.p_first) : "") }),
            labelText(x.label, x.key),
            el("pre", { class: "model-text verdict-text", "data-key": x.key, text: x.text }),
          ])
        : el("div", { class: "order" }, [el("p", { class: "note", text: "not judged in this order" })]);
      const names = judgementLabel(r, v.first) + " vs " + judgementLabel(r, v.second);
      wrap.appendChild(el("div", { class: "pair" + (v.split ? " split" : "") }, [
        el("h4", { text: names + (v.split ? " \u2014 AB\u2260BA: the two orders contradict each other" : "") }),
        el("div", { class: "orders" }, [side(v), side(other)]),
      ]));
      blocks += 1;
    }
    if (!blocks) wrap.appendChild(el("p", { class: "note", text: state.split ? "no pair whose two orders disagree" : "no verdicts" }));
    return wrap;
  }

  function openRow(i) {
    state.open = i;
    const r = rows[i];
    const d = $("detail");
    d.replaceChildren();
    d.appendChild(el("h3", { text: "prompt #" + r.index + " \u00b7 run " + r.run + " \u00b7 iteration " + r.iteration + (r.source ? " \u00b7 " + r.source : "") }));
    d.appendChild(el("pre", { class: "model-text prompt-text", "data-key": r.prompt, text: r.text }));
    for (const x of r.responses) {
      const tags = [x.role, x.meta ? "meta-judged" : "", x.finish === "length" ? "cut at the token limit" : ""].filter(Boolean).join(", ");
      const box = el("details", { class: "response", "data-key": x.key, open: "" }, [
        el("summary", { text: "response " + x.index + " \u00b7 mean score " + num(x.mean) + " (" + x.valid + "/" + x.judged + " valid) \u00b7 " + x.chars + " chars" + (tags ? " \u00b7 " + tags : "") }),
        labelText(x.label, x.key),
        el("pre", { class: "model-text response-text", "data-key": x.key, text: x.text }),
      ]);
      for (const j of x.judgements) {
        box.appendChild(el("details", { class: "judgement", "data-key": j.key }, [
          el("summary", { text: "J" + j.judge + " score " + num(j.score) + (j.error ? " (" + j.error + ")" : "") + (j.fallback ? " fallback" : "") + (j.elo != null ? " \u00b7 Elo " + num(j.elo, 0) + ", wins " + j.wins : "") }),
          labelText(j.label, j.key),
          el("pre", { class: "model-text judgement-text", "data-key": j.key, text: j.text }),
        ]));
      }
      d.appendChild(box);
    }
    if (r.battle) d.appendChild(battleView(r));
    renderList();
  }

  function bind(id, prop, ev, read) {
    $(id).addEventListener(ev, () => {
      state[prop] = read($(id));
      renderList();
      if (state.open >= 0 && prop === "split") openRow(state.open);
    });
  }
  bind("f-run", "run", "change", (x) => x.value);
  bind("f-iteration", "iteration", "change", (x) => x.value);
  bind("f-pairs", "pairs", "change", (x) => x.value);
  bind("f-search", "search", "input", (x) => x.value);
  bind("f-split", "split", "change", (x) => x.checked);
  // a labelled key in the labels table opens the battle row that holds it
  function rowOf(key) {
    return rows.findIndex((r) =>
      r.responses.some((x) => x.key === key || x.judgements.some((j) => j.key === key)) ||
      (r.battle && r.battle.verdicts.some((v) => v.key === key)));
  }
  document.querySelectorAll("td[data-label-key]").forEach((td) => {
    const i = rowOf(td.getAttribute("data-label-key"));
    if (i < 0) return;
    td.classList.add("jump");
    td.setAttribute("tabindex", "0");
    td.addEventListener("click", () => {
      openRow(i);
      const target = document.querySelector('#detail .human[data-for="' + CSS.escape(td.getAttribute("data-label-key")) + '"]');
      (target || $("detail")).scrollIntoView();
    });
  });
  renderList();
  document.body.setAttribute("data-ready", "1");
})();
