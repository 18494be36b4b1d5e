// The self-referral's health-centre list: a search box, filled in as you type, narrows the list
// to the centres whose name or town contains what is typed. Without script the plain list (by
// town) works alone; the box is made here, so nobody without script sees a box that does nothing.
(function () {
  "use strict";
  var select = document.querySelector("select[data-unit-search]");
  if (!select) { return; }
  var all = Array.prototype.slice.call(select.querySelectorAll("option[data-town]")).map(function (option) {
    return { option: option, group: option.parentNode, text: (option.text + " " + option.getAttribute("data-town")).toLocaleLowerCase("sv") };
  });
  var groups = Array.prototype.slice.call(select.querySelectorAll("optgroup"));

  var field = document.createElement("div");
  field.className = "field unit-search";
  var label = document.createElement("label");
  label.htmlFor = "unit-search";
  label.textContent = select.getAttribute("data-search-label");
  var input = document.createElement("input");
  input.type = "search";
  input.id = "unit-search";
  input.autocomplete = "off";
  input.setAttribute("aria-controls", select.id);
  input.setAttribute("aria-describedby", "unit-search-count");
  var count = document.createElement("p");
  count.className = "hint";
  count.id = "unit-search-count";
  count.setAttribute("aria-live", "polite");
  field.appendChild(label);
  field.appendChild(input);
  field.appendChild(count);
  var host = select.closest(".field");
  host.parentNode.insertBefore(field, host);

  function filter() {
    var words = input.value.toLocaleLowerCase("sv").split(/\s+/).filter(Boolean);
    var shown = 0;
    groups.forEach(function (group) { while (group.firstChild) { group.removeChild(group.firstChild); } });
    all.forEach(function (entry) {
      var match = words.every(function (word) { return entry.text.indexOf(word) >= 0; });
      // Options are taken out rather than hidden: a hidden option is still offered in some browsers.
      if (match || entry.option.selected) { entry.group.appendChild(entry.option); shown += match ? 1 : 0; }
    });
    groups.forEach(function (group) {
      if (group.firstChild) { select.appendChild(group); } else if (group.parentNode) { group.parentNode.removeChild(group); }
    });
    var text = shown === 1 ? select.getAttribute("data-count-one") : select.getAttribute("data-count-text").replace("{n}", String(shown));
    count.textContent = words.length ? text : "";
  }
  input.addEventListener("input", filter);
}());
