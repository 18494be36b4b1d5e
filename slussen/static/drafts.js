// Long forms: a character counter on each long text, and a draft kept on the server as the coach
// types (posted a few seconds after the last key, with the CSRF token). Each draft save is also a
// request that renews the session, so a form being typed in does not time out. Without JS the
// page still works: the limit is shown in the hint and the form is saved when submitted.
(function () {
  "use strict";
  var form = document.querySelector("form[data-draft-url]");
  var status = document.getElementById("draft-status");
  if (!form || !status || !window.fetch || !window.FormData) { return; }
  var counterText = status.getAttribute("data-counter-text") || "{used} / {max}";
  var failedText = status.getAttribute("data-failed-text") || "";
  var endedText = status.getAttribute("data-ended-text") || "";
  var timer = null;
  var sending = false;
  var again = false;
  var DELAY = 2000;

  function grouped(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, "\u00a0");
  }

  function counted(box) {
    var max = parseInt(box.getAttribute("maxlength"), 10);
    var shown = document.querySelector('[data-counter-for="' + box.id + '"]');
    var live = document.querySelector('[data-counter-live="' + box.id + '"]');
    var liveTimer = null;
    function text() {
      return counterText.replace("{used}", grouped(box.value.length)).replace("{max}", grouped(max));
    }
    function update() {
      if (shown) { shown.textContent = "(" + text() + ")"; }
      // The screen reader hears the count once the typing pauses, not at every key.
      clearTimeout(liveTimer);
      liveTimer = setTimeout(function () { if (live) { live.textContent = text(); } }, 1500);
      box.classList.toggle("near-limit", box.value.length > max * 0.9);
    }
    box.addEventListener("input", update);
    if (shown) { shown.textContent = "(" + text() + ")"; }
  }

  function save() {
    if (sending) { again = true; return; }
    sending = true;
    var token = form.querySelector("input[name=csrf_token]");
    fetch(form.getAttribute("data-draft-url"), {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: token ? { "X-CSRFToken": token.value, "Accept": "application/json" } : {}
    }).then(function (r) {
      // The session had timed out: the draft is kept all the same, and saving the form asks
      // for the password first.
      if (r.redirected && /\/login/.test(r.url)) { return { message: endedText || failedText }; }
      var type = r.headers.get("Content-Type") || "";
      return type.indexOf("application/json") === 0 ? r.json() : { message: failedText };
    }).then(function (data) {
      status.textContent = data.message || failedText;
    }).catch(function () {
      status.textContent = failedText;
    }).then(function () {
      sending = false;
      if (again) { again = false; save(); }
    });
  }

  function typed() {
    clearTimeout(timer);
    timer = setTimeout(save, DELAY);
  }

  Array.prototype.forEach.call(form.querySelectorAll("textarea[data-counted]"), counted);
  form.addEventListener("input", typed);
  form.addEventListener("change", typed);
  // Submitting saves the form itself: a pending draft save would only race it.
  form.addEventListener("submit", function () { clearTimeout(timer); });
}());
