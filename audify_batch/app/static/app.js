// The review desk's script: verdict buttons, one-key shortcuts, autoplay, similar segments, and the
// calibration page's save button.
// Plain JavaScript, no libraries; everything it talks to is this desk (same origin).
(function () {
  "use strict";

  var body = document.body;
  var busy = false;

  function $(id) { return document.getElementById(id); }

  function status(text, kind) {
    var line = $("review-status") || $("save-status");
    if (!line) { return; }
    line.textContent = text;
    line.className = "note " + (kind || "");
  }

  function go(url) {
    if (url) { window.location.assign(url); }
  }

  function post(path, payload) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Audify": "1" },
      body: JSON.stringify(payload)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (answer) {
        if (!response.ok) {
          var detail = answer.detail;
          if (Array.isArray(detail)) { detail = detail.map(function (d) { return d.msg; }).join("; "); }
          throw new Error(detail || ("HTTP " + response.status));
        }
        return answer;
      });
    });
  }

  // verdict: "present" or "absent"; other: the label that is there instead (with "absent").
  function mark(verdict, other) {
    if (busy) { return; }
    busy = true;
    var payload = {
      segment_id: body.dataset.segmentId,
      model: body.dataset.model,
      label: body.dataset.label,
      verdict: verdict
    };
    if (other) { payload.other_label = other; }
    status("saving…");
    post("/api/annotations", payload).then(function (answer) {
      var said = answer.written.map(function (w) { return w.label + " " + w.verdict; }).join(", ");
      status("saved: " + said, "ok");
      if (body.dataset.next) { go(body.dataset.next); } else { window.location.reload(); }
    }).catch(function (error) {
      busy = false;
      status("not saved: " + error.message, "error");
    });
  }

  function markOther() {
    var typed = $("other-text").value.trim();
    var picked = $("other-select").value;
    var other = typed || picked;
    if (!other) {
      status("pick a label or type a new one first", "error");
      $("other-select").focus();
      return;
    }
    mark("absent", other);
  }

  function togglePlay() {
    var player = $("player");
    if (!player) { return; }
    if (player.paused) { player.play().catch(function () {}); } else { player.pause(); }
  }

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || (target && target.isContentEditable);
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event.target)) {
      if (event.key === "Enter" && (event.target.id === "other-text" || event.target.id === "other-select")) {
        event.preventDefault();
        markOther();
      } else if (event.key === "Escape") {
        event.target.blur();
      }
      return;
    }
    var actions = {
      c: function () { mark("present"); },
      w: function () { mark("absent"); },
      o: function () { $("other-select").focus(); },
      n: function () { go(body.dataset.next); },
      j: function () { go(body.dataset.next); },
      p: function () { go(body.dataset.prev); },
      k: function () { go(body.dataset.prev); },
      " ": togglePlay
    };
    var action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  }

  function loadSimilar() {
    var section = $("similar");
    if (!section || !section.dataset.src) { return; }
    fetch(section.dataset.src, { credentials: "same-origin" }).then(function (response) {
      return response.text().then(function (text) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return text;
      });
    }).then(function (html) {
      section.innerHTML = html;  // rendered and escaped by the desk
      section.setAttribute("data-loaded", "yes");
    }).catch(function (error) {
      section.textContent = "similar segments not available: " + error.message;
    });
  }

  function setUpAutoplay() {
    var box = $("autoplay");
    var player = $("player");
    if (!box || !player) { return; }
    var stored = null;
    try { stored = window.localStorage.getItem("audify-autoplay"); } catch (e) { stored = null; }
    box.checked = stored === "yes";
    box.addEventListener("change", function () {
      try { window.localStorage.setItem("audify-autoplay", box.checked ? "yes" : "no"); } catch (e) { /* private mode */ }
    });
    if (box.checked) { player.play().catch(function () {}); }
  }

  // The figures take a model pass on the server: ask for them once the audio is there, so that
  // the browser's few connections to the desk go to the audio first.
  function loadFigures() {
    var images = document.querySelectorAll("img[data-src]");
    Array.prototype.forEach.call(images, function (image) {
      image.src = image.dataset.src;
      image.removeAttribute("data-src");
    });
  }

  function setUpFigures() {
    var player = $("player");
    if (!player || player.readyState >= 1) { loadFigures(); return; }
    player.addEventListener("loadedmetadata", loadFigures);
    player.addEventListener("error", loadFigures);
    window.setTimeout(loadFigures, 3000);
  }

  // The calibration page: the server calibrates again and saves the threshold (the same file as
  // audify calibrate); the page then shows what is saved.
  function saveThreshold() {
    var button = $("save-threshold");
    if (busy || !button) { return; }
    busy = true;
    var d = button.dataset;
    var payload = {
      model: d.model,
      label: d.label,
      head: d.head || null,
      target_precision: Number(d.target),
      bins: Number(d.bins),
      min_reviews: Number(d.minReviews)
    };
    status("saving…");
    post("/api/thresholds", payload).then(function (answer) {
      status("saved threshold " + answer.threshold.toFixed(4) + " to " + answer.path, "ok");
      window.setTimeout(function () { window.location.reload(); }, 800);
    }).catch(function (error) {
      busy = false;
      status("not saved: " + error.message, "error");
    });
  }

  function setUp() {
    if (body.dataset.page === "calibrate") {
      if ($("save-threshold")) { $("save-threshold").addEventListener("click", saveThreshold); }
      return;
    }
    if (body.dataset.page !== "segment") { return; }
    $("mark-correct").addEventListener("click", function () { mark("present"); });
    $("mark-wrong").addEventListener("click", function () { mark("absent"); });
    $("mark-other").addEventListener("click", markOther);
    document.addEventListener("keydown", onKey);
    setUpAutoplay();
    setUpFigures();
    loadSimilar();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
}());
