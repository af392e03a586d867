// The dashboard's only script: charts (Chart.js, vendored), data-table toggles, the viewer's local times and
// live alerts over the alert stream (EventSource; the session cookie authenticates it, no token in JS).
(function () {
  "use strict";

  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d)) { el.textContent = d.toLocaleString(); }
  });

  document.querySelectorAll("button.toggle[data-table]").forEach(function (button) {
    var wrap = document.getElementById(button.getAttribute("data-table"));
    if (!wrap) { return; }
    // Without the script the tables stay visible; with it they start folded behind the toggle.
    wrap.hidden = true;
    button.setAttribute("aria-expanded", "false");
    button.addEventListener("click", function () {
      wrap.hidden = !wrap.hidden;
      button.setAttribute("aria-expanded", String(!wrap.hidden));
    });
  });

  function chart(canvasId, dataId, label, divisor) {
    var canvas = document.getElementById(canvasId);
    var source = document.getElementById(dataId);
    if (!canvas || !source || typeof Chart === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [{ label: label, data: data.values.map(function (v) { return Math.round(v / divisor * 10) / 10; }),
                     backgroundColor: "#2f6fb3" }]
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false,
                 plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, title: { display: true, text: label } } } }
    });
  }
  chart("hours-chart", "hours-data", "Active minutes", 60);
  chart("days-chart", "days-data", "Active hours", 3600);

  var list = document.getElementById("alerts");
  if (!list || typeof EventSource === "undefined") { return; }
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");

  function text(tag, cls, value) {
    var el = document.createElement(tag);
    el.className = cls;
    el.textContent = value;
    return el;
  }

  function ackForm(alertId) {
    var form = document.createElement("form");
    form.method = "post";
    form.className = "inline";
    form.action = list.getAttribute("data-ack").replace("ALERT_ID", encodeURIComponent(alertId));
    var fields = { csrf_token: csrf };
    if (list.getAttribute("data-developer")) { fields.developer = list.getAttribute("data-developer"); }
    Object.keys(fields).forEach(function (name) {
      var input = document.createElement("input");
      input.type = "hidden"; input.name = name; input.value = fields[name];
      form.appendChild(input);
    });
    var button = document.createElement("button");
    button.type = "submit"; button.textContent = "Acknowledge";
    form.appendChild(button);
    return form;
  }

  function show(alert) {
    var old = list.querySelector('[data-alert-id="' + CSS.escape(alert.alert_id) + '"]');
    var li = document.createElement("li");
    li.className = "alert " + alert.severity + " live";
    li.setAttribute("data-alert-id", alert.alert_id);
    li.setAttribute("data-status", alert.status);
    li.appendChild(text("strong", "severity", alert.severity));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(text("span", "pattern", alert.pattern));
    li.appendChild(text("span", "status", alert.status));
    li.appendChild(text("span", "window", new Date(alert.window_start).toLocaleString() + " – " +
                                          new Date(alert.window_end).toLocaleString()));
    var details = alert.details || {};
    li.appendChild(text("span", "measured", Object.keys(details).filter(function (k) {
      return typeof details[k] !== "object";
    }).map(function (k) { return k + ": " + details[k]; }).join(", ")));
    li.appendChild(text("p", "recommendation", alert.recommendation || ""));
    if (alert.status === "open") { li.appendChild(ackForm(alert.alert_id)); }
    if (old) { list.replaceChild(li, old); } else { list.insertBefore(li, list.firstChild); }
    var empty = document.getElementById("alerts-empty");
    if (empty) { empty.hidden = true; }
  }

  var stream = new EventSource(list.getAttribute("data-stream"));
  stream.addEventListener("alert", function (event) { show(JSON.parse(event.data)); });
  list.setAttribute("data-stream-state", "connecting");
  stream.addEventListener("open", function () { list.setAttribute("data-stream-state", "open"); });
})();
