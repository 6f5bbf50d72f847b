"""The study web app (Flask, already in our dependency tree through MLflow).

Serves the trial page and videos and stores every answer in SQLite the moment it is given, so a
reload or a server restart loses nothing. Raters never see which method is on which side.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from flask import Flask, abort, jsonify, request, send_from_directory

from talkbench.errors import TalkbenchError
from talkbench.study.store import AnswerStore

RATER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STATIC = Path(__file__).parent / "static"


def load_manifest(study_dir: str | Path) -> dict:
    path = Path(study_dir) / "manifest.json"
    if not path.is_file():
        raise TalkbenchError(
            f"{study_dir} is not a study folder: {path.name} not found (make one with `bench study make`)"
        )
    return json.loads(path.read_text())


def create_app(study_dir: str | Path) -> Flask:
    study_dir = Path(study_dir).resolve()
    manifest = load_manifest(study_dir)
    trials = {t["id"]: t for t in manifest["trials"]}
    store = AnswerStore(study_dir / "answers.db")
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024

    def public_trials(rater: str) -> list[dict]:
        order = list(manifest["trials"])
        random.Random(f"{manifest['seed']}:{rater}").shuffle(order)  # per-rater order, reproducible
        return [
            {"id": t["id"], "video": f"videos/{Path(t['video']).name}", "criteria": t["criteria"]}
            for t in order
        ]

    def rater_arg(value) -> str:
        if not isinstance(value, str) or not RATER_ID.match(value):
            abort(400, description="rater must be 1-64 letters, digits, '-' or '_'")
        return value

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name):
        return send_from_directory(STATIC, name)

    @app.get("/videos/<path:name>")
    def video(name):
        return send_from_directory(study_dir / "videos", name)  # safe_join: traversal -> 404

    @app.get("/api/study")
    def study():
        rater = rater_arg(request.args.get("rater"))
        return jsonify(
            {
                "title": manifest.get("title", "Talking-face study"),
                "consent": manifest.get("consent", ""),
                "questions": manifest["questions"],
                "trials": public_trials(rater),
            }
        )

    @app.get("/api/progress")
    def progress():
        rater = rater_arg(request.args.get("rater"))
        return jsonify({"answered": store.answered(rater)})

    @app.post("/api/answer")
    def answer():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, description="expected a JSON object")
        rater = rater_arg(body.get("rater"))
        trial = trials.get(body.get("trial"))
        if trial is None:
            abort(404, description="unknown trial id")
        criterion, choice = body.get("criterion"), body.get("choice")
        if criterion not in trial["criteria"]:
            abort(400, description=f"criterion must be one of {trial['criteria']}")
        if choice not in ("left", "right"):
            abort(400, description="choice must be 'left' or 'right'")
        rt = body.get("rt_ms")
        if rt is not None and (not isinstance(rt, int) or rt < 0):
            abort(400, description="rt_ms must be a non-negative integer")
        stored = store.add(
            rater, trial["id"], criterion, choice, rt, request.headers.get("User-Agent", "")[:300]
        )
        return jsonify({"stored": stored})

    @app.errorhandler(400)
    @app.errorhandler(404)
    def error(exc):
        return jsonify({"error": exc.description}), exc.code

    return app


def serve(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the study app; loopback only unless a host is given explicitly."""
    create_app(study_dir).run(host=host, port=port, threaded=True, use_reloader=False)
