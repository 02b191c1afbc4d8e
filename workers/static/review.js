// catstream review: keyboard answers, taxonomy search as you type, a live queue.
// Plain JavaScript, no dependencies. Every answer is an ordinary form POST, so the
// page works without this file too (buttons instead of keys).
"use strict";

(function () {
  function $(id) { return document.getElementById(id); }

  function submit(id) {
    var form = $(id);
    if (form) { form.requestSubmit ? form.requestSubmit() : form.submit(); }
    return Boolean(form);
  }

  // ------------------------------------------------------------ keyboard
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    var typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA");
    if (typing) {
      if (target.id === "search") {
        if (event.key === "Escape") { target.blur(); }
        if (event.key === "Enter") { event.preventDefault(); pickResult(); }
        if (event.key === "ArrowDown" || event.key === "ArrowUp") {
          event.preventDefault();
          moveSelection(event.key === "ArrowDown" ? 1 : -1);
        }
      }
      return;
    }
    if (!$("card") || !$("card").dataset.productId) { return; }
    if (event.key >= "1" && event.key <= "5") {
      if (submit("pick-" + event.key)) { event.preventDefault(); }
    } else if (event.key === "/") {
      event.preventDefault();
      $("search").focus();
    } else if (event.key === "s") {
      submit("skip");
    } else if (event.key === "n") {
      submit("not-a-product");
    } else if (event.key === "c") {
      submit("cant-tell");
    }
  });

  // ------------------------------------------------------------ search
  var selected = 0;
  var timer = null;
  var latest = 0;

  function resultForms() { return $("results") ? $("results").querySelectorAll("form") : []; }

  function moveSelection(step) {
    var forms = resultForms();
    if (!forms.length) { return; }
    selected = (selected + step + forms.length) % forms.length;
    highlight();
  }

  function highlight() {
    resultForms().forEach(function (form, index) {
      form.parentNode.classList.toggle("selected", index === selected);
    });
  }

  function pickResult() {
    var forms = resultForms();
    if (forms.length) { forms[selected].requestSubmit ? forms[selected].requestSubmit() : forms[selected].submit(); }
  }

  function showResults(productId, body) {
    var list = $("results");
    list.textContent = "";
    selected = 0;
    body.categories.forEach(function (category) {
      var item = document.createElement("li");
      var form = document.createElement("form");
      form.method = "post";
      form.action = "/review/answer";
      [["product_id", productId], ["category", String(category.id)]].forEach(function (pair) {
        var input = document.createElement("input");
        input.type = "hidden"; input.name = pair[0]; input.value = pair[1];
        form.appendChild(input);
      });
      var button = document.createElement("button");
      button.type = "submit";
      button.textContent = category.path;  // text, never markup
      button.dataset.categoryId = String(category.id);
      form.appendChild(button);
      item.appendChild(form);
      list.appendChild(item);
    });
    highlight();
    $("search-status").textContent = body.categories.length
      ? body.categories.length + " categories (" + body.took_ms.toFixed(1) + " ms) — Enter picks the highlighted one, arrows move"
      : "no category has all these words";
  }

  function search(input) {
    var query = input.value.trim();
    var ticket = ++latest;
    if (!query) { $("results").textContent = ""; $("search-status").textContent = ""; return; }
    fetch("/review/taxonomy?q=" + encodeURIComponent(query), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (ticket !== latest) { return; }  // an older answer arriving late
        if (body.error) { $("search-status").textContent = body.error; return; }
        showResults(input.dataset.productId, body);
      })
      .catch(function () { $("search-status").textContent = "search failed; try again"; });
  }

  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "search") {
      clearTimeout(timer);
      var input = event.target;
      timer = setTimeout(function () { search(input); }, 60);
    }
  });

  // ------------------------------------------------------------ live queue
  function pollQueue() {
    var panel = $("queue");
    if (!panel) { return; }
    fetch(panel.dataset.poll, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        // Server-rendered and escaped by the server's templates.
        if (html !== null) { panel.innerHTML = html; }
        var card = $("card");
        var search = $("search");
        // An empty card looks again for work; a card being answered stays as it is.
        if (card && !card.dataset.productId && !(search && search.value)) {
          var depth = $("queue-depth");
          if (depth && Number(depth.dataset.depth) > 0) { window.location.reload(); }
        }
      })
      .catch(function () { /* the next poll tries again */ });
  }
  setInterval(pollQueue, 2000);
})();
