// Berth's terminal player: replays an asciicast v2 recording in a <pre>, in time.
// A small terminal model (cursor moves, line and screen erases, carriage returns);
// colours and other attributes are dropped. No third-party code, nothing from a CDN.
(function () {
  "use strict";

  function Screen(width, height) {
    this.width = width; this.height = height; this.reset();
  }
  Screen.prototype.reset = function () {
    this.lines = [[]]; this.row = 0; this.col = 0; this.top = 0;
  };
  Screen.prototype.line = function () {
    while (this.lines.length <= this.row) this.lines.push([]);
    return this.lines[this.row];
  };
  Screen.prototype.put = function (ch) {
    if (this.col >= this.width) { this.col = 0; this.row += 1; }
    var line = this.line();
    while (line.length < this.col) line.push(" ");
    line[this.col] = ch; this.col += 1;
  };
  Screen.prototype.csi = function (params, final) {
    var n = parseInt(params, 10); if (isNaN(n)) n = 0;
    var parts = params.split(";");
    switch (final) {
      case "A": this.row = Math.max(this.top, this.row - (n || 1)); break;
      case "B": this.row += (n || 1); break;
      case "C": this.col += (n || 1); break;
      case "D": this.col = Math.max(0, this.col - (n || 1)); break;
      case "G": this.col = Math.max(0, (n || 1) - 1); break;
      case "H": case "f":
        this.row = this.top + Math.max(0, (parseInt(parts[0], 10) || 1) - 1);
        this.col = Math.max(0, (parseInt(parts[1], 10) || 1) - 1); break;
      case "K":
        var line = this.line();
        if (n === 0) line.length = Math.min(line.length, this.col);
        else if (n === 1) for (var i = 0; i < this.col && i < line.length; i++) line[i] = " ";
        else line.length = 0;
        break;
      case "J":
        if (n === 2 || n === 3) { this.top = this.lines.length; this.row = this.top; this.col = 0; }
        else if (n === 0) { this.line().length = this.col; this.lines.length = this.row + 1; }
        break;
      default: break; // colours (m), modes (h, l) and the rest change nothing shown here
    }
  };
  Screen.prototype.write = function (text) {
    for (var i = 0; i < text.length; i++) {
      var ch = text[i];
      if (ch === "\x1b") {
        var next = text[i + 1];
        if (next === "[") {
          var j = i + 2, params = "";
          while (j < text.length && /[0-9;?=>]/.test(text[j])) params += text[j++];
          this.csi(params.replace(/^[?=>]/, ""), text[j]); i = j; continue;
        }
        if (next === "]") { // an OSC (window title...): up to BEL or ESC \
          var k = i + 2;
          while (k < text.length && text[k] !== "\x07" && !(text[k] === "\x1b" && text[k + 1] === "\\")) k++;
          i = text[k] === "\x07" ? k : k + 1; continue;
        }
        i += 1; continue;
      }
      if (ch === "\r") this.col = 0;
      else if (ch === "\n") { this.row += 1; this.line(); }
      else if (ch === "\b") this.col = Math.max(0, this.col - 1);
      else if (ch === "\t") this.col = Math.min(this.width - 1, (Math.floor(this.col / 8) + 1) * 8);
      else if (ch >= " ") this.put(ch);
    }
  };
  Screen.prototype.text = function () {
    var shown = this.lines.slice(this.top);
    return shown.map(function (l) { return l.join(""); }).join("\n");
  };

  function Player(root) {
    this.root = root;
    this.pre = root.querySelector("[data-player-screen]");
    this.button = root.querySelector("[data-player-play]");
    this.speed = root.querySelector("[data-player-speed]");
    this.clock = root.querySelector("[data-player-clock]");
    var self = this;
    fetch(root.getAttribute("data-src"), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (body) { self.load(body); self.play(); })
      .catch(function (e) { self.pre.textContent = "This recording could not be loaded: " + e.message; });
    this.button.addEventListener("click", function () { self.playing ? self.pause() : self.play(); });
  }
  Player.prototype.load = function (body) {
    var lines = body.split("\n").filter(function (l) { return l.trim(); });
    var header = JSON.parse(lines[0]);
    this.screen = new Screen(header.width || 80, header.height || 24);
    this.events = lines.slice(1).map(JSON.parse).filter(function (e) { return e[1] === "o"; });
    this.index = 0; this.at = 0;
    this.root.setAttribute("data-duration", this.events.length ? this.events[this.events.length - 1][0] : 0);
  };
  Player.prototype.step = function () {
    if (!this.playing) return;
    if (this.index >= this.events.length) {
      this.playing = false; this.button.textContent = "Replay";
      this.root.setAttribute("data-state", "ended"); return;
    }
    var event = this.events[this.index++];
    this.screen.write(event[2]);
    this.pre.textContent = this.screen.text();
    this.at = event[0];
    this.clock.textContent = this.at.toFixed(1) + " s";
    var next = this.events[this.index];
    var gap = next ? Math.min(next[0] - event[0], 2) : 0; // long pauses are shortened
    var self = this;
    this.timer = setTimeout(function () { self.step(); }, gap * 1000 / parseFloat(this.speed.value || "1"));
  };
  Player.prototype.play = function () {
    if (this.index >= this.events.length) { this.index = 0; this.screen.reset(); }
    this.playing = true; this.button.textContent = "Pause";
    this.root.setAttribute("data-state", "playing"); this.step();
  };
  Player.prototype.pause = function () {
    this.playing = false; clearTimeout(this.timer); this.button.textContent = "Play";
    this.root.setAttribute("data-state", "paused");
  };

  document.querySelectorAll("[data-player]").forEach(function (root) { new Player(root); });
})();
