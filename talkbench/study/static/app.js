// Two-alternative forced choice, or a rating scale (study.scale); every answer is POSTed the moment it is given, so a reload resumes.
"use strict";

function raterId() {
  const fromUrl = new URLSearchParams(location.search).get("rater");
  if (fromUrl) { localStorage.setItem("talkbench-rater", fromUrl); return fromUrl; }
  let id = localStorage.getItem("talkbench-rater");
  if (!id) {
    id = "r" + Math.random().toString(36).slice(2, 12);
    localStorage.setItem("talkbench-rater", id);
  }
  return id;
}

const rater = raterId();
let study = null;
let answered = new Set();
let shownAt = 0;

async function getJson(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(url + ": " + res.status);
  return res.json();
}

function key(trial, criterion) { return trial + "|" + criterion; }

function nextTrial() {
  return study.trials.find(t => t.criteria.some(c => !answered.has(key(t.id, c))));
}

function show(id) {
  for (const s of ["consent", "trial", "done"]) document.getElementById(s).classList.toggle("hidden", s !== id);
}

function render() {
  const trial = nextTrial();
  if (!trial) { show("done"); return; }
  show("trial");
  const index = study.trials.indexOf(trial) + 1;
  document.getElementById("progress").textContent = `Clip ${index} of ${study.trials.length}`;
  // a trial plays as an MP4 or in the 3D viewer (bench study make --viewer); the answers are the same
  const video = document.getElementById("video");
  const viewer = document.getElementById("viewer");
  const player = trial.viewer ? viewer : video;
  video.classList.toggle("hidden", player !== video);
  viewer.classList.toggle("hidden", player !== viewer);
  if (player.dataset.trial !== trial.id) {
    player.dataset.trial = trial.id;
    player.src = trial.viewer || trial.video;
    shownAt = performance.now();
  }
  const box = document.getElementById("questions");
  box.replaceChildren();
  for (const criterion of trial.criteria) {
    const row = document.createElement("div");
    row.className = "question";
    row.dataset.criterion = criterion;
    const p = document.createElement("p");
    p.textContent = study.questions[criterion] || criterion;
    row.append(p);
    // 2AFC: Left / Right; a rating study: its points, each with its label ("3 Fair")
    const options = study.scale
      ? study.scale.labels.map((label, i) => [String(i + 1), `${i + 1} ${label}`])
      : [["left", "Left"], ["right", "Right"]];
    for (const [side, text] of options) {
      const b = document.createElement("button");
      b.textContent = text;
      b.dataset.choice = side;
      b.disabled = answered.has(key(trial.id, criterion));
      b.addEventListener("click", () => answer(trial.id, criterion, side, row));
      row.append(b);
    }
    box.append(row);
  }
}

async function answer(trial, criterion, choice, row) {
  for (const b of row.querySelectorAll("button")) b.disabled = true;
  const res = await fetch("api/answer", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ rater, trial, criterion, choice, rt_ms: Math.round(performance.now() - shownAt) }),
  });
  if (!res.ok) {
    for (const b of row.querySelectorAll("button")) b.disabled = false;
    alert("Could not save the answer, please try again.");
    return;
  }
  row.querySelector(`button[data-choice="${choice}"]`).classList.add("chosen");
  answered.add(key(trial, criterion));
  if (!nextTrial() || nextTrial().id !== trial) render();
}

async function start() {
  study = await getJson("api/study?rater=" + encodeURIComponent(rater));
  const progress = await getJson("api/progress?rater=" + encodeURIComponent(rater));
  answered = new Set(progress.answered.map(([t, c]) => key(t, c)));
  document.getElementById("title").textContent = study.title;
  if (answered.size === 0 && study.consent && !sessionStorage.getItem("talkbench-consent")) {
    document.getElementById("consent-text").textContent = study.consent;
    show("consent");
    document.getElementById("agree").addEventListener("click", () => {
      sessionStorage.setItem("talkbench-consent", "1");
      render();
    });
    return;
  }
  render();
}

start();
