// tuner dashboard: the study page's live table and figures, and the trial/compare pages' plots.
// Every value from the storage goes into the DOM through textContent (never innerHTML), so a
// study name, parameter value or error message containing markup shows as text.
"use strict";

(function () {
  function $(sel) { return document.querySelector(sel); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function readJSON(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : Number(v.toPrecision(6)).toString();
    if (Array.isArray(v)) return "[" + v.map(fmt).join(", ") + "]";
    return String(v);
  }
  function fmtParam(v) {  // a parameter's None is a value (grad_clip: null): the dash is for what is missing
    return v === null ? "None" : fmt(v);
  }
  function fmtDuration(s) {
    if (typeof s !== "number") return "—";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(2) + " h";
  }
  function errorText(body, fallback) {
    // The API's own errors carry one message; FastAPI's 422 a list of {loc, msg}, one per bad
    // parameter (shown as "[object Object]" before): each as "page: Input should be ...".
    var d = body && body.detail;
    if (Array.isArray(d)) {
      return d.map(function (e) {
        var loc = Array.isArray(e && e.loc) ? e.loc.slice(1).join(".") : "";  // less "query" / "path"
        return (loc ? loc + ": " : "") + (e && e.msg !== undefined ? e.msg : JSON.stringify(e));
      }).join("; ") || fallback;
    }
    return d ? String(d) : fallback;
  }
  function getJSON(url) {
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}}).then(function (r) {
      if (!r.ok) return r.json().catch(function () { return null; })
        .then(function (b) { throw new Error(errorText(b, r.statusText || "HTTP " + r.status)); });
      return r.json();
    });
  }
  function plot(div, data, layout) {
    if (!window.Plotly) return;
    window.Plotly.react(div, data, Object.assign({margin: {t: 30, r: 20, b: 40, l: 50}}, layout || {}),
                        {responsive: true, displaylogo: false});
  }

  // ---- study page --------------------------------------------------------------------------

  function studyPage(boot) {
    var api = "/api/studies/" + encodeURIComponent(boot.name);
    var page = "/studies/" + encodeURIComponent(boot.name);
    var url = new URL(window.location.href);
    var q = {
      state: url.searchParams.getAll("state"),
      value_min: url.searchParams.get("value_min") || "",
      value_max: url.searchParams.get("value_max") || "",
      param: url.searchParams.getAll("param"),
      sort: url.searchParams.get("sort") || "number",
      order: url.searchParams.get("order") || "asc",
      page: parseInt(url.searchParams.get("page") || "1", 10) || 1,
    };
    var version = boot.version;
    var selected = {};
    var form = $("#filters");

    function syncForm() {
      form.querySelectorAll("input[name=state]").forEach(function (c) { c.checked = q.state.indexOf(c.value) >= 0; });
      form.value_min.value = q.value_min;
      form.value_max.value = q.value_max;
      var p = q.param[0] || "";
      // Same reading as the server: a range if the last two fields are numbers (names may hold "=").
      var r = /^(.+):([-+0-9.eE]*):([-+0-9.eE]*)$/.exec(p);
      var m = r ? null : /^(.*)=(.*)$/.exec(p);
      form.param_name.value = r ? r[1] : (m ? m[1] : "");
      form.param_eq.value = m ? m[2] : "";
      form.param_low.value = r ? r[2] : "";
      form.param_high.value = r ? r[3] : "";
    }
    function readForm() {
      q.state = Array.prototype.filter.call(form.querySelectorAll("input[name=state]"), function (c) { return c.checked; })
        .map(function (c) { return c.value; });
      q.value_min = form.value_min.value.trim();
      q.value_max = form.value_max.value.trim();
      q.param = [];
      var name = form.param_name.value;
      if (name) {
        if (form.param_eq.value.trim()) q.param.push(name + "=" + form.param_eq.value.trim());
        else if (form.param_low.value.trim() || form.param_high.value.trim())
          q.param.push(name + ":" + form.param_low.value.trim() + ":" + form.param_high.value.trim());
      }
      q.page = 1;
    }
    function queryString() {
      var s = new URLSearchParams();
      if (q.state.length) s.set("state", q.state.join(","));
      if (q.value_min) s.set("value_min", q.value_min);
      if (q.value_max) s.set("value_max", q.value_max);
      q.param.forEach(function (p) { s.append("param", p); });
      s.set("sort", q.sort); s.set("order", q.order); s.set("page", String(q.page));
      return s;
    }
    function pageQuery() {
      var s = new URLSearchParams();
      q.state.forEach(function (x) { s.append("state", x); });
      if (q.value_min) s.set("value_min", q.value_min);
      if (q.value_max) s.set("value_max", q.value_max);
      q.param.forEach(function (p) { s.append("param", p); });
      if (q.sort !== "number") s.set("sort", q.sort);
      if (q.order !== "asc") s.set("order", q.order);
      if (q.page !== 1) s.set("page", String(q.page));
      var text = s.toString();
      return page + (text ? "?" + text : "");
    }

    function header(label, key) {
      var th = el("th");
      var a = el("a", label + (q.sort === key ? (q.order === "asc" ? " ▲" : " ▼") : ""), "sort");
      a.href = "#";
      a.setAttribute("data-sort", key);
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        if (q.sort === key) q.order = q.order === "asc" ? "desc" : "asc";
        else {  // a value starts best first: by the direction of its own objective
          q.sort = key;
          var objective = key === "value" ? 0 : key.indexOf("value:") === 0 ? parseInt(key.slice(6), 10) : -1;
          q.order = objective >= 0 && boot.directions[objective] === "maximize" ? "desc" : "asc";
        }
        q.page = 1;
        loadTable();
      });
      th.appendChild(a);
      return th;
    }

    function loadTable() {
      history.replaceState(null, "", pageQuery());
      return getJSON(api + "/trials?" + queryString().toString()).then(function (res) {
        var thead = $("#trials thead"), tbody = $("#trials tbody");
        thead.textContent = ""; tbody.textContent = "";
        var tr = el("tr");
        tr.appendChild(el("th", "✓"));
        tr.appendChild(header("#", "number"));
        tr.appendChild(header("State", "state"));
        boot.metric_names.forEach(function (m, i) { tr.appendChild(header(m, i === 0 ? "value" : "value:" + i)); });
        tr.appendChild(header("Duration", "duration"));
        boot.params.forEach(function (p) { tr.appendChild(header(p, "param:" + p)); });
        thead.appendChild(tr);
        res.trials.forEach(function (t) {
          var row = el("tr");
          row.setAttribute("data-number", t.number);
          var cb = el("input"); cb.type = "checkbox"; cb.checked = !!selected[t.number];
          cb.addEventListener("change", function () {
            if (cb.checked) selected[t.number] = true; else delete selected[t.number];
            var n = Object.keys(selected).length;
            $("#compare").disabled = n < 2 || n > 5;
            $("#compare").textContent = "Compare selected (" + n + ")";
          });
          var c0 = el("td"); c0.appendChild(cb); row.appendChild(c0);
          var c1 = el("td"); var a = el("a", t.number); a.href = page + "/trials/" + t.number; c1.appendChild(a);
          row.appendChild(c1);
          row.appendChild(el("td", t.state, "state-" + t.state.toLowerCase()));
          boot.metric_names.forEach(function (m, i) { row.appendChild(el("td", t.values ? fmt(t.values[i]) : "—", "num")); });
          row.appendChild(el("td", fmtDuration(t.duration_s), "num"));
          boot.params.forEach(function (p) { row.appendChild(el("td", p in t.params ? fmtParam(t.params[p]) : "")); });
          tbody.appendChild(row);
        });
        $("#table-info").textContent = res.total + " trial" + (res.total === 1 ? "" : "s") + " match";
        $("#page-info").textContent = "page " + res.page + " of " + res.pages;
        $("#prev").disabled = res.page <= 1;
        $("#next").disabled = res.page >= res.pages;
      }).catch(function (err) { $("#table-info").textContent = "Could not load trials: " + err.message; });
    }

    function loadSummary() {
      return getJSON(api).then(function (s) {
        var st = $("#study-state");
        st.textContent = s.state; st.className = "state state-" + s.state;
        var counts = $("#counts"); counts.textContent = "";
        Object.keys(s.shown_counts).forEach(function (k) {
          var c = el("span", k + ": ", "count"); c.appendChild(el("b", s.shown_counts[k])); counts.appendChild(c);
        });
        var pt = $("#progress-text");
        if (pt && s.target) pt.textContent = s.finished + " / " + s.target + " finished";
        showBest(s);
        showRuns(s);
      });
    }

    function showBest(s) {  // as the page draws it: the best trial, or the first Pareto-optimal ones
      var box = $("#best");
      if (!box) return;
      box.textContent = "";
      var best = s.best_trials || [];
      if (!best.length) { box.appendChild(el("p", "No complete trial yet.", "note")); return; }
      var table = el("table", null, "kv");
      best.slice(0, 5).forEach(function (b, i) {
        var row = el("tr");
        var th = el("th", (i === 0 && s.directions.length === 1 ? "Best" : "Pareto") + ": ");
        var a = el("a", "trial " + b.number); a.href = page + "/trials/" + b.number; th.appendChild(a);
        row.appendChild(th);
        var values = el("td");
        (s.metric_names || []).forEach(function (m, k) {
          values.appendChild(document.createTextNode(m + " = "));
          values.appendChild(el("b", fmt(b.values ? b.values[k] : null)));
          values.appendChild(document.createTextNode(" "));
        });
        row.appendChild(values);
        row.appendChild(el("td", Object.keys(b.params).map(function (k) { return k + "=" + fmtParam(b.params[k]); }).join(" "),
                           "small"));
        table.appendChild(row);
      });
      box.appendChild(table);
    }

    function showRuns(s) {  // a run that ended (or began) while the page was open
      var body = $("#runs tbody");
      if (!body || !s.runs) return;
      $("#n-runs").textContent = s.n_runs;
      body.textContent = "";
      s.runs.forEach(function (r) {
        var row = el("tr");
        row.appendChild(el("td", (r.started || "—").replace("+00:00", "").replace("T", " ")));
        row.appendChild(el("td", fmtDuration(r.duration_s), "num"));
        row.appendChild(el("td", r.end_text.replace(/`/g, "") + (r.error ? ": " + r.error : "") +
          (r.last_heard ? "; last heard " + r.last_heard.replace("+00:00", "").replace("T", " ") : ""), "run-" + r.end));
        ["complete", "pruned", "failed", "stopped_unfinished"].forEach(function (k) { row.appendChild(el("td", fmt(r[k]), "num")); });
        row.appendChild(el("td", fmt(r.pid) + " on " + fmt(r.host)));
        body.appendChild(row);
      });
    }

    function loadFigures() {
      return getJSON(api + "/figures").then(function (res) {
        var box = $("#figures");
        $("#figures-info").textContent = "Figures of " + (res.version.split("-")[0]) + " trials" +
          (res.stale ? " (refreshing…)" : "") + "; computed in " + res.compute_s.toFixed(2) + " s.";
        var adv = $("#advice"); adv.textContent = "";
        if (res.advice && res.advice.items && res.advice.items.length) {
          adv.appendChild(el("h3", "Search-space advice"));
          var ul = el("ul", null, "advice");
          res.advice.items.forEach(function (a) {
            var li = el("li"); li.appendChild(el("span", a.kind, "badge " + a.kind)); li.appendChild(el("span", a.message));
            ul.appendChild(li);
          });
          adv.appendChild(ul);
        }
        res.sections.forEach(function (s) {
          var sec = document.getElementById("fig-" + s.id);
          if (!sec) {
            sec = el("div", null, "figure-block"); sec.id = "fig-" + s.id;
            sec.appendChild(el("h3", s.title));
            var div = el("div", null, "fig"); div.id = "plot-" + s.id; sec.appendChild(div);
            var cap = el("p", null, "small caption"); sec.appendChild(cap);
            box.appendChild(sec);
          }
          var target = document.getElementById("plot-" + s.id);
          if (s.figure) { target.classList.remove("empty"); plot(target, s.figure.data, s.figure.layout); }
          else { if (window.Plotly) window.Plotly.purge(target); target.textContent = s.note || "nothing to draw"; target.classList.add("empty"); }
          sec.querySelector(".caption").textContent = (s.captions || []).join(" ");
        });
        if (res.stale) setTimeout(loadFigures, 3000);
      }).catch(function (err) { $("#figures-info").textContent = "Could not load figures: " + err.message; });
    }

    function poll() {
      getJSON(api + "/version").then(function (res) {
        $("#live").classList.toggle("on", true);
        if (res.version !== version) {
          version = res.version;
          loadSummary(); loadTable(); loadFigures();
        }
      }).catch(function () { $("#live").classList.toggle("on", false); })
        .then(function () { setTimeout(poll, 2000); });
    }

    form.addEventListener("submit", function (ev) { ev.preventDefault(); readForm(); loadTable(); });
    $("#reset").addEventListener("click", function () {
      q.state = []; q.value_min = ""; q.value_max = ""; q.param = []; q.sort = "number"; q.order = "asc"; q.page = 1;
      syncForm(); loadTable();
    });
    $("#prev").addEventListener("click", function () { if (q.page > 1) { q.page -= 1; loadTable(); } });
    $("#next").addEventListener("click", function () { q.page += 1; loadTable(); });
    $("#compare").addEventListener("click", function () {
      window.location.href = page + "/compare?trials=" + Object.keys(selected).join(",");
    });
    syncForm();
    loadTable();
    loadFigures();
    setTimeout(poll, 2000);
  }

  // ---- trial and compare pages -------------------------------------------------------------

  function curveTraces(t, name) {
    var traces = [];
    var curve = t.curve || [];
    if (curve.length) {
      var keys = {};
      curve.forEach(function (row) { Object.keys(row).forEach(function (k) { if (k !== "step") keys[k] = true; }); });
      Object.keys(keys).sort().forEach(function (k) {
        var secondary = k === "lr" || /time/.test(k);
        traces.push({x: curve.map(function (r) { return r.step; }), y: curve.map(function (r) { return r[k]; }),
                     name: (name ? name + " " : "") + k, mode: "lines+markers", yaxis: secondary ? "y2" : "y",
                     visible: secondary || /train_loss|precision|recall/.test(k) ? "legendonly" : true});
      });
    } else {
      var steps = Object.keys(t.intermediate_values || {}).map(Number).sort(function (a, b) { return a - b; });
      if (steps.length) traces.push({x: steps, y: steps.map(function (s) { return t.intermediate_values[String(s)]; }),
                                     name: (name ? name + " " : "") + "reported value", mode: "lines+markers"});
    }
    return traces;
  }

  function trialPage(t) {
    var traces = curveTraces(t, "");
    if (traces.length) plot($("#curve-fig"), traces, {xaxis: {title: {text: "epoch / step"}},
      yaxis2: {overlaying: "y", side: "right", showgrid: false}, legend: {orientation: "h"}});
    else { $("#curve-fig").textContent = "This trial reported no per-step values."; $("#curve-fig").classList.add("empty"); }
    var cm = t.attrs && t.attrs.confusion_matrix;
    if (cm && $("#cm-fig")) {
      var names = t.attrs.per_class ? Object.keys(t.attrs.per_class) : cm.map(function (_, i) { return String(i); });
      plot($("#cm-fig"), [{type: "heatmap", z: cm, x: names, y: names, colorscale: "Blues", texttemplate: "%{z}",
                           hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>"}],
           {xaxis: {title: {text: "predicted"}, type: "category"},
            yaxis: {title: {text: "true"}, autorange: "reversed", type: "category"}, height: 420});
    }
  }

  function comparePage(c) {
    var traces = [];
    c.trials.forEach(function (t) {
      var steps = Object.keys(t.intermediate_values || {}).map(Number).sort(function (a, b) { return a - b; });
      if (steps.length) traces.push({x: steps, y: steps.map(function (s) { return t.intermediate_values[String(s)]; }),
                                     name: "trial " + t.number, mode: "lines+markers"});
    });
    if (traces.length) plot($("#compare-fig"), traces, {xaxis: {title: {text: "epoch / step"}},
                                                        yaxis: {title: {text: "reported value"}}});
    else $("#curve-note").textContent = "None of these trials reported per-step values.";
  }

  function boot() {
    var b = readJSON("boot");
    if (b) return studyPage(b);
    var t = readJSON("trial-data");
    if (t) return trialPage(t);
    var c = readJSON("compare-data");
    if (c) return comparePage(c);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
