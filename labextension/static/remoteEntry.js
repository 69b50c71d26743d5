/*
 * seqdiff-kit-reload: a JupyterLab extension of seqdiff_kit (MIT), written by hand as a module-federation
 * container (window._JUPYTERLAB[name] with init() and get("./extension")), the form JupyterLab loads a
 * prebuilt extension in, so that it needs no build step and no package from npm.
 *
 * Why: when a page is reloaded while the kernel runs, ipywidgets' renderer waits for its model for 2 s. If the
 * page's main thread is busy with the widgets' state (megabytes for a lesson) past that deadline, the
 * renderer gives up just after the models arrived and, the manager being restored by then, writes
 * "Error displaying widget: model not found" for good (ipywidgets issue #4026). This plugin watches for that
 * text and asks the same renderer to draw its output again (IRenderMime.IRenderer.renderModel, the call
 * JupyterLab itself makes), a few times at most per output, so a model that is really gone keeps the message.
 */
(function () {
  "use strict";
  var NAME = "seqdiff-kit-reload";
  var ERROR = "Error displaying widget: model not found"; // written by ipywidgets' WidgetRenderer
  var TRIES = 3;
  var DELAY_MS = 300;

  function children(widget) {
    return typeof widget.children === "function" ? Array.from(widget.children()) : [];
  }

  function outputAreas(widget, found) {
    if (widget.node && widget.node.classList.contains("jp-OutputArea") && widget.model &&
        typeof widget.model.get === "function" && Array.isArray(widget.widgets)) {
      found.push(widget);
    }
    children(widget).forEach(function (child) { outputAreas(child, found); });
    return found;
  }

  function failedRenderer(widget) {
    if (typeof widget.renderModel === "function" && widget.node.textContent.indexOf(ERROR) !== -1) {
      return widget;
    }
    var kids = children(widget);
    for (var i = 0; i < kids.length; i++) {
      var hit = failedRenderer(kids[i]);
      if (hit) return hit;
    }
    return null;
  }

  function activate(app) {
    if (!app.shell || typeof app.shell.widgets !== "function") return;
    var tries = new WeakMap();
    var timer = null;

    function sweep() {
      timer = null;
      var areas = [];
      ["main", "down"].forEach(function (where) {
        Array.from(app.shell.widgets(where)).forEach(function (w) { outputAreas(w, areas); });
      });
      areas.forEach(function (area) {
        area.widgets.forEach(function (child, i) {
          var renderer = failedRenderer(child);
          var n = renderer ? tries.get(renderer) || 0 : TRIES;
          if (n >= TRIES || i >= area.model.length) return;
          tries.set(renderer, n + 1);
          renderer.node.textContent = "Loading widget...";
          renderer.removeClass("jupyter-widgets");
          renderer.renderModel(area.model.get(i)).catch(function (err) { console.error(NAME, err); });
        });
      });
    }

    new MutationObserver(function (mutations) {
      for (var m = 0; m < mutations.length; m++) {
        var added = mutations[m].addedNodes;
        for (var k = 0; k < added.length; k++) {
          if (added[k].nodeType === Node.TEXT_NODE && added[k].data === ERROR && timer === null) {
            timer = setTimeout(sweep, DELAY_MS);
          }
        }
      }
    }).observe(document.body, { childList: true, subtree: true });
  }

  var plugin = {
    id: NAME + ":redraw-widgets",
    description: "Draws again a widget output that a reloaded page marked 'model not found' too early.",
    autoStart: true,
    activate: activate
  };
  var extension = { __esModule: true, default: [plugin] };

  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB[NAME] = {
    init: function () { return Promise.resolve(); },
    get: function (module) {
      if (module !== "./extension") return Promise.reject(new Error(NAME + " has no module " + module));
      return Promise.resolve(function () { return extension; });
    }
  };
})();
