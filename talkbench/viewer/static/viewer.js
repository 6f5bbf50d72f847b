// talkbench viewer: ground truth and runs of one clip, side by side or overlaid, played to the clip's audio.
//
// The audio element is the clock: the frame drawn at audio time t is round(t * fps) (clamped to the
// clip). Data arrive as scripts calling TalkbenchViewer.* (see talkbench/viewer/data.py), so the page also
// works when opened from disk. window.viewer exposes the state (frame, time, per-vertex errors) and
// the controls, for scripting and for the browser tests.
(function () {
  "use strict";

  const FORMAT = 1;
  const INITIAL_RUNS = 3; // tracks shown (and loaded) at start besides the truth; others load when ticked
  const PALETTE = [0x4e79a7, 0xf28e2b, 0xe15759, 0x76b7b2, 0x59a14f, 0xedc948, 0xb07aa1, 0xff9da7];
  const GREY = 0xb8b8b8;
  const FOV = 25;

  const $ = (id) => document.getElementById(id);
  const pending = new Map(); // script key -> {value}: what the loading script handed over
  const state = {
    manifest: null, clip: null, fps: 0, nFrames: 0, unit: "", // the open clip
    frame: 0, time: 0, playing: false, // the frame drawn and the audio time it was drawn for
    loaded: false, loadMs: null, shown: [], loadedTracks: [], error: null,
    layout: "side", heatmap: false, heatMax: 1, view: "front",
    errors: {}, // track key -> per-vertex error against the truth at `frame` (display unit)
  };
  let three = null; // renderer, camera, controls, scene
  let clip = null; // the open clip: meta, template, faces, tracks (key -> {levels, mesh, ...})
  let dirty = true;
  let opening = null;

  // ---- loading ---------------------------------------------------------------------------------
  function settle(key, value) {
    const p = pending.get(key);
    if (p) p.value = value;
  }

  function loadScript(src, key) {
    return new Promise((resolve, reject) => {
      pending.set(key, { value: undefined });
      const el = document.createElement("script");
      el.src = src;
      el.onload = () => {
        const { value } = pending.get(key);
        pending.delete(key);
        el.remove();
        if (value === undefined) reject(new Error(src + " did not register its data"));
        else resolve(value);
      };
      el.onerror = () => { pending.delete(key); el.remove(); reject(new Error("could not load " + src)); };
      document.head.append(el);
    });
  }

  function bytesOf(base64) {
    const s = atob(base64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  // byte planes of coordinate-major int16 deltas, over time then over vertices (see data.py)
  // -> frame-major int16 levels (T * N)
  function levelsOf(planes, nFrames, nValues) {
    const m = nFrames * nValues;
    if (planes.length !== 2 * m) throw new Error(`track data holds ${planes.length} bytes, expected ${2 * m}`);
    const levels = new Int16Array(m);
    const previous = new Int32Array(3 * nFrames); // the previous vertex's time deltas, per coordinate
    for (let n = 0; n < nValues; n++) {
      const row = (n % 3) * nFrames;
      let level = 0;
      for (let t = 0; t < nFrames; t++) {
        const i = n * nFrames + t;
        let d = planes[i] | (planes[m + i] << 8);
        if (d & 0x8000) d -= 0x10000;
        d += previous[row + t]; // undo the delta over vertices
        previous[row + t] = d;
        level += d; // and over time
        levels[t * nValues + n] = level;
      }
    }
    return levels;
  }

  async function loadTrack(key) {
    const track = clip.tracks.get(key);
    if (!track.loading) {
      const meta = clip.meta;
      track.loading = loadScript(track.file, `track:${meta.name}/${key}`)
        .then((data) => inflate(bytesOf(data)))
        .then((planes) => {
          track.levels = levelsOf(planes, meta.n_frames, meta.n_vertices * 3);
          state.loadedTracks.push(key);
        });
    }
    return track.loading;
  }

  // ---- the scene --------------------------------------------------------------------------------
  function setupThree() {
    const canvas = $("canvas");
    const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
    renderer.setPixelRatio(window.devicePixelRatio || 1);
    renderer.setScissorTest(true);
    const camera = new THREE.PerspectiveCamera(FOV, 1, 0.001, 100);
    const scene = new THREE.Scene();
    scene.background = new THREE.Color(0x1e1f22);
    scene.add(new THREE.HemisphereLight(0xffffff, 0x404040, 1.2));
    const key = new THREE.DirectionalLight(0xffffff, 1.6);
    key.position.set(0.3, 0.4, 1); // follows the camera: the face stays lit from the viewer's side
    camera.add(key);
    scene.add(camera);
    const controls = new THREE.OrbitControls(camera, canvas);
    controls.enableDamping = false;
    controls.addEventListener("change", () => { dirty = true; });
    new ResizeObserver(() => { dirty = true; }).observe($("stage"));
    three = { renderer, camera, scene, controls };
  }

  function buildMeshes() {
    const meta = clip.meta;
    const v = meta.n_vertices;
    const faces = bytesOf(meta.faces).buffer;
    const index = meta.faces_type === "uint16" ? new Uint16Array(faces) : new Uint32Array(faces);
    clip.template = new Float32Array(bytesOf(meta.template).buffer);
    const centre = new THREE.Vector3();
    for (let i = 0; i < v; i++) centre.add(new THREE.Vector3(...clip.template.subarray(3 * i, 3 * i + 3)));
    centre.divideScalar(v);
    let radius = 0;
    for (let i = 0; i < v; i++) {
      radius = Math.max(radius, centre.distanceTo(new THREE.Vector3(...clip.template.subarray(3 * i, 3 * i + 3))));
    }
    clip.centre = centre;
    clip.radius = radius || 1;
    let colour = 0;
    for (const track of clip.tracks.values()) {
      const geometry = new THREE.BufferGeometry();
      geometry.setAttribute("position", new THREE.BufferAttribute(new Float32Array(clip.template), 3));
      geometry.setAttribute("color", new THREE.BufferAttribute(new Float32Array(3 * v), 3));
      geometry.setIndex(new THREE.BufferAttribute(index, 1));
      geometry.computeVertexNormals();
      const isTruth = track.key === meta.truth;
      track.colour = isTruth ? GREY : PALETTE[colour++ % PALETTE.length];
      track.plain = new THREE.MeshLambertMaterial({ color: GREY, side: THREE.DoubleSide });
      track.tinted = new THREE.MeshLambertMaterial({
        color: track.colour, side: THREE.DoubleSide, transparent: true, opacity: 0.55, depthWrite: false,
      });
      track.heat = new THREE.MeshLambertMaterial({ vertexColors: true, side: THREE.DoubleSide });
      track.mesh = new THREE.Mesh(geometry, track.plain);
      track.mesh.position.copy(centre).negate();
      track.mesh.visible = false;
      three.scene.add(track.mesh);
    }
    clip.lut = meta.heat ? lutOf(meta.heat.lut) : null;
  }

  function lutOf(base64) {
    const srgb = bytesOf(base64);
    const lut = new Float32Array(srgb.length);
    const c = new THREE.Color();
    for (let i = 0; i < srgb.length; i += 3) {
      c.setRGB(srgb[i] / 255, srgb[i + 1] / 255, srgb[i + 2] / 255, THREE.SRGBColorSpace); // to linear
      lut[i] = c.r; lut[i + 1] = c.g; lut[i + 2] = c.b;
    }
    return lut;
  }

  function disposeClip() {
    if (!clip) return;
    for (const track of clip.tracks.values()) {
      three.scene.remove(track.mesh);
      track.mesh.geometry.dispose();
      for (const m of [track.plain, track.tinted, track.heat]) m.dispose();
    }
    clip = null;
  }

  // ---- per frame ----------------------------------------------------------------------------------
  function frameAt(t) {
    return Math.min(clip.meta.n_frames - 1, Math.max(0, Math.round(t * clip.meta.fps)));
  }

  function shownTracks() {
    return state.shown.map((k) => clip.tracks.get(k)).filter((t) => t && t.levels);
  }

  function pose(track, f) {
    const n = 3 * clip.meta.n_vertices;
    const step = clip.meta.step;
    const levels = track.levels.subarray(f * n, (f + 1) * n);
    const pos = track.mesh.geometry.attributes.position;
    for (let i = 0; i < n; i++) pos.array[i] = clip.template[i] + levels[i] * step;
    pos.needsUpdate = true;
    track.mesh.geometry.computeVertexNormals();
  }

  // per-vertex L2 error against the truth in the display unit, from the integer levels (exact)
  function errors(track, truth, f) {
    const v = clip.meta.n_vertices;
    const a = track.levels.subarray(f * 3 * v, (f + 1) * 3 * v);
    const b = truth.levels.subarray(f * 3 * v, (f + 1) * 3 * v);
    const scale = clip.meta.step * clip.meta.display_scale;
    const out = new Float64Array(v);
    for (let i = 0; i < v; i++) {
      const dx = a[3 * i] - b[3 * i], dy = a[3 * i + 1] - b[3 * i + 1], dz = a[3 * i + 2] - b[3 * i + 2];
      out[i] = scale * Math.sqrt(dx * dx + dy * dy + dz * dz);
    }
    return out;
  }

  function paint(track, values) {
    const colours = track.mesh.geometry.attributes.color;
    const top = state.heatMax > 0 ? state.heatMax : 1;
    for (let i = 0; i < values.length; i++) {
      const j = 3 * Math.min(255, Math.floor((values[i] / top) * 256));
      colours.array[3 * i] = clip.lut[j];
      colours.array[3 * i + 1] = clip.lut[j + 1];
      colours.array[3 * i + 2] = clip.lut[j + 2];
    }
    colours.needsUpdate = true;
  }

  function update(f) {
    const truth = clip.meta.truth && clip.tracks.get(clip.meta.truth);
    const tracks = shownTracks();
    const errs = {};
    for (const track of tracks) {
      pose(track, f);
      if (truth && truth.levels && track !== truth) {
        errs[track.key] = errors(track, truth, f);
        if (state.heatmap) paint(track, errs[track.key]);
      }
    }
    state.errors = errs;
  }

  function panels() {
    const tracks = shownTracks();
    if (state.layout === "overlay") return tracks.length ? [tracks] : [];
    return tracks.map((t) => [t]);
  }

  function material(track, overlaid) {
    const heat = state.heatmap && track.key in state.errors;
    if (heat) return track.heat;
    return overlaid && track.key !== clip.meta.truth ? track.tinted : track.plain;
  }

  function draw() {
    const { renderer, camera, scene } = three;
    const stage = $("stage");
    const width = stage.clientWidth, height = stage.clientHeight;
    const size = renderer.getSize(new THREE.Vector2());
    if (size.x !== width || size.y !== height) renderer.setSize(width, height, false);
    const groups = panels();
    const cols = Math.max(1, Math.min(groups.length, 4));
    const rows = Math.max(1, Math.ceil(groups.length / cols));
    const w = Math.floor(width / cols), h = Math.floor(height / rows);
    renderer.setScissor(0, 0, width, height);
    renderer.setViewport(0, 0, width, height);
    renderer.setClearColor(0x1e1f22);
    renderer.clear();
    const labels = $("labels");
    labels.replaceChildren();
    camera.aspect = w / h;
    camera.updateProjectionMatrix();
    groups.forEach((group, i) => {
      const x = (i % cols) * w, y = height - (Math.floor(i / cols) + 1) * h;
      for (const t of clip.tracks.values()) t.mesh.visible = false;
      for (const t of group) {
        t.mesh.visible = true;
        t.mesh.material = material(t, group.length > 1);
        t.mesh.renderOrder = t.key === clip.meta.truth ? 0 : 1; // the opaque truth first
      }
      renderer.setViewport(x, y, w, h);
      renderer.setScissor(x, y, w, h);
      renderer.render(scene, camera);
      const label = document.createElement("div");
      label.className = "panel-label";
      label.style.left = x + "px";
      label.style.top = height - y - h + "px";
      label.style.width = w + "px";
      for (const t of group) {
        const span = document.createElement("span");
        span.textContent = t.label;
        if (group.length > 1) span.style.color = "#" + t.colour.toString(16).padStart(6, "0");
        label.append(span);
      }
      labels.append(label);
    });
  }

  function tick() {
    if (state.error) return; // a failure stops drawing; the message box says why
    requestAnimationFrame(tick);
    if (!clip || !state.loaded) return;
    const t = $("audio").currentTime;
    const f = frameAt(t);
    try {
      if (f !== state.frame || dirty) {
        update(f);
        draw();
        dirty = false;
        state.frame = f;
        showTime(f, t);
      }
    } catch (err) {
      fail(err);
    }
    state.time = t; // state.frame is always frameAt(state.time)
    if (state.loadMs === null) state.loadMs = performance.now();
  }

  function showTime(f, t) {
    $("scrub").value = String(f);
    $("readout").textContent = `frame ${f} / ${clip.meta.n_frames - 1} · ${t.toFixed(2)} s`;
  }

  // ---- controls -------------------------------------------------------------------------------------
  function afterDraw() {
    return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  }

  async function seek(t) {
    const audio = $("audio");
    const done = new Promise((resolve) => audio.addEventListener("seeked", resolve, { once: true }));
    audio.currentTime = Math.max(0, t);
    await done;
    await afterDraw();
    return { frame: state.frame, time: audio.currentTime };
  }

  function pause() { $("audio").pause(); }

  async function play() {
    try {
      await $("audio").play();
    } catch (err) {
      message(`The browser did not start the audio (${err.message}); press Play again.`);
    }
  }

  function step(n) {
    pause();
    const f = Math.min(clip.meta.n_frames - 1, Math.max(0, state.frame + n));
    return seek(f / clip.meta.fps);
  }

  function setSpeed(rate) {
    $("audio").playbackRate = Number(rate);
    $("speed").value = String(rate);
  }

  function setView(name) {
    const { camera, controls } = three;
    const d = (clip.radius / Math.sin((FOV / 2) * (Math.PI / 180))) * 1.05;
    const at = { front: [0, 0, d], side: [d, 0, 0] }[name];
    if (!at) throw new Error(`unknown view ${name}: expected front or side`);
    controls.target.set(0, 0, 0);
    camera.position.set(...at);
    camera.up.set(0, 1, 0);
    camera.lookAt(0, 0, 0);
    controls.update();
    state.view = name;
    dirty = true;
  }

  function setLayout(name) {
    state.layout = name === "overlay" ? "overlay" : "side";
    $("layout").value = state.layout;
    dirty = true;
  }

  function setHeatmap(on, top) {
    state.heatmap = Boolean(on) && Boolean(clip.meta.heat);
    if (top !== undefined && Number(top) > 0) state.heatMax = Number(top);
    $("heat").checked = state.heatmap;
    $("heat-max").value = String(state.heatMax);
    $("legend").classList.toggle("hidden", !state.heatmap);
    dirty = true;
  }

  async function show(key, on) {
    state.shown = state.shown.filter((k) => k !== key);
    if (on) {
      await loadTrack(key);
      const order = [...clip.tracks.keys()];
      state.shown = [...state.shown, key].sort((a, b) => order.indexOf(a) - order.indexOf(b));
    }
    dirty = true;
  }

  function message(text) {
    const box = $("message");
    box.textContent = text || "";
    box.classList.toggle("hidden", !text);
  }

  function buildTrackPicker() {
    const box = $("tracks");
    box.replaceChildren();
    for (const track of clip.tracks.values()) {
      const label = document.createElement("label");
      const tick = document.createElement("input");
      tick.type = "checkbox";
      tick.checked = state.shown.includes(track.key);
      tick.dataset.track = track.key;
      tick.addEventListener("change", () => show(track.key, tick.checked).catch(fail));
      label.append(tick, " " + track.label);
      box.append(label);
    }
  }

  function buildLegend() {
    const heat = clip.meta.heat;
    $("heat-box").classList.toggle("hidden", !heat || state.manifest.study);
    if (!heat) return;
    const lut = bytesOf(heat.lut);
    const stops = [];
    for (let i = 0; i <= 10; i++) {
      const j = 3 * Math.min(255, Math.round(i * 25.5));
      stops.push(`rgb(${lut[j]},${lut[j + 1]},${lut[j + 2]}) ${i * 10}%`);
    }
    $("legend-bar").style.background = `linear-gradient(to right, ${stops.join(", ")})`;
    $("legend-name").textContent =
      `${heat.colormap}: per-vertex L2 error against ${clip.tracks.get(clip.meta.truth).label}, 0 to`;
    $("legend-unit").textContent = clip.meta.display_unit;
  }

  function setSource(audio, src) {
    return new Promise((resolve, reject) => {
      audio.addEventListener("loadedmetadata", resolve, { once: true });
      audio.addEventListener("error", () => reject(new Error("could not load " + src)), { once: true });
      audio.src = src;
      audio.load();
    });
  }

  async function loadAudio(src) {
    const audio = $("audio");
    if (audio.src.startsWith("blob:")) URL.revokeObjectURL(audio.src);
    await setSource(audio, src);
    // a server without HTTP range requests (python -m http.server) gives audio that cannot seek:
    // then play it from memory (a page from disk, file://, always seeks)
    const seekable = audio.seekable.length > 0 && audio.seekable.end(0) > 0;
    if (!seekable && location.protocol.startsWith("http")) {
      const response = await fetch(src);
      if (!response.ok) throw new Error(`could not load ${src}: ${response.status}`);
      await setSource(audio, URL.createObjectURL(await response.blob()));
    }
  }

  async function openClip(name) {
    const entry = state.manifest.clips.find((c) => c.name === name) || state.manifest.clips[0];
    pause();
    state.loaded = false;
    disposeClip();
    const meta = await loadScript(entry.file, "clip:" + entry.name);
    if (meta.format !== FORMAT) throw new Error(`${entry.file}: data format ${meta.format}, this page reads ${FORMAT}`);
    clip = { meta, tracks: new Map() };
    state.loadedTracks = [];
    for (const t of meta.tracks) clip.tracks.set(t.key, { ...t });
    buildMeshes();
    const keys = [...clip.tracks.keys()];
    const runs = keys.filter((k) => k !== meta.truth);
    state.shown = state.manifest.study ? keys : [meta.truth, ...runs.slice(0, INITIAL_RUNS)].filter(Boolean);
    Object.assign(state, { clip: meta.name, fps: meta.fps, nFrames: meta.n_frames, unit: meta.display_unit });
    state.heatMax = meta.heat ? meta.heat.max : 1;
    state.frame = -1;
    $("title").textContent = meta.title;
    $("clip").value = meta.name;
    $("scrub").max = String(meta.n_frames - 1);
    buildTrackPicker();
    buildLegend();
    setHeatmap(state.heatmap);
    await Promise.all([loadAudio(meta.audio), ...state.shown.map(loadTrack)]);
    setView(state.view);
    state.loaded = true;
    dirty = true;
    await afterDraw();
    return meta.name;
  }

  function fail(err) {
    state.error = String(err && err.message ? err.message : err);
    message(state.error);
    console.error(err);
  }

  function bindControls() {
    const audio = $("audio");
    $("play").addEventListener("click", () => (audio.paused ? play() : pause()));
    audio.addEventListener("play", () => { state.playing = true; $("play").textContent = "Pause"; });
    audio.addEventListener("pause", () => { state.playing = false; $("play").textContent = "Play"; });
    $("prev").addEventListener("click", () => step(-1));
    $("next").addEventListener("click", () => step(1));
    $("scrub").addEventListener("input", (e) => seek(Number(e.target.value) / clip.meta.fps));
    $("speed").addEventListener("change", (e) => setSpeed(e.target.value));
    $("layout").addEventListener("change", (e) => setLayout(e.target.value));
    $("heat").addEventListener("change", (e) => setHeatmap(e.target.checked));
    $("heat-max").addEventListener("change", (e) => setHeatmap(state.heatmap, e.target.value));
    for (const b of document.querySelectorAll("[data-view]")) b.addEventListener("click", () => setView(b.dataset.view));
    $("clip").addEventListener("change", (e) => { opening = openClip(e.target.value).catch(fail); });
    document.addEventListener("keydown", (e) => {
      if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
      if (e.key === " ") { e.preventDefault(); audio.paused ? play() : pause(); }
      if (e.key === "ArrowLeft") step(-1);
      if (e.key === "ArrowRight") step(1);
    });
  }

  function start(manifest) {
    state.manifest = manifest;
    if (manifest.format !== FORMAT) return fail(`data/manifest.js: format ${manifest.format}, this page reads ${FORMAT}`);
    document.title = manifest.title;
    document.body.classList.toggle("study", Boolean(manifest.study));
    const select = $("clip");
    for (const c of manifest.clips) select.append(new Option(c.title, c.name));
    $("clip-box").classList.toggle("hidden", manifest.clips.length < 2 || manifest.study);
    try {
      if (typeof DecompressionStream === "undefined") throw new Error("this browser lacks DecompressionStream");
      setupThree();
    } catch (err) {
      return fail(`The viewer cannot start: ${err.message}. Use a current Chrome, Firefox or Safari.`);
    }
    bindControls();
    requestAnimationFrame(tick);
    const wanted = new URLSearchParams(location.search).get("clip");
    opening = openClip(wanted || manifest.clips[0].name);
    opening.catch(fail);
  }

  window.TalkbenchViewer = {
    manifest: start,
    clip: (meta) => settle("clip:" + meta.name, meta),
    track: (clipName, key, data) => settle(`track:${clipName}/${key}`, data),
  };
  window.viewer = {
    state, seek, play, pause, step, setSpeed, setView, setLayout, setHeatmap, show,
    open: (name) => (opening = openClip(name)),
    ready: () => opening,
    audio: () => $("audio"),
  };
})();
