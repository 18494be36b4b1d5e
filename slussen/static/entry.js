// Paper entry: move to the next box after a digit that cannot grow, and show the score as you
// type. The score comes from the server (the one scoring module); without JS the page still works
// and the score is shown after saving.
(function () {
  "use strict";
  var form = document.getElementById("entry-form");
  var live = document.getElementById("live-score");
  if (!form || !live) { return; }
  var boxes = Array.prototype.slice.call(form.querySelectorAll("input.digit, textarea"));
  var timer = null;

  function next(box) {
    var i = boxes.indexOf(box);
    if (i >= 0 && i + 1 < boxes.length) { boxes[i + 1].focus(); if (boxes[i + 1].select) { boxes[i + 1].select(); } }
  }

  function show(data) {
    live.textContent = "";
    var list = document.createElement("ul");
    data.scores.forEach(function (s) {
      var li = document.createElement("li");
      li.textContent = s.label + ": " + s.text;
      list.appendChild(li);
    });
    live.appendChild(list);
    boxes.forEach(function (box) {
      var id = box.name.replace(/^item-/, "");
      var row = box.closest("tr");
      if (row) { row.classList.toggle("has-error", Object.prototype.hasOwnProperty.call(data.errors, id)); }
      box.setAttribute("aria-invalid", Object.prototype.hasOwnProperty.call(data.errors, id) ? "true" : "false");
    });
    if (data.missing.length) {
      var p = document.createElement("p");
      p.textContent = (document.documentElement.lang === "en" ? "Not answered: " : "Obesvarade: ") + data.missing.length;
      live.appendChild(p);
    }
  }

  function refresh() {
    var body = new FormData(form);
    var token = form.querySelector("input[name=csrf_token]");
    fetch(live.getAttribute("data-url"), {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: token ? { "X-CSRFToken": token.value } : {}
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) { if (data) { show(data); } });
  }

  boxes.forEach(function (box) {
    box.addEventListener("input", function () {
      if (box.classList.contains("digit")) {
        var max = parseInt(box.getAttribute("data-max"), 10);
        var value = box.value.trim();
        if (/^\d+$/.test(value) && (value === "0" || parseInt(value + "0", 10) > max)) { next(box); }
      }
      clearTimeout(timer);
      timer = setTimeout(refresh, 150);
    });
  });
  refresh();
}());
