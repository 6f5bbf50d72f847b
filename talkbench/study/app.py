"""The study web app (Flask, already in our dependency tree through MLflow).

Serves the trial page and videos (or the 3D viewer) and stores every answer in SQLite the moment it
is given, so a reload or a server restart loses nothing. Raters never see which method is on which side.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

from flask import Flask, abort, jsonify, request, send_from_directory
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from talkbench.errors import TalkbenchError
from talkbench.hosts import allowed_hosts, host_of, normal_host
from talkbench.study.schema import RATER_HINT, AnswerBody, describe, valid_rater
from talkbench.study.store import AnswerStore

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024  # an answer is ~150 bytes; anything near this is not a browser's answer


def load_manifest(study_dir: str | Path) -> dict:
    path = Path(study_dir) / "manifest.json"
    if not path.is_file():
        raise TalkbenchError(
            f"{study_dir} is not a study folder: {path.name} not found (make one with `bench study make`)"
        )
    return json.loads(path.read_text())


def _shown(trial: dict) -> dict:
    """What the rater's page shows for a trial: its video, or its clip in the 3D viewer."""
    if trial.get("viewer"):
        return {"viewer": f"viewer/index.html?clip={trial['id']}"}
    return {"video": f"videos/{Path(trial['video']).name}"}


def create_app(study_dir: str | Path, hosts: Iterable[str] | None = None) -> Flask:
    """The study app; ``hosts`` are the Host names it answers to (default: loopback names only)."""
    study_dir = Path(study_dir).resolve()
    hosts = allowed_hosts() if hosts is None else frozenset(normal_host(h) for h in hosts)
    manifest = load_manifest(study_dir)
    trials = {t["id"]: t for t in manifest["trials"]}
    store = AnswerStore(study_dir / "answers.db")
    scale = manifest.get("scale")  # a rating study's answers are scale points, a 2AFC study's sides
    choices = [str(k) for k in range(1, scale["points"] + 1)] if scale else ["left", "right"]
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    @app.before_request
    def check_host():
        name = host_of(request.headers.get("Host", ""))
        if name is None:
            abort(400, description="malformed Host header")
        if name not in hosts:
            abort(421, description=f"this study is not served as '{name}'")

    def public_trials(rater: str) -> list[dict]:
        order = list(manifest["trials"])
        random.Random(f"{manifest['seed']}:{rater}").shuffle(order)  # per-rater order, reproducible
        return [{"id": t["id"], **_shown(t), "criteria": t["criteria"]} for t in order]

    def rater_arg(value) -> str:
        if not valid_rater(value):
            abort(400, description=RATER_HINT)
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

    @app.get("/viewer/<path:name>")
    def viewer(name):
        return send_from_directory(study_dir / "viewer", name)

    @app.get("/api/study")
    def study():
        rater = rater_arg(request.args.get("rater"))
        return jsonify(
            {
                "title": manifest.get("title", "Talking-face study"),
                "consent": manifest.get("consent", ""),
                "questions": manifest["questions"],
                "scale": manifest.get("scale"),  # rating studies: points and labels; None for 2AFC
                "trials": public_trials(rater),
            }
        )

    @app.get("/api/progress")
    def progress():
        rater = rater_arg(request.args.get("rater"))
        return jsonify({"answered": store.answered(rater)})

    @app.post("/api/answer")
    def answer():
        body = parse_json_body()
        if not isinstance(body, dict):
            abort(400, description="expected a JSON object")
        try:
            a = AnswerBody.model_validate(body)
        except ValidationError as exc:
            abort(400, description=describe(exc))
        trial = trials.get(a.trial)
        if trial is None:
            abort(404, description="unknown trial id")
        if a.criterion not in trial["criteria"]:
            abort(400, description=f"criterion must be one of {trial['criteria']}")
        if a.choice not in choices:
            abort(400, description=f"choice must be one of {choices}")
        user_agent = request.headers.get("User-Agent", "")[:300]
        stored = store.add(a.rater, trial["id"], a.criterion, a.choice, a.rt_ms, user_agent)
        return jsonify({"stored": stored})

    def parse_json_body():
        """The JSON body, or None if it is not JSON (a body over MAX_BODY raises 413 here)."""
        if not request.is_json:
            return None
        data = request.get_data(cache=False)
        try:
            return json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
            return None

    @app.errorhandler(HTTPException)
    def error(exc):
        return jsonify({"error": exc.description}), exc.code

    return app


def serve(
    study_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, extra_hosts: Iterable[str] = ()
) -> None:
    """Run the study app; loopback only unless a host is given explicitly."""
    app = create_app(study_dir, allowed_hosts(host, extra_hosts))
    app.run(host=host, port=port, threaded=True, use_reloader=False)
